"""Key derivation (RFC 7296 §2.13, §2.14, §2.17, §2.18).

No RFC publishes an end-to-end SKEYSEED vector (qcd-requirements part 3), so
the derivations are cross-checked against an independent stdlib-hmac
implementation of the same formulas, written out here from the RFC text.
"""

from __future__ import annotations

import hmac

import pytest

from quickike.crypto import (
    PRF_ALGS,
    CryptoError,
    derive_child_keys,
    derive_ike_keys,
    derive_rekeyed_ike_keys,
    parse_proposals,
    prf_plus,
    select_proposal,
    specs_to_sa_payload,
)
from quickike.crypto.proposals import Suite
from quickike.wire.enums import PrfId, ProtocolId

NI = bytes(range(32))
NR = bytes(range(100, 132))
SPI_I = bytes.fromhex("0102030405060708")
SPI_R = bytes.fromhex("1112131415161718")
SHARED = bytes(range(200, 232))


def suite(text: str, protocol: ProtocolId = ProtocolId.IKE) -> Suite:
    specs = parse_proposals(text, protocol)
    spi = b"" if protocol == ProtocolId.IKE else b"\x00\x00\x00\x01"
    s = select_proposal(specs_to_sa_payload(specs, spi=spi), specs)
    assert s is not None
    return s


def ref_prf_plus(name: str, key: bytes, seed: bytes, n: int) -> bytes:
    out, t, i = b"", b"", 1
    while len(out) < n:
        t = hmac.new(key, t + seed + bytes([i]), name).digest()
        out += t
        i += 1
    return out[:n]


def test_prf_plus_matches_reference_and_limits() -> None:
    prf = PRF_ALGS[PrfId.HMAC_SHA2_256]
    assert prf_plus(prf, b"k", b"seed", 100) == ref_prf_plus("sha256", b"k", b"seed", 100)
    assert prf_plus(prf, b"k", b"seed", 0) == b""
    assert len(prf_plus(prf, b"k", b"s", 255 * 32)) == 255 * 32  # counter reaches 255
    with pytest.raises(CryptoError):
        prf_plus(prf, b"k", b"s", 255 * 32 + 1)  # the one-octet counter would wrap


@pytest.mark.parametrize(
    ("text", "hash_name", "sizes"),
    [
        # (SK_d, SK_a, SK_e, SK_p) lengths
        ("aes256-sha256-prfsha256-modp2048", "sha256", (32, 32, 32, 32)),
        ("aes128-sha1-prfsha384-ecp256", "sha384", (48, 20, 16, 48)),
        ("aes256gcm16-prfsha512-x25519", "sha512", (64, 0, 36, 64)),
        ("aes128gcm8-prfsha256-x25519", "sha256", (32, 0, 20, 32)),
        ("chacha20poly1305-prfsha256-x25519", "sha256", (32, 0, 36, 32)),
    ],
)
def test_ike_keys_layout(text: str, hash_name: str, sizes: tuple[int, int, int, int]) -> None:
    s = suite(text)
    skeyseed, keys = derive_ike_keys(s, SHARED, NI, NR, SPI_I, SPI_R)
    assert skeyseed == hmac.new(NI + NR, SHARED, hash_name).digest()
    d, a, e, p = sizes
    stream = ref_prf_plus(hash_name, skeyseed, NI + NR + SPI_I + SPI_R, d + 2 * a + 2 * e + 2 * p)
    expected = []
    pos = 0
    for n in (d, a, a, e, e, p, p):
        expected.append(stream[pos : pos + n])
        pos += n
    assert [keys.sk_d, keys.sk_ai, keys.sk_ar, keys.sk_ei, keys.sk_er, keys.sk_pi,
            keys.sk_pr] == expected


