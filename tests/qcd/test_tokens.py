"""Token making (RFC 6290 §5.1, §5.2) and the taker's comparison."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from quickike.qcd.settings import TokenMethod
from quickike.qcd.tokens import (
    QCD,
    address_octets,
    make_token,
    matches,
    received_tokens,
    token_digest,
    token_notify,
)
from quickike.wire.enums import ProtocolId
from quickike.wire.payloads import Notify

SECRET = bytes(range(32))
SPI_I = bytes(range(0xC0, 0xC8))
SPI_R = bytes(range(0xD0, 0xD8))


def test_section_5_1_vector_from_the_requirements() -> None:
    token = make_token(SECRET, SPI_I, SPI_R)
    assert token.hex() == "f3d8755de087de1f309769fdda7299bc0363d6e6146d087a35f90e457d06dfdb"


@pytest.mark.parametrize("length", [16, 20, 31, 32])
def test_short_tokens_are_truncated_hmac_sha256(length: int) -> None:
    full = hmac.new(SECRET, SPI_I + SPI_R, hashlib.sha256).digest()
    assert make_token(SECRET, SPI_I, SPI_R, length=length) == full[:length]


@pytest.mark.parametrize("length", [33, 48, 64])
def test_long_tokens_are_truncated_hmac_sha512(length: int) -> None:
    full = hmac.new(SECRET, SPI_I + SPI_R, hashlib.sha512).digest()
    assert make_token(SECRET, SPI_I, SPI_R, length=length) == full[:length]


@pytest.mark.parametrize("length", [0, 15, 65, 128])
def test_lengths_outside_16_to_64_are_refused(length: int) -> None:
    with pytest.raises(ValueError):
        make_token(SECRET, SPI_I, SPI_R, length=length)


def test_section_5_2_binds_the_takers_address() -> None:
    v4 = make_token(SECRET, SPI_I, SPI_R, method=TokenMethod.SPI_ADDRESS, taker_address="192.0.2.1")
    expected = hmac.new(SECRET, SPI_I + SPI_R + bytes([192, 0, 2, 1]), hashlib.sha256).digest()
    assert v4 == expected
    other = make_token(SECRET, SPI_I, SPI_R, method=TokenMethod.SPI_ADDRESS,
                       taker_address="192.0.2.2")
    assert other != v4 and v4 != make_token(SECRET, SPI_I, SPI_R)
    # an IPv4-mapped IPv6 address is the same taker
    assert make_token(SECRET, SPI_I, SPI_R, method=TokenMethod.SPI_ADDRESS,
                      taker_address="::ffff:192.0.2.1") == v4
    v6 = make_token(SECRET, SPI_I, SPI_R, method=TokenMethod.SPI_ADDRESS, taker_address="2001:db8::1")
    assert len(v6) == 32 and v6 != v4
    assert address_octets("2001:db8::1") == bytes.fromhex("20010db8000000000000000000000001")
    with pytest.raises(ValueError):
        make_token(SECRET, SPI_I, SPI_R, method=TokenMethod.SPI_ADDRESS)


def test_tokens_depend_on_every_input() -> None:
    base = make_token(SECRET, SPI_I, SPI_R)
    assert make_token(SECRET[::-1], SPI_I, SPI_R) != base
    assert make_token(SECRET, SPI_R, SPI_I) != base
    assert make_token(SECRET, SPI_I[:-1] + b"\x00", SPI_R) != base
    with pytest.raises(ValueError):
        make_token(SECRET, SPI_I[:4], SPI_R)


def test_notify_format_protocol_one_spi_size_zero() -> None:
    n = token_notify(b"\xaa" * 32)
    assert n.type == QCD == 16419 and n.protocol == ProtocolId.IKE and n.spi == b""
    body = n.encode_body()
    assert body[:4] == bytes([1, 0]) + (16419).to_bytes(2, "big") and body[4:] == b"\xaa" * 32


def test_taker_reads_at_most_four_well_sized_tokens_and_ignores_protocol_id() -> None:
    ok = [bytes([i]) * 32 for i in range(6)]
    notes = [Notify(QCD, b"\x01" * 15), Notify(QCD, b"\x01" * 129),
             Notify(QCD, b"\x02" * 16, ProtocolId.NONE), Notify(QCD, b"\x03" * 128, ProtocolId.ESP)]
    notes += [Notify(QCD, t) for t in ok]
    tokens, ignored = received_tokens(notes)
    assert tokens == [b"\x02" * 16, b"\x03" * 128, ok[0], ok[1]]
    assert ignored == 2 + 4


def test_digest_comparison_finds_any_match() -> None:
    held = [token_digest(b"a" * 32), token_digest(b"b" * 32)]
    assert matches([b"x" * 32, b"b" * 32], held)
    assert not matches([b"x" * 32, b"y" * 32], held)
    assert not matches([], held) and not matches([b"a" * 32], [])
    assert token_digest(b"a" * 32) == hashlib.sha256(b"a" * 32).digest()
