"""The IKEv2 transforms quickike implements, keyed by their IANA numbers.

Each algorithm is a frozen descriptor (sizes, keyword, IANA id) plus a way to
make a *keyed* object that does the work.  Keyed objects exist because the
expensive part of AES/HMAC is the key setup: an IKE SA protects many messages
with the same keys, so :class:`~quickike.crypto.sk.SkProtector` (and the
userspace ESP data plane) build them once per SA instead of once per packet.

All primitives come from ``cryptography``.  The only arithmetic done here is
range checking of peer values (RFC 6989) and picking random exponents.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives import serialization as _serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, x448, x25519

try:  # cryptography >= 46 warns that finite-field DH will go away one day
    from cryptography.utils import CryptographyDeprecationWarning as _FfdhDeprecation
except ImportError:  # pragma: no cover - older cryptography has no such warning
    _FfdhDeprecation = DeprecationWarning  # type: ignore[misc,assignment]
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from quickike.wire.enums import DhGroup, EncrId, IntegId, PrfId

from .errors import CryptoError, IntegrityError, InvalidPublicValue
from .rng import RandomSource

# ------------------------------------------------------------------ encryption


class AeadCipher(Protocol):
    """A keyed AEAD whose nonce is ``salt | iv`` (RFC 4106/5282/7634)."""

    def seal(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Ciphertext followed by the (possibly truncated) tag."""
        ...

    def open(self, iv: bytes, ciphertext_and_tag: bytes, aad: bytes) -> bytes:
        """Plaintext; raises IntegrityError when the tag does not verify."""
        ...