def test_rekey_uses_old_prf_for_skeyseed_and_new_prf_after() -> None:
    old = suite("aes128-sha1-prfsha1-modp2048")
    new = suite("aes256gcm16-prfsha512-x25519")
    _, old_keys = derive_ike_keys(old, SHARED, NI, NR, SPI_I, SPI_R)
    assert old.prf is not None
    ni2, nr2, spi_i2, spi_r2 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 8, b"\x04" * 8
    shared2 = b"\x05" * 32
    skeyseed, keys = derive_rekeyed_ike_keys(
        old.prf, old_keys.sk_d, new, shared2, ni2, nr2, spi_i2, spi_r2
    )
    assert skeyseed == hmac.new(old_keys.sk_d, shared2 + ni2 + nr2, "sha1").digest()
    stream = ref_prf_plus("sha512", skeyseed, ni2 + nr2 + spi_i2 + spi_r2, 64)
    assert keys.sk_d == stream
    assert len(keys.sk_ei) == 36 and keys.sk_ai == b""


@pytest.mark.parametrize("with_dh", [False, True])
def test_child_keys_order_and_sizes(with_dh: bool) -> None:
    ike = suite("aes128-sha256-prfsha256-modp2048")
    assert ike.prf is not None
    _, keys = derive_ike_keys(ike, SHARED, NI, NR, SPI_I, SPI_R)
    child = suite("aes128-sha256-esn", ProtocolId.ESP)
    shared = b"\x09" * 256 if with_dh else None
    ck = derive_child_keys(ike.prf, keys.sk_d, child, NI, NR, shared)
    seed = (shared or b"") + NI + NR
    stream = ref_prf_plus("sha256", keys.sk_d, seed, 2 * (16 + 32))
    assert (ck.encr_i, ck.integ_i, ck.encr_r, ck.integ_r) == (
        stream[:16], stream[16:48], stream[48:64], stream[64:],
    )
    gcm = suite("aes256gcm16", ProtocolId.ESP)
    ck = derive_child_keys(ike.prf, keys.sk_d, gcm, NI, NR)
    stream = ref_prf_plus("sha256", keys.sk_d, NI + NR, 72)
    assert (ck.encr_i, ck.encr_r) == (stream[:36], stream[36:]) and ck.integ_i == b""


def test_key_material_stays_out_of_repr() -> None:
    s = suite("aes256-sha256-prfsha256-modp2048")
    _, keys = derive_ike_keys(s, SHARED, NI, NR, SPI_I, SPI_R)
    text = repr(keys)
    for k in (keys.sk_d, keys.sk_ei, keys.sk_ai, keys.sk_pi):
        assert k.hex() not in text and repr(k) not in text
    ike = suite("aes128-sha256-prfsha256-modp2048")
    assert ike.prf is not None
    ck = derive_child_keys(ike.prf, keys.sk_d, suite("aes128-sha256", ProtocolId.ESP), NI, NR)
    assert ck.encr_i.hex() not in repr(ck)


def test_wireshark_line() -> None:
    s = suite("aes256-sha256-prfsha256-modp2048")
    _, keys = derive_ike_keys(s, SHARED, NI, NR, SPI_I, SPI_R)
    line = keys.wireshark_line(SPI_I, SPI_R, s)
    assert line == ",".join([
        SPI_I.hex(), SPI_R.hex(), keys.sk_ei.hex(), keys.sk_er.hex(),
        '"AES-CBC-256 [RFC3602]"', keys.sk_ai.hex(), keys.sk_ar.hex(),
        '"HMAC_SHA2_256_128 [RFC4868]"',
    ])
    g = suite("aes128gcm16-prfsha256-x25519")
    _, gk = derive_ike_keys(g, SHARED, NI, NR, SPI_I, SPI_R)
    gline = gk.wireshark_line(SPI_I, SPI_R, g)
    # interop-lab.md form: key|salt as SK_e, empty SK_a, integrity NONE
    assert gline.endswith(',"AES-GCM-128 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"')
    assert gk.sk_ei.hex() in gline and len(gk.sk_ei) == 20

