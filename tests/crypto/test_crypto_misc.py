"""NAT-D hashes, cookies and random sources."""

from __future__ import annotations

import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address

import pytest

from quickike.crypto import (
    CookieJar,
    CryptoError,
    RandomSource,
    SeededRandomSource,
    SystemRandomSource,
    natd_hash,
)
from quickike.crypto.cookies import COOKIE_SIZE

# ---------------------------------------------------------------- NAT-D (RFC 7296 §2.23)


@pytest.mark.parametrize(
    ("spi_i", "ip", "port", "expected"),
    [
        # NAT_DETECTION_DESTINATION_IP of real IKE_SA_INIT requests in
        # /work/shared/reference/captures/ikev2_notify_redirect.pcap (frames 0 and 2):
        # the initiator hashed SPIi | SPIr(=0) | responder address | 500.
        ("88694881497528ad", "10.5.2.52", 500, "509b01b43dc28c9df849fd765c648a512959ac50"),
        ("1c88ee0b7793d52e", "10.5.2.53", 500, "2c07d7519ad8df23a23027e9e7c2654b32c4e0f3"),
    ],
)
def test_natd_matches_real_captures(spi_i: str, ip: str, port: int, expected: str) -> None:
    assert natd_hash(bytes.fromhex(spi_i), bytes(8), ip, port).hex() == expected
    assert natd_hash(bytes.fromhex(spi_i), bytes(8), IPv4Address(ip), port).hex() == expected


def test_natd_ipv6_and_input_forms() -> None:
    spi_i, spi_r = b"\x01" * 8, b"\x02" * 8
    addr = IPv6Address("2001:db8::7")
    expected = hashlib.sha1(spi_i + spi_r + addr.packed + (4500).to_bytes(2, "big")).digest()
    assert natd_hash(spi_i, spi_r, addr, 4500) == expected
    assert natd_hash(spi_i, spi_r, "2001:db8::7", 4500) == expected
    assert natd_hash(spi_i, spi_r, addr.packed, 4500) == expected
    assert natd_hash(spi_i, spi_r, addr, 4501) != expected
    for bad_ip in ("not-an-ip", b"\x01\x02\x03"):
        with pytest.raises(CryptoError):
            natd_hash(spi_i, spi_r, bad_ip, 500)
    with pytest.raises(CryptoError):
        natd_hash(spi_i, spi_r, addr, 70000)


# ---------------------------------------------------------------- cookies (RFC 7296 §2.6)

NI = b"\x33" * 32
IP = "198.51.100.7"
SPI = b"\x44" * 8


def test_cookie_layout_and_verification() -> None:
    jar = CookieJar(SeededRandomSource(1), rotation_period=60)
    cookie = jar.make(NI, IP, SPI, now=1000.0)
    assert len(cookie) == COOKIE_SIZE and 1 <= len(cookie) <= 64
    assert jar.verify(cookie, NI, IP, SPI, now=1001.0)
    assert jar.verify(cookie, NI, IPv4Address(IP), SPI, now=1001.0)
    # VersionIDofSecret | HMAC-SHA256(secret, Ni | IPi | SPIi): recompute with the jar's secret
    version, secret = jar._current
    assert cookie[:4] == version.to_bytes(4, "big")
    assert cookie[4:] == hmac.new(secret, NI + IPv4Address(IP).packed + SPI, "sha256").digest()


def test_cookie_binds_nonce_address_and_spi() -> None:
    jar = CookieJar(SeededRandomSource(2), rotation_period=60)
    cookie = jar.make(NI, IP, SPI, now=0.0)
    assert not jar.verify(cookie, b"\x34" * 32, IP, SPI, now=1.0)
    assert not jar.verify(cookie, NI, "198.51.100.8", SPI, now=1.0)
    assert not jar.verify(cookie, NI, IP, b"\x45" * 8, now=1.0)
    assert not jar.verify(cookie[:-1], NI, IP, SPI, now=1.0)
    assert not jar.verify(b"", NI, IP, SPI, now=1.0)
    tampered = bytearray(cookie)
    tampered[-1] ^= 1
    assert not jar.verify(bytes(tampered), NI, IP, SPI, now=1.0)
    other = CookieJar(SeededRandomSource(3), rotation_period=60)
    assert not other.verify(cookie, NI, IP, SPI, now=1.0)


def test_cookie_secret_rotation_keeps_previous_generation() -> None:
    jar = CookieJar(SeededRandomSource(4), rotation_period=60)
    old = jar.make(NI, IP, SPI, now=0.0)
    assert jar.verify(old, NI, IP, SPI, now=59.0)
    new = jar.make(NI, IP, SPI, now=61.0)  # rotation happened
    assert new != old and new[:4] != old[:4]
    assert jar.verify(old, NI, IP, SPI, now=62.0)  # previous secret still accepted
    assert jar.verify(new, NI, IP, SPI, now=62.0)
    assert jar.verify(new, NI, IP, SPI, now=125.0)  # second rotation: new becomes previous
    assert not jar.verify(old, NI, IP, SPI, now=125.0)  # two generations back: refused


def test_cookie_expires_after_long_silence() -> None:
    jar = CookieJar(SeededRandomSource(5), rotation_period=10)
    cookie = jar.make(NI, IP, SPI, now=0.0)
    assert not jar.verify(cookie, NI, IP, SPI, now=500.0)


def test_cookie_rotation_period_must_be_positive() -> None:
    with pytest.raises(ValueError):
        CookieJar(SeededRandomSource(1), rotation_period=0)


# ---------------------------------------------------------------- random sources


def test_seeded_source_is_reproducible() -> None:
    a, b = SeededRandomSource(42), SeededRandomSource(42)
    assert [a.bytes(16), a.random(), a.randbelow(1000)] == [b.bytes(16), b.random(), b.randbelow(1000)]
    assert SeededRandomSource(43).bytes(16) != SeededRandomSource(42).bytes(16)
    with pytest.raises(ValueError):
        a.randbelow(0)


def test_sources_satisfy_the_protocol() -> None:
    for src in (SystemRandomSource(), SeededRandomSource(1)):
        assert isinstance(src, RandomSource)
        assert len(src.bytes(24)) == 24
        assert 0.0 <= src.random() < 1.0
        assert all(0 <= src.randbelow(7) < 7 for _ in range(50))
    sys_src = SystemRandomSource()
    assert sys_src.bytes(16) != sys_src.bytes(16)