class _FullTagAead:
    """AES-GCM-16 and ChaCha20-Poly1305: the one-shot AEAD classes keep the key schedule."""

    __slots__ = ("_aead", "_salt")

    def __init__(self, aead: AESGCM | ChaCha20Poly1305, salt: bytes) -> None:
        self._aead = aead
        self._salt = salt

    def seal(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        return self._aead.encrypt(self._salt + iv, plaintext, aad)

    def open(self, iv: bytes, ciphertext_and_tag: bytes, aad: bytes) -> bytes:
        try:
            return self._aead.decrypt(self._salt + iv, ciphertext_and_tag, aad)
        except InvalidTag:
            raise IntegrityError("AEAD tag mismatch") from None


class _TruncatedGcm:
    """AES-GCM with an 8- or 12-octet ICV: GCM tags truncate by taking a prefix."""

    __slots__ = ("_aes", "_icv", "_salt")

    def __init__(self, key: bytes, salt: bytes, icv: int) -> None:
        self._aes = algorithms.AES(key)
        self._salt = salt
        self._icv = icv

    def seal(self, iv: bytes, plaintext: bytes, aad: bytes) -> bytes:
        enc = Cipher(self._aes, modes.GCM(self._salt + iv)).encryptor()
        enc.authenticate_additional_data(aad)
        ct = enc.update(plaintext) + enc.finalize()
        return ct + enc.tag[: self._icv]

    def open(self, iv: bytes, ciphertext_and_tag: bytes, aad: bytes) -> bytes:
        if len(ciphertext_and_tag) < self._icv:
            raise CryptoError("AEAD data shorter than its ICV")
        ct, tag = ciphertext_and_tag[: -self._icv], ciphertext_and_tag[-self._icv :]
        dec = Cipher(
            self._aes, modes.GCM(self._salt + iv, tag, min_tag_length=self._icv)
        ).decryptor()
        dec.authenticate_additional_data(aad)
        try:
            return dec.update(ct) + dec.finalize()
        except InvalidTag:
            raise IntegrityError("AEAD tag mismatch") from None


class CbcCipher:
    """A keyed AES-CBC.

    ``encrypt``/``decrypt`` with an explicit IV build a fresh mode object (a
    key schedule per call, ~15 us).  The SK hot path avoids that with two
    long-lived contexts, which are plain CBC seen from the outside:

    * ``seal(random_block, data)`` runs the persistent encryptor over
      ``random_block | data`` and returns the output: its first block,
      E(random_block XOR previous state), is the IV the receiver sees and is
      as unpredictable as ``random_block`` (RFC 7296 §3.14 asks for an
      unpredictable IV; this is the "encrypted random block" construction of
      TLS 1.1 §6.2.3.2 (2)(b));
    * ``open(iv, data)`` feeds ``iv`` to the persistent decryptor first and
      drops that block's output, which leaves ``iv`` as the chaining value.

    The contexts carry state between calls, so one CbcCipher must not be used
    from several threads (one SA lives in one engine thread anyway).
    """

    __slots__ = ("_aes", "_dec", "_enc")

    def __init__(self, key: bytes) -> None:
        self._aes = algorithms.AES(key)
        zero = bytes(16)
        self._enc = Cipher(self._aes, modes.CBC(zero)).encryptor()
        self._dec = Cipher(self._aes, modes.CBC(zero)).decryptor()

    def encrypt(self, iv: bytes, data: bytes) -> bytes:
        enc = Cipher(self._aes, modes.CBC(iv)).encryptor()
        return enc.update(data) + enc.finalize()

    def decrypt(self, iv: bytes, data: bytes) -> bytes:
        dec = Cipher(self._aes, modes.CBC(iv)).decryptor()
        return dec.update(data) + dec.finalize()

    def seal(self, random_block: bytes, data: bytes) -> bytes:
        """IV | ciphertext of block-aligned ``data``, IV derived from ``random_block``."""
        if len(random_block) != 16 or len(data) % 16:
            raise CryptoError("CBC input must be whole blocks")
        return self._enc.update(random_block + data)

    def open(self, iv: bytes, data: bytes) -> bytes:
        """Plaintext of block-aligned ``data`` encrypted with ``iv``."""
        if len(iv) != 16 or len(data) % 16:
            raise CryptoError("CBC input must be whole blocks")
        return self._dec.update(bytes(iv) + bytes(data))[16:]


@dataclass(frozen=True, slots=True)
class EncrAlg:
    """An ENCR transform with a fixed key length (one row of strongSwan's keyword table)."""

    id: EncrId
    key_bits: int
    keyword: str
    aead: bool
    block_size: int
    iv_size: int
    icv_size: int  # 0 for CBC: the ICV then comes from the INTEG transform
    salt_size: int
    #: Key Length attribute to send; None for ChaCha20-Poly1305 (RFC 7634 §2: fixed key).
    key_length_attr: int | None
    wireshark_name: str = field(default="", compare=False)

    @property
    def key_size(self) -> int:
        return self.key_bits // 8

    @property
    def keymat_size(self) -> int:
        """Octets taken from prf+ for one direction (RFC 5282 §7.1: key then salt)."""
        return self.key_size + self.salt_size

    def aead_cipher(self, keymat: bytes) -> AeadCipher:
        if not self.aead:
            raise CryptoError(f"{self.keyword} is not an AEAD")
        if len(keymat) != self.keymat_size:
            raise CryptoError(f"{self.keyword} needs {self.keymat_size} octets of key material")
        key, salt = keymat[: self.key_size], keymat[self.key_size :]
        if self.id == EncrId.CHACHA20_POLY1305:
            return _FullTagAead(ChaCha20Poly1305(key), salt)
        if self.icv_size == 16:
            return _FullTagAead(AESGCM(key), salt)
        return _TruncatedGcm(key, salt, self.icv_size)

    def cbc_cipher(self, key: bytes) -> CbcCipher:
        if self.aead:
            raise CryptoError(f"{self.keyword} is an AEAD")
        if len(key) != self.key_size:
            raise CryptoError(f"{self.keyword} needs a {self.key_size}-octet key")
        return CbcCipher(key)


def _make_encr() -> dict[tuple[int, int], EncrAlg]:
    table: dict[tuple[int, int], EncrAlg] = {}
    for bits in (128, 192, 256):
        table[(EncrId.AES_CBC, bits)] = EncrAlg(
            EncrId.AES_CBC, bits, f"aes{bits}", False, 16, 16, 0, 0, bits,
            f"AES-CBC-{bits} [RFC3602]",
        )
        for eid, icv in ((EncrId.AES_GCM_8, 8), (EncrId.AES_GCM_12, 12), (EncrId.AES_GCM_16, 16)):
            table[(eid, bits)] = EncrAlg(
                eid, bits, f"aes{bits}gcm{icv}", True, 1, 8, icv, 4, bits,
                f"AES-GCM-{bits} with {icv} octet ICV [RFC5282]",
            )
    table[(EncrId.CHACHA20_POLY1305, 256)] = EncrAlg(
        EncrId.CHACHA20_POLY1305, 256, "chacha20poly1305", True, 1, 8, 16, 4, None,
        "ChaCha20-Poly1305 [RFC7634]",  # unverified: the Wireshark versions read lack ChaCha20
    )
    return table


ENCR_ALGS: dict[tuple[int, int], EncrAlg] = _make_encr()


def encr_alg(id: int, key_bits: int | None) -> EncrAlg | None:
    """The algorithm for an ENCR transform id and Key Length attribute, or None.

    ChaCha20-Poly1305 has no Key Length attribute (RFC 7634); some peers send
    256 anyway (strongSwan's ``chacha20poly1305compat``), so both are accepted.
    AES without a Key Length attribute is malformed (RFC 3602/5282) -> None.
    """
    if id == EncrId.CHACHA20_POLY1305 and key_bits in (None, 256):
        return ENCR_ALGS[(EncrId.CHACHA20_POLY1305, 256)]
    if key_bits is None:
        return None
    return ENCR_ALGS.get((int(id), key_bits))


# ------------------------------------------------------------------ PRF and integrity


class KeyedPrf:
    """prf(K, .) with K fixed: copies a keyed HMAC instead of re-keying."""

    __slots__ = ("_base",)

    def __init__(self, key: bytes, algorithm: hashes.HashAlgorithm) -> None:
        self._base = hmac.HMAC(key, algorithm)

    def __call__(self, data: bytes) -> bytes:
        h = self._base.copy()
        h.update(data)
        return h.finalize()


@dataclass(frozen=True, slots=True)
class PrfAlg:
    id: PrfId
    keyword: str
    output_size: int
    hash: hashes.HashAlgorithm = field(compare=False, repr=False)

    @property
    def key_size(self) -> int:
        """The preferred key length (RFC 7296 §2.13: the output size for HMAC PRFs)."""
        return self.output_size

    def prf(self, key: bytes, data: bytes) -> bytes:
        h = hmac.HMAC(key, self.hash)
        h.update(data)
        return h.finalize()

    def keyed(self, key: bytes) -> KeyedPrf:
        return KeyedPrf(key, self.hash)


PRF_ALGS: dict[int, PrfAlg] = {
    PrfId.HMAC_SHA1: PrfAlg(PrfId.HMAC_SHA1, "prfsha1", 20, hashes.SHA1()),
    PrfId.HMAC_SHA2_256: PrfAlg(PrfId.HMAC_SHA2_256, "prfsha256", 32, hashes.SHA256()),
    PrfId.HMAC_SHA2_384: PrfAlg(PrfId.HMAC_SHA2_384, "prfsha384", 48, hashes.SHA384()),
    PrfId.HMAC_SHA2_512: PrfAlg(PrfId.HMAC_SHA2_512, "prfsha512", 64, hashes.SHA512()),
}


def prf_alg(id: int) -> PrfAlg | None:
    return PRF_ALGS.get(int(id))


class KeyedMac:
    """A keyed, truncated HMAC for the ICV of one direction of an SA."""

    __slots__ = ("_base", "icv_size")

    def __init__(self, key: bytes, algorithm: hashes.HashAlgorithm, icv_size: int) -> None:
        self._base = hmac.HMAC(key, algorithm)
        self.icv_size = icv_size

    def mac(self, data: bytes) -> bytes:
        h = self._base.copy()
        h.update(data)
        return h.finalize()[: self.icv_size]

    def verify(self, data: bytes, icv: bytes) -> bool:
        return constant_time.bytes_eq(self.mac(data), bytes(icv))


@dataclass(frozen=True, slots=True)
class IntegAlg:
    id: IntegId
    keyword: str
    key_size: int
    icv_size: int
    hash: hashes.HashAlgorithm = field(compare=False, repr=False)
    wireshark_name: str = field(default="", compare=False)

    def mac(self, key: bytes, data: bytes) -> bytes:
        h = hmac.HMAC(key, self.hash)
        h.update(data)
        return h.finalize()[: self.icv_size]

    def verify(self, key: bytes, data: bytes, icv: bytes) -> bool:
        """Constant-time comparison of the truncated MAC."""
        return constant_time.bytes_eq(self.mac(key, data), bytes(icv))

    def keyed(self, key: bytes) -> KeyedMac:
        if len(key) != self.key_size:
            raise CryptoError(f"{self.keyword} needs a {self.key_size}-octet key")
        return KeyedMac(key, self.hash, self.icv_size)


INTEG_ALGS: dict[int, IntegAlg] = {
    IntegId.HMAC_SHA1_96: IntegAlg(
        IntegId.HMAC_SHA1_96, "sha1", 20, 12, hashes.SHA1(), "HMAC_SHA1_96 [RFC2404]"
    ),
    IntegId.HMAC_SHA2_256_128: IntegAlg(
        IntegId.HMAC_SHA2_256_128, "sha256", 32, 16, hashes.SHA256(),
        "HMAC_SHA2_256_128 [RFC4868]",
    ),
    IntegId.HMAC_SHA2_384_192: IntegAlg(
        IntegId.HMAC_SHA2_384_192, "sha384", 48, 24, hashes.SHA384(),
        "HMAC_SHA2_384_192 [RFC4868]",
    ),
    IntegId.HMAC_SHA2_512_256: IntegAlg(
        IntegId.HMAC_SHA2_512_256, "sha512", 64, 32, hashes.SHA512(),
        "HMAC_SHA2_512_256 [RFC4868]",
    ),
}


def integ_alg(id: int) -> IntegAlg | None:
    return INTEG_ALGS.get(int(id))


# ------------------------------------------------------------------ Diffie-Hellman


class DhKeyPair:
    """Our half of one key exchange: ``public`` goes into the KE payload."""

    __slots__ = ("group", "public")

    group: DhGroup
    public: bytes

    def shared(self, peer_public: bytes) -> bytes:
        """g^ir as RFC 7296 §2.14 feeds it to the PRF; raises InvalidPublicValue."""
        raise NotImplementedError


class _ModpKeyPair(DhKeyPair):
    __slots__ = ("_p", "_params", "_priv", "_size")

    def __init__(self, group: DhGroup, p: int, params: dh.DHParameterNumbers, x: int) -> None:
        self.group = group
        self._p = p
        self._params = params
        self._size = (p.bit_length() + 7) // 8
        # cryptography builds a DH key only from (x, y); y = g^x mod p is obtained
        # from OpenSSL itself by an exchange with the generator as "peer value".
        probe = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(params.g, params)).private_key()
        generator = dh.DHPublicNumbers(params.g, params).public_key()
        public = probe.exchange(generator)
        y = int.from_bytes(public, "big")
        self._priv = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(y, params)).private_key()
        self.public = public.rjust(self._size, b"\x00")

    def shared(self, peer_public: bytes) -> bytes:
        if len(peer_public) != self._size:
            raise InvalidPublicValue(
                f"MODP group {int(self.group)} KE data must be {self._size} octets, "
                f"got {len(peer_public)}"
            )
        y = int.from_bytes(peer_public, "big")
        if not 1 < y < self._p - 1:  # RFC 6989 §2.1
            raise InvalidPublicValue(f"MODP group {int(self.group)} public value out of range")
        try:
            peer = dh.DHPublicNumbers(y, self._params).public_key()
            secret = self._priv.exchange(peer)
        except ValueError as e:
            raise InvalidPublicValue(f"MODP exchange failed: {e}") from None
        return secret.rjust(self._size, b"\x00")


