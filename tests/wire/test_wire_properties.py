"""Property tests: every well-formed message round-trips, nothing else escapes as a crash."""

from __future__ import annotations

import dataclasses
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quickike.wire import (
    HEADER_SIZE,
    CodecError,
    Encrypted,
    EncryptedFragment,
    Message,
    NotifyType,
    UnknownPayload,
    decode_message,
    decode_payloads,
    encode_payloads,
)

from .strategies import UNKNOWN_TYPES, messages, plain_payload

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _without_offset(m: Message) -> Message:
    return dataclasses.replace(m, sk_offset=-1)


@FAST
@given(messages)
def test_encode_decode_round_trip(m: Message) -> None:
    wire = m.encode()
    back = decode_message(wire)
    assert _without_offset(back) == m
    assert back.encode() == wire
    if m.payloads and isinstance(m.payloads[-1], Encrypted | EncryptedFragment):
        # sk_offset names the SK/SKF generic header: its type is in the previous Next field
        assert back.sk_offset >= HEADER_SIZE
        length = struct.unpack_from("!H", wire, back.sk_offset + 2)[0]
        assert back.sk_offset + length == len(wire)
    else:
        assert back.sk_offset == -1


@FAST
@given(st.lists(plain_payload, min_size=1, max_size=6))
def test_inner_chain_round_trip(payloads: list) -> None:
    first, data = encode_payloads(payloads)
    back, sk = decode_payloads(first, data)
    assert back == payloads and sk == -1
    assert encode_payloads(back) == (first, data)


@FAST
@given(messages, st.sampled_from(UNKNOWN_TYPES), st.data())
def test_unknown_critical_payload_is_refused_with_its_type(
    m: Message, ptype: int, data: st.DataObject
) -> None:
    pos = data.draw(st.integers(0, sum(1 for p in m.payloads if p.ptype not in (46, 53))))
    m.payloads.insert(pos, UnknownPayload(ptype, b"xyz", critical=True))
    try:
        decode_message(m.encode())
    except CodecError as e:
        assert e.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
        assert e.data == bytes([ptype])
    else:  # pragma: no cover - the assertion message is the failure
        raise AssertionError("critical unknown payload accepted")


def _decode_or_codec_error(data: bytes) -> None:
    try:
        m = decode_message(data)
    except CodecError as e:
        assert isinstance(e.notify, NotifyType)
        assert str(e)
        return
    # whatever decodes must encode again without raising and keep its length
    assert len(m.encode()) == len(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_only_raise_codec_error(data: bytes) -> None:
    _decode_or_codec_error(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=0, max_size=120), st.integers(0, 255))
def test_arbitrary_payload_chain_only_raises_codec_error(data: bytes, first: int) -> None:
    try:
        decode_payloads(first, data)
    except CodecError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=8), st.binary(max_size=120), st.integers(0, 255))
def test_valid_header_with_garbage_body(spi: bytes, body: bytes, first: int) -> None:
    hdr = struct.pack("!8s8sBBBBII", spi, spi, first, 0x20, 34, 0x08, 0, HEADER_SIZE + len(body))
    _decode_or_codec_error(hdr + body)


def _mutations() -> st.SearchStrategy:
    """(kind, position fraction, value) describing one corruption of a valid message."""
    return st.tuples(
        st.sampled_from(["truncate", "bitflip", "length16", "byte"]),
        st.floats(0, 1, exclude_max=True),
        st.integers(0, 0xFFFF),
    )


@settings(max_examples=400, deadline=None)
@given(messages, st.lists(_mutations(), min_size=1, max_size=3))
def test_mutated_messages_only_raise_codec_error(m: Message, muts: list) -> None:
    data = bytearray(m.encode())
    for kind, frac, value in muts:
        if not data:
            break
        pos = int(frac * len(data))
        if kind == "truncate":
            del data[pos:]
        elif kind == "bitflip":
            data[pos] ^= 1 << (value % 8)
        elif kind == "byte":
            data[pos] = value & 0xFF
        elif pos + 2 <= len(data):
            data[pos : pos + 2] = struct.pack("!H", value)
    _decode_or_codec_error(bytes(data))


@settings(max_examples=200, deadline=None)
@given(messages, st.integers(1, 200))
def test_every_truncation_is_a_codec_error(m: Message, cut: int) -> None:
    data = m.encode()
    cut = min(cut, len(data))
    try:
        decode_message(data[: len(data) - cut])
    except CodecError:
        return
    raise AssertionError("truncated message decoded")


@settings(max_examples=100, deadline=None)
@given(messages, st.integers(0, 15).filter(lambda v: v != 2), st.integers(0, 15))
def test_any_other_major_version(m: Message, major: int, minor: int) -> None:
    data = bytearray(m.encode())
    data[17] = major << 4 | minor
    try:
        decode_message(bytes(data))
    except CodecError as e:
        assert e.notify == NotifyType.INVALID_MAJOR_VERSION
        assert f"major version {major}" in str(e)
    else:
        raise AssertionError("wrong major version accepted")


@settings(max_examples=100, deadline=None)
@given(messages, st.integers(-(1 << 31), 1 << 31).filter(lambda d: d != 0))
def test_header_length_must_match_datagram(m: Message, delta: int) -> None:
    data = bytearray(m.encode())
    data[24:28] = ((len(data) + delta) % (1 << 32)).to_bytes(4, "big")
    try:
        decode_message(bytes(data))
    except CodecError as e:
        assert e.notify == NotifyType.INVALID_SYNTAX and "header length" in str(e)
    else:
        raise AssertionError("length mismatch accepted")


@settings(max_examples=100, deadline=None)
@given(messages, st.binary(min_size=1, max_size=16))
def test_trailing_octets_are_refused(m: Message, tail: bytes) -> None:
    data = bytearray(m.encode() + tail)
    data[24:28] = len(data).to_bytes(4, "big")
    try:
        decode_message(bytes(data))
    except CodecError as e:
        assert e.notify == NotifyType.INVALID_SYNTAX
    else:
        raise AssertionError("trailing octets accepted")
