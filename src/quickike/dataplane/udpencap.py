"""RFC 3948 framing of port 4500: IKE, ESP and NAT-keepalives share one socket.

The first octets tell them apart (RFC 3948 §2.2, §3): four zero octets (the
non-ESP marker, where ESP would have SPI 0) start an IKE message, a single
0xFF octet is a NAT-keepalive, anything else with room for an ESP header is
ESP.  Classification looks at no more than four octets so that the reader can
route each datagram before touching its payload.

:func:`classify` follows the same rules as :func:`quickike.wire.framing.classify_marked`
(the tests hold them to it) but takes a length and returns only the kind, for
a reader that receives into one reusable buffer.
"""

from __future__ import annotations

import enum

from quickike.wire.framing import NAT_KEEPALIVE, NON_ESP_MARKER
from quickike.wire.framing import add_marker as _add_marker

__all__ = [
    "KEEPALIVE",
    "NON_ESP_MARKER",
    "DatagramKind",
    "add_marker",
    "classify",
    "keepalive",
    "strip_marker",
]

#: RFC 3948 §2.3: one octet, 0xFF.
KEEPALIVE = NAT_KEEPALIVE
#: SPI + sequence number; anything shorter cannot be ESP.
_MIN_ESP = 8


class DatagramKind(enum.Enum):
    IKE = "ike"
    ESP = "esp"
    KEEPALIVE = "keepalive"
    #: too short for any of the above; dropped
    INVALID = "invalid"


def classify(datagram: bytes | bytearray | memoryview, length: int | None = None) -> DatagramKind:
    """Kind of a datagram received on port 4500.

    ``length`` lets a reader pass its whole receive buffer with the received
    size instead of slicing it.
    """
    n = len(datagram) if length is None else length
    if n >= 4 and datagram[0] == 0 and datagram[1] == 0 and datagram[2] == 0 and datagram[3] == 0:
        # a marker alone (n == 4) is not IKE either; the IKE decoder reports the short header
        return DatagramKind.IKE
    if n == 1 and datagram[0] == 0xFF:
        return DatagramKind.KEEPALIVE
    if n >= _MIN_ESP:
        return DatagramKind.ESP
    return DatagramKind.INVALID


def keepalive() -> bytes:
    """A NAT-keepalive datagram (RFC 3948 §2.3), sent by the side behind a NAT."""
    return KEEPALIVE


def add_marker(ike_message: bytes) -> bytes:
    """Frame an IKE message for port 4500."""
    return _add_marker(ike_message)


def strip_marker(datagram: bytes | bytearray | memoryview) -> memoryview:
    """The IKE message inside a port-4500 datagram classified as IKE."""
    view = memoryview(datagram)
    if bytes(view[:4]) != NON_ESP_MARKER:
        raise ValueError("datagram does not start with the non-ESP marker")
    return view[4:]