class _EcpKeyPair(DhKeyPair):
    __slots__ = ("_coord", "_curve", "_priv")

    def __init__(self, group: DhGroup, curve: ec.EllipticCurve, coord: int, d: int) -> None:
        self.group = group
        self._curve = curve
        self._coord = coord
        self._priv = ec.derive_private_key(d, curve)
        point = self._priv.public_key().public_bytes(
            _serialization.Encoding.X962, _serialization.PublicFormat.UncompressedPoint
        )
        self.public = point[1:]  # RFC 5903 §7: x | y without the 0x04 prefix

    def shared(self, peer_public: bytes) -> bytes:
        if len(peer_public) != 2 * self._coord:
            raise InvalidPublicValue(
                f"ECP group {int(self.group)} KE data must be {2 * self._coord} octets, "
                f"got {len(peer_public)}"
            )
        try:  # RFC 6989 §2.3: the point must be on the curve (checked by OpenSSL)
            peer = ec.EllipticCurvePublicKey.from_encoded_point(
                self._curve, b"\x04" + bytes(peer_public)
            )
            return self._priv.exchange(ec.ECDH(), peer)  # RFC 5903 §7: x coordinate only
        except ValueError as e:
            raise InvalidPublicValue(f"ECP group {int(self.group)} public value: {e}") from None


