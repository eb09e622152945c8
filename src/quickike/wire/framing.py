"""Demultiplexing of UDP port 4500 (RFC 3948 §2, RFC 7296 §2.23).

On port 4500 IKE messages carry a 4-octet zero "non-ESP marker" so they can
share the port with ESP, whose SPI is never zero; a single 0xFF octet is a
NAT keepalive. charon also uses the marker whenever neither port is 500, so
the decision to add it belongs to the caller, per socket, not per port number.
"""

from __future__ import annotations

import enum

NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"


class Kind(enum.Enum):
    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"
    INVALID = "invalid"


def classify_marked(datagram: bytes | memoryview) -> tuple[Kind, memoryview]:
    """Classify a datagram received on a marker-framed socket; IKE comes back without marker."""
    view = memoryview(datagram)
    n = len(view)
    if n == 1 and view[0] == 0xFF:
        return Kind.KEEPALIVE, view
    if n >= 4 and view[:4] == NON_ESP_MARKER:
        return Kind.IKE, view[4:]
    if n >= 8:
        # ESP header is SPI(4) | sequence(4); SPI 0 is reserved and cannot reach here.
        return Kind.ESP, view
    return Kind.INVALID, view


def add_marker(message: bytes) -> bytes:
    return NON_ESP_MARKER + message
