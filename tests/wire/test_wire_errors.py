"""Each kind of malformed input gets CodecError with the notify RFC 7296 §2.21 asks for."""

from __future__ import annotations

import struct

import pytest

from quickike.wire import (
    SA,
    CodecError,
    Delete,
    Encrypted,
    ExchangeType,
    Message,
    Nonce,
    NotifyType,
    Proposal,
    ProtocolId,
    Transform,
    TransformType,
    decode_message,
    notify,
)

SPI_I, SPI_R = bytes(range(1, 9)), bytes(range(9, 17))


def header(next_payload: int, length: int, version: int = 0x20, exchange: int = 37) -> bytes:
    return struct.pack(
        "!8s8sBBBBII", SPI_I, SPI_R, next_payload, version, exchange, 0x08, 1, length
    )


def payload(nxt: int, body: bytes, flags: int = 0) -> bytes:
    return struct.pack("!BBH", nxt, flags, 4 + len(body)) + body


def message(first: int, body: bytes) -> bytes:
    return header(first, 28 + len(body)) + body


def expect(data: bytes, *words: str, notify_type: NotifyType = NotifyType.INVALID_SYNTAX) -> None:
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.notify == notify_type
    for w in words:
        assert w in str(info.value), f"{w!r} not in {info.value}"


def test_unknown_critical_payload() -> None:
    nonce = payload(99, b"n" * 16)
    data = message(40, nonce + payload(0, b"whatever", flags=0x80))
    with pytest.raises(CodecError) as info:
        decode_message(data)
    assert info.value.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert info.value.data == bytes([99])


def test_unknown_non_critical_payload_is_kept() -> None:
    data = message(40, payload(99, b"n" * 16) + payload(0, b"whatever"))
    m = decode_message(data)
    assert [p.payload_type for p in m.payloads] == [40, 99]
    assert m.encode() == data


def test_known_payload_with_critical_bit_is_accepted() -> None:
    data = message(40, payload(0, b"n" * 16, flags=0x80))
    m = decode_message(data)
    assert m.payloads == [Nonce(b"n" * 16, critical=True)]
    assert m.encode() == data


@pytest.mark.parametrize("version", [0x30, 0x31, 0xF0])
def test_higher_major_version(version: int) -> None:
    data = header(0, 28, version=version)
    expect(data, "major version", notify_type=NotifyType.INVALID_MAJOR_VERSION)


def test_ikev1_major_version() -> None:
    expect(
        header(0, 28, version=0x10), "major version 1", notify_type=NotifyType.INVALID_MAJOR_VERSION
    )


def test_minor_version_is_kept() -> None:
    data = header(0, 28, version=0x2F)
    assert decode_message(data).minor == 15
    assert decode_message(data).encode() == data


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_header_length_mismatch(delta: int) -> None:
    body = payload(0, b"n" * 16)
    expect(header(40, 28 + len(body) + delta) + body, "header length")


def test_shorter_than_header() -> None:
    expect(header(0, 28)[:27], "shorter than the IKE header")


def test_trailing_bytes_after_last_payload() -> None:
    expect(message(40, payload(0, b"n" * 16) + b"\x00\x00\x00"), "3 octets after the last payload")


def test_sk_not_last() -> None:
    sk = payload(41, b"\x00" * 24)
    expect(
        message(46, struct.pack("!BBH", 41, 0, len(sk)) + sk[4:] + payload(0, b"n" * 8)),
        "encrypted payload is not the last",
    )


@pytest.mark.parametrize("length", [0, 3, 200])
def test_payload_length_out_of_bounds(length: int) -> None:
    expect(message(40, struct.pack("!BBH", 0, 0, length) + b"n" * 16), "length", str(length))


def test_payload_header_truncated() -> None:
    expect(message(40, payload(41, b"n" * 16) + b"\x00\x00"), "header truncated")


# --------------------------------------------------------------- SA structure


def proposal_bytes(last: int, num: int, ntrans: int, transforms: bytes, spi: bytes = b"") -> bytes:
    length = 8 + len(spi) + len(transforms)
    return struct.pack("!BBHBBBB", last, 0, length, num, 1, len(spi), ntrans) + spi + transforms


def transform_bytes(last: int, ttype: int = 1, tid: int = 20, attrs: bytes = b"") -> bytes:
    return struct.pack("!BBHBBH", last, 0, 8 + len(attrs), ttype, 0, tid) + attrs


def sa_message(*proposals: bytes) -> bytes:
    return message(33, payload(0, b"".join(proposals)))


def test_sa_reference_decodes() -> None:
    good = sa_message(proposal_bytes(0, 1, 2, transform_bytes(3) + transform_bytes(0, 2, 5)))
    m = decode_message(good)
    assert m.payloads == [
        SA(
            [
                Proposal(
                    1,
                    ProtocolId.IKE,
                    b"",
                    [Transform(TransformType.ENCR, 20), Transform(TransformType.PRF, 5)],
                )
            ]
        )
    ]


def test_transform_count_exceeds_length() -> None:
    expect(
        sa_message(proposal_bytes(0, 1, 3, transform_bytes(3) + transform_bytes(0))),
        "announces 3 transforms but holds 2",
    )