class _XKeyPair(DhKeyPair):
    """X25519 / X448 (RFC 8031): fixed-length values, reject the all-zero secret."""

    __slots__ = ("_priv", "_pub_cls", "_size")

    def __init__(
        self,
        group: DhGroup,
        priv: x25519.X25519PrivateKey | x448.X448PrivateKey,
        pub_cls: type[x25519.X25519PublicKey] | type[x448.X448PublicKey],
        size: int,
    ) -> None:
        self.group = group
        self._priv = priv
        self._pub_cls = pub_cls
        self._size = size
        self.public = priv.public_key().public_bytes_raw()

    def shared(self, peer_public: bytes) -> bytes:
        if len(peer_public) != self._size:
            raise InvalidPublicValue(
                f"group {int(self.group)} KE data must be {self._size} octets, "
                f"got {len(peer_public)}"
            )
        try:
            peer = self._pub_cls.from_public_bytes(bytes(peer_public))
            # OpenSSL refuses an all-zero result (RFC 8031 §2.3 / RFC 7748 §6.1).
            secret = self._priv.exchange(peer)  # type: ignore[arg-type]
        except ValueError as e:
            raise InvalidPublicValue(f"group {int(self.group)} exchange failed: {e}") from None
        if not any(secret):
            raise InvalidPublicValue(f"group {int(self.group)} shared secret is all zero")
        return secret


