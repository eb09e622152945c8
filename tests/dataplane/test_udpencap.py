"""RFC 3948 port-4500 demultiplexing, held to the same rules as quickike.wire.framing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quickike.dataplane.udpencap import (
    KEEPALIVE,
    NON_ESP_MARKER,
    DatagramKind,
    add_marker,
    classify,
    keepalive,
    strip_marker,
)
from quickike.wire.framing import Kind, classify_marked


@pytest.mark.parametrize(
    ("datagram", "kind"),
    [
        (b"\xff", DatagramKind.KEEPALIVE),
        (b"\0\0\0\0" + b"ike header...", DatagramKind.IKE),
        (b"\x01\x02\x03\x04\0\0\0\1", DatagramKind.ESP),
        (b"\x01\x02\x03\x04\0\0\0", DatagramKind.INVALID),
        (b"\xfe", DatagramKind.INVALID),
        (b"", DatagramKind.INVALID),
        (b"\xff\xff", DatagramKind.INVALID),
    ],
)
def test_classify(datagram: bytes, kind: DatagramKind) -> None:
    assert classify(datagram) is kind
    buf = bytearray(datagram + b"\xaa" * 20)  # a reused receive buffer with stale bytes
    assert classify(buf, len(datagram)) is kind


@given(st.binary(max_size=40))
def test_same_rules_as_wire_framing(datagram: bytes) -> None:
    kind, _ = classify_marked(datagram)
    assert classify(datagram).value == Kind(kind).value


def test_keepalive_and_marker() -> None:
    assert keepalive() == KEEPALIVE == b"\xff"
    msg = b"\x11" * 28
    framed = add_marker(msg)
    assert framed[:4] == NON_ESP_MARKER and classify(framed) is DatagramKind.IKE
    assert bytes(strip_marker(framed)) == msg
    with pytest.raises(ValueError):
        strip_marker(b"\x01\x02\x03\x04" + msg)