def test_transform_count_below_transforms() -> None:
    expect(
        sa_message(proposal_bytes(0, 1, 1, transform_bytes(3) + transform_bytes(0))),
        "last transform not marked last",
    )


def test_transform_marked_last_too_early() -> None:
    expect(
        sa_message(proposal_bytes(0, 1, 2, transform_bytes(0) + transform_bytes(0))),
        "transform 1 of 2 marked last",
    )


def test_transform_last_field_invalid() -> None:
    expect(
        sa_message(proposal_bytes(0, 1, 1, transform_bytes(2))),
        "transform last-substructure field is 2",
    )


def test_last_transform_not_marked_last() -> None:
    expect(
        sa_message(proposal_bytes(0, 1, 2, transform_bytes(3) + transform_bytes(3))),
        "last transform not marked last",
    )


def test_proposal_last_field_invalid() -> None:
    expect(
        sa_message(proposal_bytes(3, 1, 1, transform_bytes(0))),
        "proposal last-substructure field is 3",
    )


def test_last_proposal_not_marked_last() -> None:
    expect(sa_message(proposal_bytes(2, 1, 1, transform_bytes(0))), "last proposal not marked last")


def test_proposal_marked_last_too_early() -> None:
    p = proposal_bytes(0, 1, 1, transform_bytes(0))
    expect(
        sa_message(p, proposal_bytes(0, 2, 1, transform_bytes(0))), "after the proposal marked last"
    )


def test_proposal_spi_size_exceeds_length() -> None:
    bad = struct.pack("!BBHBBBB", 0, 0, 8, 1, 3, 4, 0)
    expect(sa_message(bad), "proposal length 8 out of bounds")


def test_proposal_length_exceeds_sa() -> None:
    p = bytearray(proposal_bytes(0, 1, 1, transform_bytes(0)))
    p[2:4] = struct.pack("!H", 200)
    expect(sa_message(bytes(p)), "proposal length 200 out of bounds")


def test_transform_attribute_truncated() -> None:
    attr = struct.pack("!HH", 1, 10) + b"abc"  # TLV announcing 10 octets, holding 3
    expect(
        sa_message(proposal_bytes(0, 1, 1, transform_bytes(0, attrs=attr))),
        "attribute value truncated",
    )


def test_empty_sa() -> None:
    expect(message(33, payload(0, b"")), "SA payload without proposals")


# --------------------------------------------------------------- other counts


def test_ts_count_exceeds_length() -> None:
    ts = struct.pack("!BBHHH", 7, 0, 16, 0, 65535) + bytes(8)
    expect(message(44, payload(0, bytes((2, 0, 0, 0)) + ts)), "announces 2 selectors but holds 1")


def test_ts_count_below_selectors() -> None:
    ts = struct.pack("!BBHHH", 7, 0, 16, 0, 65535) + bytes(8)
    expect(message(44, payload(0, bytes((1, 0, 0, 0)) + ts + ts)), "after its 1 selectors")


def test_ts_ipv6_wrong_length() -> None:
    ts = struct.pack("!BBHHH", 8, 0, 16, 0, 65535) + bytes(8)
    expect(message(44, payload(0, bytes((1, 0, 0, 0)) + ts)), "IPv6 traffic selector")


def test_delete_count_exceeds_length() -> None:
    body = struct.pack("!BBH", 3, 4, 3) + bytes(8)
    expect(message(42, payload(0, body)), "announces 3 SPIs of 4 octets in 8 octets")


def test_delete_many_empty_spis_is_refused() -> None:
    # 8 octets must not turn into 65535 objects (found by review; was a CPU/memory amplifier)
    body = struct.pack("!BBH", 1, 0, 65535)
    expect(message(42, payload(0, body)), "65535 SPIs of size 0")


def test_delete_round_trips() -> None:
    m = Message(
        SPI_I,
        SPI_R,
        ExchangeType.INFORMATIONAL,
        0x08,
        1,
        [
            Delete(ProtocolId.ESP, [b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"]),
            Delete(ProtocolId.IKE),
        ],
    )
    assert decode_message(m.encode()) == m


def test_notify_spi_exceeds_length() -> None:
    expect(
        message(41, payload(0, struct.pack("!BBH", 3, 8, 16393) + b"abcd")), "Notify SPI truncated"
    )


def test_skf_impossible_fragment_number() -> None:
    expect(
        message(53, payload(0, struct.pack("!HH", 3, 2) + bytes(16))),
        "fragment 3 of 2 is impossible",
    )


def test_eap_length_mismatch() -> None:
    expect(message(48, payload(0, bytes((1, 1, 0, 9)) + b"abc")), "EAP length")


def test_encode_refuses_oversize_payload() -> None:
    m = Message(SPI_I, SPI_R, ExchangeType.INFORMATIONAL, 0, 0, [Encrypted(0, bytes(70000))])
    with pytest.raises(CodecError, match="does not fit"):
        m.encode()


def test_notify_shorthand_builds_notify() -> None:
    n = notify(NotifyType.REKEY_SA, protocol=ProtocolId.ESP, spi=b"\x01\x02\x03\x04")
    data = message(41, payload(0, n.encode_body()))
    assert decode_message(data).payloads == [n]