@dataclass(frozen=True, slots=True)
class DhAlg:
    id: DhGroup
    keyword: str
    public_size: int
    shared_size: int
    _generate: Callable[[RandomSource], DhKeyPair] = field(compare=False, repr=False)

    def generate(self, rng: RandomSource) -> DhKeyPair:
        """A fresh key pair whose private value comes from ``rng`` (reproducible when seeded)."""
        return self._generate(rng)


def _hex(*lines: str) -> int:
    return int("".join(lines), 16)


# RFC 3526 §3-5 (verified to be safe primes by tests/crypto/test_dh.py).
_MODP_2048 = _hex(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
)
_MODP_3072 = _hex(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
)
_MODP_4096 = _hex(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
    "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
    "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
    "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A92108011A723C12A787E6D7",
    "88719A10BDBA5B2699C327186AF4E23C1A946834B6150BDA2583E9CA2AD44CE8",
    "DBBBC2DB04DE8EF92E8EFC141FBECAA6287C59474E6BC05D99B2964FA090C3A2",
    "233BA186515BE7ED1F612970CEE2D7AFB81BDD762170481CD0069127D5B05AA9",
    "93B4EA988D8FDDC186FFB7DC90A6C08F4DF435C934063199FFFFFFFFFFFFFFFF",
)

#: modulus and private exponent length in bits. RFC 3526 §8 asks for an exponent
#: of twice the group's strength; we use its upper estimate ("Strength Estimate 2").
MODP_PRIMES: dict[DhGroup, tuple[int, int]] = {
    DhGroup.MODP_2048: (_MODP_2048, 320),
    DhGroup.MODP_3072: (_MODP_3072, 420),
    DhGroup.MODP_4096: (_MODP_4096, 480),
}


