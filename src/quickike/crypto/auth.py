"""The AUTH payload: signed octets, PSK, and signatures (RFC 7296 §2.15, RFC 7427).

Methods produced and accepted:

* 2  shared key: ``prf(prf(PSK, "Key Pad for IKEv2"), <signed octets>)``;
* 1  RSA, PKCS#1 v1.5 with SHA-1 (what RFC 7296 method 1 means in practice);
* 9/10/11  ECDSA P-256/SHA-256, P-384/SHA-384, P-521/SHA-512, raw ``r | s``
  (RFC 4754), each coordinate zero-padded to the curve size;
* 14 digital signature (RFC 7427): ``ASN1Len | AlgorithmIdentifier | sig``
  with RSA PKCS#1 v1.5 or RSASSA-PSS over SHA-2, ECDSA (DER signature) over
  SHA-2, and Ed25519/Ed448 with the identity "hash" (RFC 8420).

Method 14 is used whenever the peer announced SIGNATURE_HASH_ALGORITHMS
with a hash we can use; otherwise the key type's legacy method.
AlgorithmIdentifiers are built and parsed by a minimal DER reader below
(parsing only; every signature operation is ``cryptography``'s).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import constant_time, hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from quickike.wire.enums import AuthMethod, HashAlgorithm

from .algorithms import PrfAlg
from .certs import PrivateKey, PublicKey
from .errors import AuthError

KEY_PAD = b"Key Pad for IKEv2"  # 17 octets, no NUL (§2.15)


def signed_octets(
    real_message: bytes, peer_nonce: bytes, prf: PrfAlg, sk_p: bytes, id_body: bytes
) -> bytes:
    """``RealMessage | NoncePeerData | prf(SK_px, ID')`` (§2.15).

    ``real_message`` is our whole IKE_SA_INIT message as last sent (without
    the non-ESP marker); ``id_body`` is our ID payload body
    ``IDType | RESERVED(3) | data``; ``sk_p`` is SK_pi for the initiator,
    SK_pr for the responder.
    """
    return real_message + peer_nonce + prf.prf(sk_p, id_body)


def psk_auth(prf: PrfAlg, psk: bytes, octets: bytes) -> bytes:
    """AUTH data of method 2 (shared key message integrity code)."""
    return prf.prf(prf.prf(psk, KEY_PAD), octets)


def verify_psk_auth(prf: PrfAlg, psk: bytes, octets: bytes, auth_data: bytes) -> None:
    """Raises AuthError unless ``auth_data`` is the PSK AUTH value (constant time)."""
    if not constant_time.bytes_eq(psk_auth(prf, psk, octets), bytes(auth_data)):
        raise AuthError("PSK AUTH value does not verify")


def supported_hashes() -> list[HashAlgorithm]:
    """Our SIGNATURE_HASH_ALGORITHMS list (RFC 7427 §4; SHA-1 deliberately absent, RFC 8247)."""
    return [
        HashAlgorithm.SHA2_256,
        HashAlgorithm.SHA2_384,
        HashAlgorithm.SHA2_512,
        HashAlgorithm.IDENTITY,
    ]


# ------------------------------------------------------------------ DER helpers


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _read(buf: bytes, off: int) -> tuple[int, bytes, int]:
    """One DER TLV at ``off``: (tag, content, next offset)."""
    if off + 2 > len(buf):
        raise AuthError("truncated DER")
    tag, first = buf[off], buf[off + 1]
    off += 2
    if first & 0x80:
        k = first & 0x7F
        if k == 0 or k > 3 or off + k > len(buf):
            raise AuthError("bad DER length")
        n = int.from_bytes(buf[off : off + k], "big")
        off += k
    else:
        n = first
    if off + n > len(buf):
        raise AuthError("DER value exceeds its container")
    return tag, buf[off : off + n], off + n


_SEQ, _OID, _NULL, _INT = 0x30, 0x06, 0x05, 0x02
_PKCS1 = bytes.fromhex("2a864886f70d0101")
_OID_RSA_SHA = {
    HashAlgorithm.SHA1: _PKCS1 + b"\x05",
    HashAlgorithm.SHA2_256: _PKCS1 + b"\x0b",
    HashAlgorithm.SHA2_384: _PKCS1 + b"\x0c",
    HashAlgorithm.SHA2_512: _PKCS1 + b"\x0d",
}
_OID_PSS = _PKCS1 + b"\x0a"
_OID_MGF1 = _PKCS1 + b"\x08"
_OID_ECDSA = {
    HashAlgorithm.SHA1: bytes.fromhex("2a8648ce3d0401"),
    HashAlgorithm.SHA2_256: bytes.fromhex("2a8648ce3d040302"),
    HashAlgorithm.SHA2_384: bytes.fromhex("2a8648ce3d040303"),
    HashAlgorithm.SHA2_512: bytes.fromhex("2a8648ce3d040304"),
}
_OID_HASH = {
    HashAlgorithm.SHA1: bytes.fromhex("2b0e03021a"),
    HashAlgorithm.SHA2_256: bytes.fromhex("608648016503040201"),
    HashAlgorithm.SHA2_384: bytes.fromhex("608648016503040202"),
    HashAlgorithm.SHA2_512: bytes.fromhex("608648016503040203"),
}
_OID_ED25519 = bytes.fromhex("2b6570")
_OID_ED448 = bytes.fromhex("2b6571")

_HASHES: dict[HashAlgorithm, type[hashes.HashAlgorithm]] = {
    HashAlgorithm.SHA1: hashes.SHA1,
    HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384,
    HashAlgorithm.SHA2_512: hashes.SHA512,
}


def _hash_algid(h: HashAlgorithm) -> bytes:
    return _tlv(_SEQ, _tlv(_OID, _OID_HASH[h]) + _tlv(_NULL, b""))


def _pss_algid(h: HashAlgorithm) -> bytes:
    salt = _HASHES[h]().digest_size
    params = (
        _tlv(0xA0, _hash_algid(h))
        + _tlv(0xA1, _tlv(_SEQ, _tlv(_OID, _OID_MGF1) + _hash_algid(h)))
        + _tlv(0xA2, _tlv(_INT, bytes((salt,))))
    )  # trailerField 1 is the DEFAULT and therefore omitted (DER)
    return _tlv(_SEQ, _tlv(_OID, _OID_PSS) + _tlv(_SEQ, params))


@dataclass(frozen=True, slots=True)
class _SigAlg:
    """A parsed RFC 7427 AlgorithmIdentifier."""

    kind: str  # "rsa", "pss", "ecdsa", "ed25519", "ed448"
    hash_id: HashAlgorithm
    mgf_hash: HashAlgorithm | None = None
    salt_len: int = 0


def _hash_of(algid: bytes) -> HashAlgorithm:
    tag, content, _ = _read(algid, 0)
    if tag != _SEQ:
        raise AuthError("hash AlgorithmIdentifier is not a SEQUENCE")
    tag, oid, _ = _read(content, 0)
    for h, o in _OID_HASH.items():
        if tag == _OID and oid == o:
            return h
    raise AuthError("unsupported hash in RSASSA-PSS parameters")


def _parse_pss(params: bytes) -> _SigAlg:
    hash_id, mgf_hash, salt = HashAlgorithm.SHA1, HashAlgorithm.SHA1, 20  # RFC 4055 defaults
    off = 0
    while off < len(params):
        tag, content, off = _read(params, off)
        if tag == 0xA0:
            hash_id = _hash_of(content)
        elif tag == 0xA1:
            _, mgf, _ = _read(content, 0)
            t, oid, rest = _read(mgf, 0)
            if t != _OID or oid != _OID_MGF1:
                raise AuthError("RSASSA-PSS mask generation is not MGF1")
            mgf_hash = _hash_of(mgf[rest:])
        elif tag == 0xA2:
            t, value, _ = _read(content, 0)
            if t != _INT or not 0 < len(value) <= 2:
                raise AuthError("bad RSASSA-PSS salt length")
            salt = int.from_bytes(value, "big")
        elif tag == 0xA3:
            t, value, _ = _read(content, 0)
            if t != _INT or int.from_bytes(value, "big") != 1:
                raise AuthError("RSASSA-PSS trailer field must be 1")
        else:
            raise AuthError("unknown RSASSA-PSS parameter")
    return _SigAlg("pss", hash_id, mgf_hash, salt)


def _parse_algid(algid: bytes) -> _SigAlg:
    tag, content, end = _read(algid, 0)
    if tag != _SEQ or end != len(algid):
        raise AuthError("AlgorithmIdentifier is not one DER SEQUENCE")
    tag, oid, off = _read(content, 0)
    if tag != _OID:
        raise AuthError("AlgorithmIdentifier does not start with an OID")
    params = content[off:]
    if oid == _OID_PSS:
        if not params:
            return _SigAlg("pss", HashAlgorithm.SHA1, HashAlgorithm.SHA1, 20)
        ptag, pcontent, pend = _read(params, 0)
        if ptag != _SEQ or pend != len(params):
            raise AuthError("RSASSA-PSS parameters are not a SEQUENCE")
        return _parse_pss(pcontent)
    for h, o in _OID_RSA_SHA.items():
        if oid == o and params in (b"", b"\x05\x00"):
            return _SigAlg("rsa", h)
    if params:
        raise AuthError("unexpected AlgorithmIdentifier parameters")
    for h, o in _OID_ECDSA.items():
        if oid == o:
            return _SigAlg("ecdsa", h)
    if oid == _OID_ED25519:
        return _SigAlg("ed25519", HashAlgorithm.IDENTITY)
    if oid == _OID_ED448:
        return _SigAlg("ed448", HashAlgorithm.IDENTITY)
    raise AuthError(f"unsupported signature algorithm OID {oid.hex()}")


# ------------------------------------------------------------------ signatures

_LEGACY_ECDSA: dict[str, tuple[AuthMethod, HashAlgorithm, int]] = {
    "secp256r1": (AuthMethod.ECDSA_SHA256_P256, HashAlgorithm.SHA2_256, 32),
    "secp384r1": (AuthMethod.ECDSA_SHA384_P384, HashAlgorithm.SHA2_384, 48),
    "secp521r1": (AuthMethod.ECDSA_SHA512_P521, HashAlgorithm.SHA2_512, 66),
}
_SHA2 = (HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512)


def _legacy_method(key: PrivateKey | PublicKey) -> AuthMethod | None:
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return AuthMethod.RSA_SIG
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        entry = _LEGACY_ECDSA.get(key.curve.name)
        return entry[0] if entry else None
    return None


def _hash_preference(key: PrivateKey) -> list[HashAlgorithm]:
    if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        return [HashAlgorithm.IDENTITY]
    if isinstance(key, ec.EllipticCurvePrivateKey):
        entry = _LEGACY_ECDSA.get(key.curve.name)
        first = entry[1] if entry else HashAlgorithm.SHA2_256
        return [first] + [h for h in _SHA2 if h != first]
    return list(_SHA2)


def _sign_digital(
    key: PrivateKey, octets: bytes, h: HashAlgorithm, rsa_pss: bool
) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        algid, sig = _tlv(_SEQ, _tlv(_OID, _OID_ED25519)), key.sign(octets)
    elif isinstance(key, ed448.Ed448PrivateKey):
        algid, sig = _tlv(_SEQ, _tlv(_OID, _OID_ED448)), key.sign(octets)
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        algid = _tlv(_SEQ, _tlv(_OID, _OID_ECDSA[h]))
        sig = key.sign(octets, ec.ECDSA(_HASHES[h]()))  # DER, as RFC 7427 wants
    elif rsa_pss:
        hash_alg = _HASHES[h]()
        algid = _pss_algid(h)
        sig = key.sign(
            octets, padding.PSS(padding.MGF1(hash_alg), hash_alg.digest_size), hash_alg
        )
    else:
        algid = _tlv(_SEQ, _tlv(_OID, _OID_RSA_SHA[h]) + _tlv(_NULL, b""))
        sig = key.sign(octets, padding.PKCS1v15(), _HASHES[h]())
    return bytes((len(algid),)) + algid + sig


def sign(
    private_key: PrivateKey,
    octets: bytes,
    method: AuthMethod = AuthMethod.DIGITAL_SIGNATURE,
    peer_hashes: Collection[HashAlgorithm | int] = (),
    *,
    rsa_pss: bool = False,
) -> tuple[AuthMethod, bytes]:
    """Sign the AUTH octets; returns the method actually used and the AUTH data.

    ``method`` is DIGITAL_SIGNATURE ("auto") or the key's legacy method.
    ``peer_hashes`` is the peer's SIGNATURE_HASH_ALGORITHMS list: when it
    names a hash we can use, method 14 is chosen (RFC 7427 §4 requires a hash
    from that list); otherwise the legacy method (1, 9, 10 or 11).  Ed25519 and
    Ed448 keys exist only in method 14 with the identity hash.
    ``rsa_pss`` selects RSASSA-PSS instead of PKCS#1 v1.5 for RSA in method 14.
    """
    legacy = _legacy_method(private_key)
    if method not in (AuthMethod.DIGITAL_SIGNATURE, legacy):
        raise AuthError(f"auth method {method} does not fit a {type(private_key).__name__}")
    offered = {int(h) for h in peer_hashes}
    for h in _hash_preference(private_key):
        if int(h) in offered:
            try:
                return AuthMethod.DIGITAL_SIGNATURE, _sign_digital(
                    private_key, octets, h, rsa_pss
                )
            except (ValueError, TypeError) as e:
                raise AuthError(f"signing failed: {e}") from None
    if legacy is None:
        raise AuthError(
            f"{type(private_key).__name__} signs only with RFC 7427 and a hash the peer "
            "announced in SIGNATURE_HASH_ALGORITHMS"
        )
    try:
        if isinstance(private_key, rsa.RSAPrivateKey):
            return legacy, private_key.sign(octets, padding.PKCS1v15(), hashes.SHA1())
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        _, h, size = _LEGACY_ECDSA[private_key.curve.name]
        r, s = decode_dss_signature(private_key.sign(octets, ec.ECDSA(_HASHES[h]())))
        return legacy, r.to_bytes(size, "big") + s.to_bytes(size, "big")
    except (ValueError, TypeError) as e:
        raise AuthError(f"signing failed: {e}") from None


def _verify_digital(
    key: PublicKey, auth_data: bytes, octets: bytes, our_hashes: Collection[HashAlgorithm | int]
) -> None:
    if len(auth_data) < 1:
        raise AuthError("empty AUTH data")
    n = auth_data[0]
    if len(auth_data) < 1 + n:
        raise AuthError("AlgorithmIdentifier longer than the AUTH data")
    alg = _parse_algid(auth_data[1 : 1 + n])
    sig = auth_data[1 + n :]
    allowed = {int(h) for h in our_hashes} if our_hashes else {int(h) for h in supported_hashes()}
    if int(alg.hash_id) not in allowed:
        raise AuthError(f"peer signed with hash {alg.hash_id}, which we did not announce")
    if alg.kind == "ed25519":
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise AuthError("Ed25519 signature but the key is not Ed25519")
        key.verify(sig, octets)
    elif alg.kind == "ed448":
        if not isinstance(key, ed448.Ed448PublicKey):
            raise AuthError("Ed448 signature but the key is not Ed448")
        key.verify(sig, octets)
    elif alg.kind == "ecdsa":
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise AuthError("ECDSA signature but the key is not an EC key")
        key.verify(sig, octets, ec.ECDSA(_HASHES[alg.hash_id]()))
    else:
        if not isinstance(key, rsa.RSAPublicKey):
            raise AuthError("RSA signature but the key is not RSA")
        if alg.kind == "pss":
            assert alg.mgf_hash is not None
            pad: padding.AsymmetricPadding = padding.PSS(
                padding.MGF1(_HASHES[alg.mgf_hash]()), alg.salt_len
            )
        else:
            pad = padding.PKCS1v15()
        key.verify(sig, octets, pad, _HASHES[alg.hash_id]())


def verify(
    public_key: PublicKey,
    method: AuthMethod | int,
    auth_data: bytes,
    octets: bytes,
    our_hashes: Collection[HashAlgorithm | int] = (),
) -> None:
    """Verify a signature AUTH payload; raises AuthError, nothing else.

    ``our_hashes`` is the SIGNATURE_HASH_ALGORITHMS list we sent: a method 14
    signature must use one of them (empty: any of :func:`supported_hashes`).
    """
    auth_data = bytes(auth_data)
    try:
        if method == AuthMethod.DIGITAL_SIGNATURE:
            _verify_digital(public_key, auth_data, octets, our_hashes)
        elif method == AuthMethod.RSA_SIG:
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise AuthError("method 1 needs an RSA key")
            public_key.verify(auth_data, octets, padding.PKCS1v15(), hashes.SHA1())
        elif method in (
            AuthMethod.ECDSA_SHA256_P256,
            AuthMethod.ECDSA_SHA384_P384,
            AuthMethod.ECDSA_SHA512_P521,
        ):
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise AuthError(f"method {int(method)} needs an EC key")
            entry = _LEGACY_ECDSA.get(public_key.curve.name)
            if entry is None or entry[0] != method:
                raise AuthError(f"method {int(method)} does not match curve {public_key.curve.name}")
            _, h, size = entry
            if len(auth_data) != 2 * size:
                raise AuthError(f"ECDSA signature must be {2 * size} octets")
            r = int.from_bytes(auth_data[:size], "big")
            s = int.from_bytes(auth_data[size:], "big")
            public_key.verify(encode_dss_signature(r, s), octets, ec.ECDSA(_HASHES[h]()))
        else:
            raise AuthError(f"auth method {method} is not a signature method we support")
    except AuthError:
        raise
    except InvalidSignature:
        raise AuthError("signature does not verify") from None
    except Exception as e:  # malformed signatures make cryptography raise ValueError & co.
        raise AuthError(f"signature does not verify: {e!r}") from None


__all__ = [
    "KEY_PAD",
    "psk_auth",
    "sign",
    "signed_octets",
    "supported_hashes",
    "verify",
    "verify_psk_auth",
]
