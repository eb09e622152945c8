"""Port-4500 demultiplexing (RFC 3948 §2.2-2.3)."""

from __future__ import annotations

import pytest

from quickike.wire import NAT_KEEPALIVE, NON_ESP_MARKER, Kind, add_marker, classify_marked

from .test_wire_rfc7634 import RFC7634_B_MESSAGE


def test_ike_with_marker_comes_back_without_it() -> None:
    kind, view = classify_marked(add_marker(RFC7634_B_MESSAGE))
    assert kind is Kind.IKE
    assert bytes(view) == RFC7634_B_MESSAGE


def test_add_marker() -> None:
    assert add_marker(b"abc") == NON_ESP_MARKER + b"abc" == b"\x00\x00\x00\x00abc"


def test_esp() -> None:
    esp = bytes.fromhex("ac0faf03 00000001".replace(" ", "")) + b"\x11" * 40
    kind, view = classify_marked(esp)
    assert kind is Kind.ESP and bytes(view) == esp


def test_esp_header_only() -> None:
    assert classify_marked(b"\x00\x00\x01\x00" + b"\x00" * 4)[0] is Kind.ESP


def test_keepalive() -> None:
    kind, view = classify_marked(NAT_KEEPALIVE)
    assert kind is Kind.KEEPALIVE and bytes(view) == b"\xff"


@pytest.mark.parametrize(
    "data", [b"", b"\x00", b"\xfe", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05\x06\x07", b"\xff\xff"]
)
def test_too_short(data: bytes) -> None:
    assert classify_marked(data)[0] is Kind.INVALID


def test_marker_alone_is_ike_with_nothing_in_it() -> None:
    kind, view = classify_marked(NON_ESP_MARKER)
    assert kind is Kind.IKE and len(view) == 0


def test_accepts_memoryview_and_does_not_copy() -> None:
    buf = bytearray(add_marker(RFC7634_B_MESSAGE))
    kind, view = classify_marked(memoryview(buf))
    assert kind is Kind.IKE
    buf[4] ^= 0xFF
    assert view[0] == RFC7634_B_MESSAGE[0] ^ 0xFF