#: MODP groups 14-16 stay: RFC 8247 makes group 14 a MUST and strongSwan peers offer
#: modp2048. The deprecation is about the primitive's future, not about this use, so it is
#: silenced for exactly that message instead of alarming every operator at start-up.
warnings.filterwarnings("ignore", message="Diffie-Hellman over finite fields", category=_FfdhDeprecation)


def _modp_generator(group: DhGroup) -> Callable[[RandomSource], DhKeyPair]:
    p, exp_bits = MODP_PRIMES[group]
    params = dh.DHParameterNumbers(p, 2)

    def generate(rng: RandomSource) -> DhKeyPair:
        x = rng.randbelow((1 << exp_bits) - 2) + 2
        return _ModpKeyPair(group, p, params, x)

    return generate


def _ecp_generator(group: DhGroup, curve: ec.EllipticCurve, order: int, coord: int) -> Callable[
    [RandomSource], DhKeyPair
]:
    def generate(rng: RandomSource) -> DhKeyPair:
        d = rng.randbelow(order - 1) + 1
        return _EcpKeyPair(group, curve, coord, d)

    return generate


def _x25519(rng: RandomSource) -> DhKeyPair:
    priv = x25519.X25519PrivateKey.from_private_bytes(rng.bytes(32))
    return _XKeyPair(DhGroup.CURVE25519, priv, x25519.X25519PublicKey, 32)


def _x448(rng: RandomSource) -> DhKeyPair:
    priv = x448.X448PrivateKey.from_private_bytes(rng.bytes(56))
    return _XKeyPair(DhGroup.CURVE448, priv, x448.X448PublicKey, 56)


# Group orders of the ECP groups (RFC 5903 §3.1-3.3), needed to draw d in [1, n-1].
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_P384_N = int(
    "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF"
    "581A0DB248B0A77AECEC196ACCC52973",
    16,
)
_P521_N = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F7"
    "09A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)

DH_ALGS: dict[int, DhAlg] = {
    DhGroup.MODP_2048: DhAlg(DhGroup.MODP_2048, "modp2048", 256, 256, _modp_generator(DhGroup.MODP_2048)),
    DhGroup.MODP_3072: DhAlg(DhGroup.MODP_3072, "modp3072", 384, 384, _modp_generator(DhGroup.MODP_3072)),
    DhGroup.MODP_4096: DhAlg(DhGroup.MODP_4096, "modp4096", 512, 512, _modp_generator(DhGroup.MODP_4096)),
    DhGroup.ECP_256: DhAlg(
        DhGroup.ECP_256, "ecp256", 64, 32,
        _ecp_generator(DhGroup.ECP_256, ec.SECP256R1(), _P256_N, 32),
    ),
    DhGroup.ECP_384: DhAlg(
        DhGroup.ECP_384, "ecp384", 96, 48,
        _ecp_generator(DhGroup.ECP_384, ec.SECP384R1(), _P384_N, 48),
    ),
    DhGroup.ECP_521: DhAlg(
        DhGroup.ECP_521, "ecp521", 132, 66,
        _ecp_generator(DhGroup.ECP_521, ec.SECP521R1(), _P521_N, 66),
    ),
    DhGroup.CURVE25519: DhAlg(DhGroup.CURVE25519, "x25519", 32, 32, _x25519),
    DhGroup.CURVE448: DhAlg(DhGroup.CURVE448, "x448", 56, 56, _x448),
}


def dh_alg(id: int) -> DhAlg | None:
    return DH_ALGS.get(int(id))


__all__ = [
    "DH_ALGS",
    "ENCR_ALGS",
    "INTEG_ALGS",
    "MODP_PRIMES",
    "PRF_ALGS",
    "AeadCipher",
    "CbcCipher",
    "DhAlg",
    "DhKeyPair",
    "EncrAlg",
    "IntegAlg",
    "KeyedMac",
    "KeyedPrf",
    "PrfAlg",
    "dh_alg",
    "encr_alg",
    "integ_alg",
    "prf_alg",
]
