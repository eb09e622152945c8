"""ESP SAs (RFC 4303, 4106, 7634, 4868): round trips, published vectors, scapy interop, errors."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from quickike.dataplane.errors import (
    AuthenticationFailed,
    MalformedPacket,
    SaExpired,
    UnsupportedSa,
)
from quickike.dataplane.esp import (
    MAX_HEADROOM,
    MAX_TAILROOM,
    EspDecryptor,
    EspEncryptor,
    EspTransform,
    Lifetime,
    decryptor_for,
    encryptor_for,
    make_decryptor,
    make_encryptor,
    supported,
    transform_for,
)
from quickike.dataplane.replay import ReplayError
from quickike.engine.dataplane import ChildCounters, Expiry
from quickike.wire.enums import EncrId, IntegId

from .helpers import SUITES, ipv4, spec_pair

SPI = b"\x01\x02\x03\x04"


def pair(
    t: EspTransform, *, esn: bool = False, next_seq: int = 1, **kw: Any
) -> tuple[EspEncryptor, EspDecryptor, bytes, bytes]:
    key = os.urandom(t.key_len + t.salt_len)
    ikey = os.urandom(t.integ_key_len)
    enc = make_encryptor(t, SPI, key, ikey, esn=esn, next_seq=next_seq, **kw)
    dec = make_decryptor(t, SPI, key, ikey, esn=esn)
    return enc, dec, key, ikey


@pytest.mark.parametrize("esn", [False, True], ids=["noesn", "esn"])
@pytest.mark.parametrize(
    ("name", "eid", "bits", "iid", "ek", "ik"), SUITES, ids=[s[0] for s in SUITES]
)
def test_round_trip_every_length(
    name: str, eid: int, bits: int, iid: int, ek: int, ik: int, esn: bool
) -> None:
    a, b = spec_pair(eid, bits, iid, ek, ik, esn=esn)
    enc = encryptor_for(a)
    dec = decryptor_for(b)
    t = enc.transform
    lengths = [*range(0, 40), 1399, 1400, 1401, 9000]
    for n in lengths:
        payload = os.urandom(n)
        pkt = enc.seal(payload, 4, 1.0)
        assert pkt[:4] == a.spi_out
        assert struct.unpack("!I", pkt[4:8])[0] == enc.seq
        assert len(pkt) % 4 == 0
        assert (len(pkt) - t.header_len - t.icv_len) % t.align == 0
        assert len(pkt) <= n + t.overhead
        nh, out = dec.open(pkt, 2.0)
        assert (nh, out) == (4, payload)
    assert dec.counters.packets_in == enc.counters.packets_out == len(lengths)


@pytest.mark.parametrize("kind", ["aead", "cbc"])
def test_padding_is_monotonic_and_iv_is_the_sequence_number(kind: str) -> None:
    if kind == "aead":
        t = transform_for(EncrId.AES_GCM_16, 128, 0)
    else:
        t = transform_for(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    ivs = iter([bytes([i]) * 16 for i in range(1, 100)])
    enc, _, key, _ = pair(t, next_seq=0x1234, random_bytes=lambda n: next(ivs)[:n])
    pkt = enc.seal(b"x" * 3, 41, 0.0)
    if kind == "aead":
        assert pkt[8:16] == struct.pack("!Q", 0x1234)
        pt = AESGCM(key[:16]).decrypt(key[16:] + pkt[8:16], pkt[16:], pkt[:8])
        assert pt == b"x" * 3 + b"\x01\x02\x03" + b"\x03" + b"\x29"
    else:
        assert pkt[8:24] == b"\x01" * 16
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        d = Cipher(algorithms.AES(key), modes.CBC(pkt[8:24])).decryptor()
        pt = d.update(pkt[24:-16]) + d.finalize()
        assert pt == b"x" * 3 + bytes(range(1, 12)) + b"\x0b\x29"


# --- published vectors -----------------------------------------------------------------------


def test_rfc7634_appendix_a_esp_example_decrypts() -> None:
    keymat = bytes(range(0x80, 0xA0)) + bytes([0xA0, 0xA1, 0xA2, 0xA3])
    source = bytes.fromhex(
        "45000054a6f200004001e778c6336405c000020508005b7a3a080000553bec10"
        "0007362708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223"
        "2425262728292a2b2c2d2e2f3031323334353637"
    )
    esp_packet = bytes.fromhex(
        "4500008c2345000040 32de5bcb007199cb00710501020304000000051011121314"
        "151617240394 28b97f417e3c13753a4f05087b67c352e6a7fab1b982d466ef407ae5c6"
        "14ee8099d52844eb61aa95dfab4c02f72aa71e7c4c4f64c9befe2facc638e8f3cbec163f"
        "ac469b502773f6fb94e664da9165b82829f641e076aaa8266b7fb0f7b11b369907e1ad43".replace(" ", "")
    )
    t = transform_for(EncrId.CHACHA20_POLY1305, 256, 0)
    dec = make_decryptor(t, SPI, keymat)
    nh, inner = dec.open(esp_packet[20:], 0.0)  # skip the outer IPv4 header
    assert (nh, inner) == (4, source)
    assert dec.window.top == 5


# draft-mcgrew-gcm-test-01 §4 (GCM test cases for ESP): key||salt, ESP header and IV,
# ciphertext||tag, plaintext (IP packet + ESP trailer), ESN high bits (None: no ESN).
GCM_VECTORS = [
    (
        "4c80cdefbb5d10da906ac73c3613a6342e443b68",
        "00004321000000004956ed7e3b244cfe",
        "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34"
        "cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce"
        "61bc17d768fd9732"
        "459018148f6cbe722fd04796562dfdb4",
        "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000"
        "00000000045f736970045f756470037369700963796265726369747902646b00"
        "0021000101020201",
        0x87654321,
    ),
    (
        "feffe9928665731c6d6a8f9467308308feffe9928665731ccafebabe",
        "0000a5f80000000afacedbaddecaf888",
        "a5b1f8066029aea40e598b8122de02420938b3ab33f828e687b8858b5bfbdbd0"
        "315b27452144cc77"
        "95457b9652037f5318027b5b4cd7a636",
        "45000028a4ad4000400678800a01038f0a010612802306b8cb712602dd6bb03e501016d075680001",
        None,
    ),
    (
        "abbccddef00112233445566778899aababbccddef00112233445566778899aab11223344",
        "4a2cbfe3000000020102030405060708",
        "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763"
        "748a637985771d347f0545659f14e99def842d8e"
        "b335f4eecfdbf831824b4c4915956c96",
        "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000"
        "7002400020bf0000020405b40101040201020201",
        None,
    ),
    (
        "7d773d00c144c525ac619d18c84a3f47d9664267",
        "335467aeffffffff43457e9182443bc6",
        "437f866bcb3f699fe9b0822bac961c4504bef270",
        "01020201",
        None,
    ),
]


@pytest.mark.parametrize(("keymat", "header", "ct", "plain", "esn_high"), GCM_VECTORS)
def test_gcm_esp_vectors_decrypt(
    keymat: str, header: str, ct: str, plain: str, esn_high: int | None
) -> None:
    key = bytes.fromhex(keymat)
    hdr = bytes.fromhex(header)
    t = transform_for(EncrId.AES_GCM_16, (len(key) - 4) * 8, 0)
    dec = make_decryptor(t, hdr[:4], key, esn=esn_high is not None)
    if esn_high is not None:
        dec.window.update((esn_high << 32) - 1)  # receiver already at the end of subspace Th - 1
    nh, inner = dec.open(hdr + bytes.fromhex(ct), 0.0)
    p = bytes.fromhex(plain)
    assert nh == p[-1]
    assert inner == p[: len(p) - 2 - p[-2]]
    # one flipped bit anywhere fails authentication
    bad = bytearray(hdr + bytes.fromhex(ct))
    bad[-20] ^= 0x40
    dec2 = make_decryptor(t, hdr[:4], key, esn=esn_high is not None)
    if esn_high is not None:
        dec2.window.update((esn_high << 32) - 1)
    with pytest.raises(AuthenticationFailed):
        dec2.open(bytes(bad), 0.0)


# --- scapy as an independent implementation ------------------------------------------------

SCAPY_SUITES = [
    ("AES-GCM", None, EncrId.AES_GCM_16, 128, 0),
    ("AES-GCM", None, EncrId.AES_GCM_16, 256, 0),
    ("CHACHA20-POLY1305", None, EncrId.CHACHA20_POLY1305, 256, 0),
    ("AES-CBC", "SHA2-256-128", EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128),
    ("AES-CBC", "HMAC-SHA1-96", EncrId.AES_CBC, 256, IntegId.HMAC_SHA1_96),
]


@pytest.mark.parametrize("esn", [False, True], ids=["noesn", "esn"])
@pytest.mark.parametrize(
    ("crypt", "auth", "eid", "bits", "iid"), SCAPY_SUITES, ids=lambda v: str(v)
)
def test_scapy_interop(
    crypt: str, auth: str | None, eid: int, bits: int, iid: int, esn: bool
) -> None:
    layers = pytest.importorskip("scapy.layers.inet")
    ipsec = pytest.importorskip("scapy.layers.ipsec")
    IP, ICMP = layers.IP, layers.ICMP
    t = transform_for(eid, bits, iid)
    key = os.urandom(t.key_len + t.salt_len)
    ikey = os.urandom(t.integ_key_len)
    spi = 0x0A0B0C0D
    high = 3 if esn else 0
    first = (high << 32) | 0xFFFFFFF0 if esn else 7
    enc = make_encryptor(t, spi.to_bytes(4, "big"), key, ikey, esn=esn, next_seq=first)
    dec = make_decryptor(t, spi.to_bytes(4, "big"), key, ikey, esn=esn)
    outer = IP(src="192.0.2.1", dst="192.0.2.2")

    def scapy_sa(h: int) -> Any:
        return ipsec.SecurityAssociation(
            ipsec.ESP,
            spi=spi,
            crypt_algo=crypt,
            crypt_key=key,
            auth_algo=auth,
            auth_key=ikey or None,
            tunnel_header=outer,
            esn_en=esn,
            esn=h,
        )

    # quickike -> scapy (crossing the 2^32 boundary with ESN)
    for i in range(20):
        inner = bytes(IP(src="10.1.0.1", dst="10.2.0.1") / ICMP(seq=i) / (b"q" * (i * 7)))
        esp = enc.seal(inner, 4, 0.0)
        wire = IP(bytes(IP(src="192.0.2.1", dst="192.0.2.2", proto=50) / esp))
        h = enc.seq >> 32
        assert bytes(scapy_sa(h).decrypt(wire)) == inner
    assert not esn or enc.seq >> 32 == high + 1
    # scapy -> quickike
    sa = scapy_sa(high)
    if esn:
        dec.window.update((high << 32) | 0xFFFFFF00)
    for i in range(10):
        inner = bytes(IP(src="10.2.0.1", dst="10.1.0.1") / ICMP(seq=i) / (b"r" * (i * 13)))
        sa.seq_num = (0xFFFFFF10 + i) if esn else 100 + i
        pkt = sa.encrypt(IP(inner))
        nh, out = dec.open(bytes(pkt[ipsec.ESP]), 0.0)
        assert (nh, out) == (4, inner)
    if esn:  # and after the wrap, scapy told about the new high bits
        sa = scapy_sa(high + 1)
        sa.seq_num = 2
        inner = bytes(IP(src="10.2.0.1", dst="10.1.0.1") / ICMP())
        assert dec.open(bytes(sa.encrypt(IP(inner))[ipsec.ESP]), 0.0) == (4, inner)
        assert dec.window.top == ((high + 1) << 32) | 2


# --- errors ---------------------------------------------------------------------------------


def gcm() -> EspTransform:
    return transform_for(EncrId.AES_GCM_16, 128, 0)


def forge(key: bytes, seq: int, plaintext: bytes) -> bytes:
    """A correctly authenticated AES-GCM ESP packet around an arbitrary (maybe bad) plaintext."""
    hdr = SPI + struct.pack("!IQ", seq, seq)
    return hdr + AESGCM(key[:16]).encrypt(key[16:] + hdr[8:], plaintext, hdr[:8])


def test_tampering_fails_and_does_not_move_the_window() -> None:
    enc, dec, _, _ = pair(gcm())
    pkt = bytearray(enc.seal(b"hello world!", 4, 0.0))
    for i in (4, 9, 20, len(pkt) - 1):
        bad = bytearray(pkt)
        bad[i] ^= 1
        with pytest.raises(AuthenticationFailed):
            dec.open(bytes(bad), 0.0)
    assert dec.window.top == 0 and dec.auth_failures == 4
    assert dec.open(bytes(pkt), 0.0) == (4, b"hello world!")
    with pytest.raises(ReplayError):
        dec.open(bytes(pkt), 0.0)


def test_cbc_tampering_fails() -> None:
    t = transform_for(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    enc, dec, _, _ = pair(t, esn=True)
    pkt = bytearray(enc.seal(b"abc", 4, 0.0))
    pkt[30] ^= 0x80
    with pytest.raises(AuthenticationFailed):
        dec.open(bytes(pkt), 0.0)


def test_esn_high_bits_are_authenticated() -> None:
    """A receiver that guesses other high-order bits must fail the ICV (RFC 4303 App. A)."""
    t = gcm()
    enc, dec, _, _ = pair(t, esn=True, next_seq=(5 << 32) | 10)
    pkt = enc.seal(b"data", 4, 0.0)
    dec.window.update((4 << 32) | 100)  # receiver believes Th = 4: infers 4, not 5
    with pytest.raises(AuthenticationFailed):
        dec.open(pkt, 0.0)


@pytest.mark.parametrize(
    ("plaintext", "why"),
    [
        (b"abcdefgh" + b"\x01\x03" + b"\x02\x04", "padding"),  # pad bytes must be 1, 2
        (b"ab" + b"\x09\x04", "pad length"),  # pad length beyond the payload
    ],
)
def test_bad_trailer_is_malformed(plaintext: bytes, why: str) -> None:
    t = gcm()
    key = os.urandom(20)
    dec = make_decryptor(t, SPI, key)
    with pytest.raises(MalformedPacket, match=why):
        dec.open(forge(key, 1, plaintext), 0.0)
    assert dec.window.seen(1)  # authenticated, so the sequence number is used up


def test_good_forged_trailer_passes() -> None:
    key = os.urandom(20)
    dec = make_decryptor(gcm(), SPI, key)
    assert dec.open(forge(key, 1, b"abcdefgh\x01\x02\x02\x3b"), 0.0) == (59, b"abcdefgh")


@pytest.mark.parametrize("length", [0, 8, 16, 35, 37, 38, 39])
def test_short_or_misaligned_aead_packets(length: int) -> None:
    dec = make_decryptor(gcm(), SPI, os.urandom(20))
    with pytest.raises(MalformedPacket):
        dec.open(SPI + b"\0\0\0\1" + bytes(max(0, length - 8)), 0.0)


@pytest.mark.parametrize("length", [24 + 16, 24 + 16 + 15, 24 + 16 + 16 + 1])
def test_short_or_misaligned_cbc_packets(length: int) -> None:
    t = transform_for(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    dec = make_decryptor(t, SPI, os.urandom(16), os.urandom(32))
    with pytest.raises(MalformedPacket):
        dec.open(SPI + b"\0\0\0\1" + bytes(length - 8), 0.0)


@pytest.mark.parametrize(
    ("eid", "bits", "iid"),
    [
        (EncrId.AES_GCM_8, 128, 0),
        (EncrId.AES_GCM_16, 512, 0),
        (EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128),
        (EncrId.AES_CBC, 128, 0),
        (EncrId.AES_CBC, 128, IntegId.AES_XCBC_96),
        (EncrId.CHACHA20_POLY1305, 128, 0),
        (EncrId.TRIPLE_DES, 192, IntegId.HMAC_SHA1_96),
        (EncrId.NULL, 0, IntegId.HMAC_SHA2_256_128),
    ],
)
def test_unsupported_transforms(eid: int, bits: int, iid: int) -> None:
    with pytest.raises(UnsupportedSa):
        transform_for(eid, bits, iid)
    assert not supported(eid, bits, iid)


def test_supported_transforms() -> None:
    for _, eid, bits, iid, _, _ in SUITES:
        assert supported(eid, bits, iid)


def test_wrong_key_lengths_and_spi_zero() -> None:
    t = gcm()
    with pytest.raises(UnsupportedSa, match="encryption key"):
        make_encryptor(t, SPI, os.urandom(16))  # salt missing
    cbc = transform_for(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128)
    with pytest.raises(UnsupportedSa, match="integrity key"):
        make_decryptor(cbc, SPI, os.urandom(16), os.urandom(20))
    with pytest.raises(UnsupportedSa, match="SPI"):
        make_encryptor(t, b"\0\0\0\0", os.urandom(20))


# --- counters and lifetimes ----------------------------------------------------------------


def test_counters_and_times() -> None:
    c_out, c_in = ChildCounters(), ChildCounters()
    t = gcm()
    key = os.urandom(20)
    enc = make_encryptor(t, SPI, key, counters=c_out)
    dec = make_decryptor(t, SPI, key, counters=c_in)
    pkts = [enc.seal(b"x" * n, 4, 10.0 + n) for n in (10, 20, 30)]
    assert (c_out.packets_out, c_out.bytes_out, c_out.last_out) == (3, 60, 40.0)
    assert c_out.packets_in == 0 and c_out.last_in is None
    for i, p in enumerate(pkts):
        dec.open(p, 100.0 + i)
    assert (c_in.packets_in, c_in.bytes_in, c_in.last_in) == (3, 60, 102.0)
    with pytest.raises(ReplayError):
        dec.open(pkts[0], 200.0)
    assert c_in.last_in == 102.0  # rejected packets are not signs of life


@pytest.mark.parametrize("direction", ["out", "in"])
@pytest.mark.parametrize("unit", ["packets", "bytes"])
def test_soft_then_hard_lifetime(direction: str, unit: str) -> None:
    events: list[Expiry] = []
    t = gcm()
    key = os.urandom(20)
    life = (
        Lifetime(soft_packets=3, hard_packets=5)
        if unit == "packets"
        else Lifetime(soft_bytes=300, hard_bytes=500)
    )
    enc = make_encryptor(
        t, SPI, key, lifetime=life if direction == "out" else Lifetime(), on_expiry=events.append
    )
    dec = make_decryptor(
        t, SPI, key, lifetime=life if direction == "in" else Lifetime(), on_expiry=events.append
    )
    sa = enc if direction == "out" else dec
    for i in range(1, 6):
        p = enc.seal(b"z" * 100, 4, 0.0)
        dec.open(p, 0.0)
        expected = [] if i < 3 else [Expiry.SOFT] if i < 5 else [Expiry.SOFT, Expiry.HARD]
        assert events == expected, i
    assert sa.dead
    with pytest.raises(SaExpired):
        if direction == "out":
            enc.seal(b"z", 4, 0.0)
        else:
            dec.open(p, 0.0)
    assert events == [Expiry.SOFT, Expiry.HARD]


def test_hard_without_soft() -> None:
    events: list[Expiry] = []
    enc, _, _, _ = pair(gcm(), lifetime=Lifetime(hard_bytes=10), on_expiry=events.append)
    enc.seal(b"0123456789", 4, 0.0)
    assert events == [Expiry.HARD]


def test_sequence_numbers_never_wrap_without_esn() -> None:
    events: list[Expiry] = []
    enc, _, _, _ = pair(
        gcm(), next_seq=0xFFFFFFFF - 12, seq_soft_margin=10, on_expiry=events.append
    )
    seqs = []
    for _ in range(13):
        seqs.append(struct.unpack("!I", enc.seal(b"x", 4, 0.0)[4:8])[0])
        if seqs[-1] == 0xFFFFFFFF - 10:
            assert events == [Expiry.SOFT]  # time to rekey
    assert seqs[-1] == 0xFFFFFFFF
    assert events == [Expiry.SOFT, Expiry.HARD]
    with pytest.raises(SaExpired):
        enc.seal(b"x", 4, 0.0)


def test_esn_sequence_numbers_cross_2_32() -> None:
    events: list[Expiry] = []
    enc, dec, _, _ = pair(gcm(), esn=True, next_seq=0xFFFFFFFE, on_expiry=events.append)
    dec.window.update(0xFFFFFFF0)
    lows = []
    for _ in range(4):
        p = enc.seal(b"x", 4, 0.0)
        lows.append(struct.unpack("!I", p[4:8])[0])
        assert dec.open(p, 0.0) == (4, b"x")
    assert lows == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1]
    assert enc.seq == (1 << 32) | 1 and events == []


def test_buffers_are_reused_without_leaking_between_packets() -> None:
    """seal_into/open_into into the same buffers: stale bytes must not leak into the next packet."""
    enc, dec, _, _ = pair(gcm())
    src = memoryview(bytearray(2000 + MAX_TAILROOM))
    out = memoryview(bytearray(2000 + MAX_HEADROOM + MAX_TAILROOM))
    plain = memoryview(bytearray(2100))
    for n in (1500, 3, 700, 0, 1):
        payload = os.urandom(n)
        src[:n] = payload
        end = enc.seal_into(src, 0, n, 4, out, 0.0)
        nh, plen = dec.open_into(out, end, plain, 0.0)
        assert (nh, bytes(plain[:plen])) == (4, payload)


def test_ip_packet_through_gcm_keeps_bytes() -> None:
    a, b = spec_pair()
    pkt = ipv4("10.1.0.1", "10.2.0.1", payload=b"p" * 100)
    assert decryptor_for(b).open(encryptor_for(a).seal(pkt, 4, 0.0), 0.0) == (4, pkt)
