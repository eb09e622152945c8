"""Published test vectors, each checked through quickike's own API.

Sources are named on every vector; values were copied from the RFC texts in
/work/shared/reference/rfc/ unless stated otherwise.
"""

from __future__ import annotations

import builtins

import pytest

from quickike.crypto import (
    DH_ALGS,
    INTEG_ALGS,
    PRF_ALGS,
    IkeKeys,
    SkProtector,
    Suite,
    encr_alg,
    prf_plus,
)
from quickike.wire import KE, decode_message, encode_payloads
from quickike.wire.enums import DhGroup, EncrId, IntegId, PayloadType, PrfId, ProtocolId


def h(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


class FixedRandom:
    """RandomSource that returns scripted values, to pin IVs and private keys."""

    def __init__(self, data: bytes = b"", below: int = 0) -> None:
        self._data = data
        self._below = below

    def bytes(self, n: int) -> builtins.bytes:
        out, self._data = self._data[:n], self._data[n:]
        assert len(out) == n, "test ran out of scripted random octets"
        return out

    def random(self) -> float:
        return 0.0

    def randbelow(self, n: int) -> int:
        assert self._below < n
        return self._below


# ---------------------------------------------------------------- RFC 7634 Appendix B

RFC7634_KEY = bytes(range(0x80, 0xA0)) + h("a0a1a2a3")  # key 80..9f, salt a0a1a2a3
RFC7634_MESSAGE = h(
    """c0 c1 c2 c3 c4 c5 c6 c7 d0 d1 d2 d3 d4 d5 d6 d7
       2e 20 25 00 00 00 00 09 00 00 00 45 29 00 00 29
       10 11 12 13 14 15 16 17 61 03 94 70 1f 8d 01 7f
       7c 12 92 48 89 6b 71 bf e2 52 36 ef d7 cd c6 70
       66 90 63 15 b2"""
)
RFC7634_NOTIFY = h("00 00 00 0c 00 00 40 01 00 00 00 0a")  # N(SET_WINDOW_SIZE) = 10


def _chacha_protector(iv: bytes) -> SkProtector:
    encr = encr_alg(EncrId.CHACHA20_POLY1305, None)
    assert encr is not None
    suite = Suite(ProtocolId.IKE, 1, b"", encr, PRF_ALGS[PrfId.HMAC_SHA2_256], None, None)
    keys = IkeKeys(b"", b"", b"", RFC7634_KEY, RFC7634_KEY, b"", b"")
    # The example message has I=0: its sender is the responder, who sends with SK_er.
    return SkProtector(suite, keys, original_initiator=False, rng=FixedRandom(iv))


def test_rfc7634_appendix_b_protect_gives_published_message() -> None:
    sk = _chacha_protector(h("10 11 12 13 14 15 16 17"))
    out = sk.protect(
        bytes(range(0xC0, 0xC8)), bytes(range(0xD0, 0xD8)), 37, 0x00, 9,
        PayloadType.NOTIFY, RFC7634_NOTIFY,
    )
    assert out == RFC7634_MESSAGE


def test_rfc7634_appendix_b_unprotect_recovers_notify() -> None:
    msg = decode_message(RFC7634_MESSAGE)
    # The receiver of that message is the original initiator (keys swap roles).
    encr = encr_alg(EncrId.CHACHA20_POLY1305, None)
    assert encr is not None
    suite = Suite(ProtocolId.IKE, 1, b"", encr, PRF_ALGS[PrfId.HMAC_SHA2_256], None, None)
    keys = IkeKeys(b"", b"", b"", b"\x00" * 36, RFC7634_KEY, b"", b"")
    sk = SkProtector(suite, keys, original_initiator=True, rng=FixedRandom(bytes(8)))
    first, inner = sk.unprotect(RFC7634_MESSAGE, msg.sk_offset)
    assert first == PayloadType.NOTIFY
    assert inner == RFC7634_NOTIFY


# ---------------------------------------------------------------- RFC 5903 §8.1 (group 19)

RFC5903_I = 0xC88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433
RFC5903_R = 0xC6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53
RFC5903_KEI = h(
    """00000048 00130000 DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF
       945D0C37 72581180 5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58
       389E0577 B8990BB3"""
)
RFC5903_KER = h(
    """00000048 00130000 D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C
       736FC755 4494BF63 56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83
       53E74F33 039872AB"""
)
RFC5903_GIRX = h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE")


def test_rfc5903_group19_ke_payloads_and_shared_secret() -> None:
    alg = DH_ALGS[DhGroup.ECP_256]
    # generate() draws d = randbelow(n - 1) + 1, so scripting randbelow pins d.
    ini = alg.generate(FixedRandom(below=RFC5903_I - 1))
    res = alg.generate(FixedRandom(below=RFC5903_R - 1))
    assert encode_payloads([KE(DhGroup.ECP_256, ini.public)]) == (PayloadType.KE, RFC5903_KEI)
    assert encode_payloads([KE(DhGroup.ECP_256, res.public)]) == (PayloadType.KE, RFC5903_KER)
    assert ini.shared(res.public) == RFC5903_GIRX
    assert res.shared(ini.public) == RFC5903_GIRX


# ---------------------------------------------------------------- RFC 8031 Appendix A (X25519)


def test_rfc8031_appendix_a_x25519() -> None:
    random_i = h("751fb4308655b476b6789b7325f9ea8cddd16a58533ff6d9e60009464a5f9d94")
    random_r = h("0a54645253290d60ddadd0e030bacd9e5501efdc220755a1e978f1b839a05688")
    pub_i = h("48d5ddd4061257ba166fa3f9bbdb74f1a4e81c089384fa77f790709f0dfbc766")
    pub_r = h("0be7c1f5aad87d7e448662673298a443478b8597 45179eaf564c79c0ef6eee25")
    shared = h("c7495060 7a12327f 3204d94b 6825bfb0 68b7f831 9a9e3708 ed3d43ce 8130c950")
    alg = DH_ALGS[DhGroup.CURVE25519]
    ini = alg.generate(FixedRandom(random_i))  # clamping is done by X25519 itself
    res = alg.generate(FixedRandom(random_r))
    assert ini.public == pub_i
    assert res.public == pub_r
    assert ini.shared(res.public) == shared
    assert res.shared(ini.public) == shared


# ---------------------------------------------------------------- RFC 4868 §2.7

# (prf id, key, data, expected PRF output) -- §2.7.1 PRF-1 and PRF-2, §2.7.2 AUTH*-1/-2.
RFC4868_PRF = [
    (PrfId.HMAC_SHA2_256, b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (PrfId.HMAC_SHA2_384, b"\x0b" * 20, b"Hi There",
     "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c"
     "faea9ea9076ede7f4af152e8b2fa9cb6"),
    (PrfId.HMAC_SHA2_512, b"\x0b" * 20, b"Hi There",
     "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde"
     "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"),
    (PrfId.HMAC_SHA2_256, b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (PrfId.HMAC_SHA2_512, b"Jefe", b"what do ya want for nothing?",
     "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
     "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"),
]

RFC4868_AUTH = [
    (IntegId.HMAC_SHA2_256_128, b"\x0b" * 32, b"Hi There", "198a607eb44bfbc69903a0f1cf2bbdc5"),
    (IntegId.HMAC_SHA2_256_128, b"Jefe" * 8, b"what do ya want for nothing?",
     "167f928588c5cc2eef8e3093caa0e87c"),
    (IntegId.HMAC_SHA2_384_192, b"\x0b" * 48, b"Hi There",
     "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973"),
    (IntegId.HMAC_SHA2_512_256, b"\x0b" * 64, b"Hi There",
     "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"),
]


@pytest.mark.parametrize(("prf_id", "key", "data", "expected"), RFC4868_PRF)
def test_rfc4868_prf(prf_id: PrfId, key: bytes, data: bytes, expected: str) -> None:
    prf = PRF_ALGS[prf_id]
    assert prf.prf(key, data) == h(expected)
    assert prf.keyed(key)(data) == h(expected)  # the cached-key path gives the same


@pytest.mark.parametrize(("integ_id", "key", "data", "expected"), RFC4868_AUTH)
def test_rfc4868_auth(integ_id: IntegId, key: bytes, data: bytes, expected: str) -> None:
    integ = INTEG_ALGS[integ_id]
    assert integ.mac(key, data) == h(expected)
    assert integ.verify(key, data, h(expected))
    assert integ.keyed(key).verify(data, h(expected))
    wrong = bytearray(h(expected))
    wrong[-1] ^= 1
    assert not integ.verify(key, data, bytes(wrong))


# ---------------------------------------------------------------- AES-GCM (McGrew & Viega)

# "The Galois/Counter Mode of Operation (GCM)" test cases 4 (AES-128) and 16
# (AES-256), the vectors RFC 4106 §9 points to; the 12-octet IV is split as
# RFC 4106/5282 do: salt = first 4 octets, IV = last 8.
GCM_P = h(
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
)
GCM_A = h("feedfacedeadbeeffeedfacedeadbeefabaddad2")
GCM_CASES = [
    (128, "feffe9928665731c6d6a8f9467308308",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"),
    (256, "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"),
]


@pytest.mark.parametrize(("bits", "key", "ct", "tag"), GCM_CASES)
@pytest.mark.parametrize(("eid", "icv"), [(EncrId.AES_GCM_16, 16), (EncrId.AES_GCM_12, 12),
                                          (EncrId.AES_GCM_8, 8)])
def test_gcm_spec_vectors(bits: int, key: str, ct: str, tag: str, eid: EncrId, icv: int) -> None:
    alg = encr_alg(eid, bits)
    assert alg is not None and alg.icv_size == icv
    cipher = alg.aead_cipher(h(key) + h("cafebabe"))
    iv = h("facedbaddecaf888")
    sealed = cipher.seal(iv, GCM_P, GCM_A)
    assert sealed == h(ct) + h(tag)[:icv]  # shorter ICVs are prefixes of the tag
    assert cipher.open(iv, sealed, GCM_A) == GCM_P


# ---------------------------------------------------------------- AES-CBC (RFC 3602 §4)

CBC_CASES = [  # cases 1-3
    ("06a9214036b8a15b512e03d534120006", "3dafba429d9eb430b422da802c9fac41",
     b"Single block msg", "e353779c1079aeb82708942dbe77181a"),
    ("c286696d887c9aa0611bbb3e2025a45a", "562e17996d093d28ddb3ba695a2e6f58",
     bytes(range(32)), "d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1"),
    ("6c3ea0477630ce21a2ce334aa746c2cd", "c782dc4c098c66cbd9cd27d825682c81",
     b"This is a 48-byte message (exactly 3 AES blocks)",
     "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5"
     "021c19216bad525c8579695d83ba2684"),
]


@pytest.mark.parametrize(("key", "iv", "plain", "ct"), CBC_CASES)
def test_rfc3602_aes_cbc(key: str, iv: str, plain: bytes, ct: str) -> None:
    alg = encr_alg(EncrId.AES_CBC, 128)
    assert alg is not None
    cipher = alg.cbc_cipher(h(key))
    assert cipher.encrypt(h(iv), plain) == h(ct)
    assert cipher.decrypt(h(iv), h(ct)) == plain
    # the persistent-context fast path decrypts the same, also after earlier use
    assert cipher.open(h(iv), h(ct)) == plain
    assert cipher.open(h(iv), h(ct)) == plain


def test_cbc_fast_path_is_standard_cbc() -> None:
    alg = encr_alg(EncrId.AES_CBC, 256)
    assert alg is not None
    cipher = alg.cbc_cipher(bytes(range(32)))
    data = bytes(range(64))
    outputs = [cipher.seal(bytes([n]) * 16, data) for n in range(3)]
    assert len({o[:16] for o in outputs}) == 3  # a fresh IV every time
    for out in outputs:  # each decrypts as ordinary CBC with its first block as IV
        assert cipher.decrypt(out[:16], out[16:]) == data
        assert cipher.open(out[:16], out[16:]) == data


# ---------------------------------------------------------------- prf+ (RFC 7296 §2.13)


def test_prf_plus_pyikev2_value() -> None:
    # Expected octets from alejandro-perez/pyikev2 test_crypto.py::test_prf
    # (HMAC-SHA1, key "supersecret", seed "This is a long message", 100 octets).
    expected = h(
        "db65621146bff259ad43bdbac4e9ddf210820dd585a668326ccf98c924d6c2c7"
        "12424a0b69fd2e77a2115cf089d506cdf481504801bf95b062e64a8c54ab934c"
        "e50786c0aa1a2fb84abf438554b51d646d7b1c437166780f5bb1d32709925cb9"
        "d7285353"
    )
    prf = PRF_ALGS[PrfId.HMAC_SHA1]
    assert prf.prf(b"supersecret", b"This is a long message") == h(
        "5d65edc7a7a7c1c311aa191c5debbceb2dadbcd6"
    )
    assert prf_plus(prf, b"supersecret", b"This is a long message", 100) == expected
