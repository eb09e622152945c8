"""X.509 for IKEv2 peers: loading, chain verification, identities.

Chain building is done here rather than with ``cryptography.x509.verification``
because that module applies the Web PKI profile (EKU serverAuth/clientAuth,
mandatory SAN), which rejects ordinary IPsec certificates.  Every signature
check still goes through ``cryptography`` (``verify_directly_issued_by``).
What is checked: issuer/subject chaining and signatures, validity at ``now``
for every certificate including the anchor, basicConstraints CA=true and
keyCertSign (when keyUsage is present) on every issuer, pathLenConstraint.
Not checked (knowingly): revocation (CRL/OCSP), name constraints, policies.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from quickike.wire.enums import IdType

from .errors import AuthError

PrivateKey = (
    rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)
PublicKey = (
    rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    | ed448.Ed448PublicKey
)

_MAX_CHAIN = 8


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """All certificates in a PEM bundle, or the one certificate of a DER blob."""
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise AuthError(f"cannot load certificate: {e}") from None


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate (PEM or DER), e.g. the body of a CERT payload (encoding 4)."""
    certs = load_certificates(data)
    if len(certs) != 1:
        raise AuthError(f"expected one certificate, found {len(certs)}")
    return certs[0]


def load_private_key(data: bytes, password: bytes | None = None) -> PrivateKey:
    """A PEM or DER (PKCS#8 / traditional) private key of a type IKEv2 can sign with."""
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError) as e:
        raise AuthError(f"cannot load private key: {e}") from None
    if not isinstance(key, PrivateKey):
        raise AuthError(f"unsupported private key type {type(key).__name__}")
    return key


def cert_der(cert: x509.Certificate) -> bytes:
    """The DER body of a CERT payload with encoding X509_SIGNATURE (4)."""
    return cert.public_bytes(serialization.Encoding.DER)


def certreq_hash(ca: x509.Certificate) -> bytes:
    """SHA-1 of the CA's SubjectPublicKeyInfo, as listed in CERTREQ payloads (§3.7)."""
    spki = ca.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    h = hashes.Hash(hashes.SHA1())
    h.update(spki)
    return h.finalize()


def public_key(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if not isinstance(key, PublicKey):
        raise AuthError(f"unsupported public key type {type(key).__name__}")
    return key


def _utc(t: _dt.datetime) -> _dt.datetime:
    return t.replace(tzinfo=_dt.UTC) if t.tzinfo is None else t.astimezone(_dt.UTC)


def _check_time(cert: x509.Certificate, now: _dt.datetime) -> None:
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise AuthError(
            f"certificate {cert.subject.rfc4514_string()!r} is not valid at {now.isoformat()}"
        )


def _check_issuer(issuer: x509.Certificate, below: int) -> None:
    """``below`` = number of non-self-issued CA certificates between issuer and end entity."""
    name = issuer.subject.rfc4514_string()
    try:
        bc = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise AuthError(f"issuer {name!r} has no basicConstraints") from None
    if not bc.ca:
        raise AuthError(f"issuer {name!r} is not a CA")
    if bc.path_length is not None and below > bc.path_length:
        raise AuthError(f"issuer {name!r} path length constraint exceeded")
    try:
        ku = issuer.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise AuthError(f"issuer {name!r} may not sign certificates")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_chain(
    end_entity: x509.Certificate,
    intermediates: Iterable[x509.Certificate],
    trust_anchors: Sequence[x509.Certificate],
    now: _dt.datetime,
) -> list[x509.Certificate]:
    """Build and check a path from ``end_entity`` to one of ``trust_anchors`` at ``now``.

    Returns the path (end entity first, anchor last); raises AuthError.
    """
    now = _utc(now)
    pool = list(intermediates)
    path = [end_entity]
    _check_time(end_entity, now)
    cert = end_entity
    for depth in range(_MAX_CHAIN):
        if cert in trust_anchors:  # pinned directly (e.g. a self-signed peer certificate)
            return path
        for anchor in trust_anchors:
            if _issued_by(cert, anchor):
                _check_time(anchor, now)
                _check_issuer(anchor, depth)
                path.append(anchor)
                return path
        for candidate in pool:
            if candidate not in path and _issued_by(cert, candidate):
                _check_time(candidate, now)
                _check_issuer(candidate, depth)
                path.append(candidate)
                cert = candidate
                break
        else:
            raise AuthError(
                f"no trusted issuer for {cert.subject.rfc4514_string()!r} "
                f"(issuer {cert.issuer.rfc4514_string()!r})"
            )
    raise AuthError("certificate chain too long")


def _ip_id(addr: IPv4Address | IPv6Address) -> tuple[IdType, bytes]:
    return (IdType.IPV4_ADDR if addr.version == 4 else IdType.IPV6_ADDR), addr.packed


def cert_identities(cert: x509.Certificate) -> list[tuple[IdType, bytes]]:
    """Identities the certificate vouches for, as (ID type, ID payload data).

    Subject DN as DER (DER_ASN1_DN), and subjectAltName dNSName (FQDN),
    rfc822Name (RFC822_ADDR) and iPAddress (IPV4_ADDR/IPV6_ADDR).
    """
    ids: list[tuple[IdType, bytes]] = [(IdType.DER_ASN1_DN, cert.subject.public_bytes())]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ids
    for name in san.get_values_for_type(x509.DNSName):
        ids.append((IdType.FQDN, name.encode("ascii", "replace")))
    for name in san.get_values_for_type(x509.RFC822Name):
        ids.append((IdType.RFC822_ADDR, name.encode("ascii", "replace")))
    for addr in san.get_values_for_type(x509.IPAddress):
        if isinstance(addr, IPv4Address | IPv6Address):
            ids.append(_ip_id(addr))
    return ids


def id_matches_cert(id_type: IdType, id_data: bytes, cert: x509.Certificate) -> bool:
    """Whether an IDi/IDr names this certificate (subject DN or a subjectAltName).

    DNs compare as DER octets, FQDNs and e-mail addresses case-insensitively.
    """
    for t, data in cert_identities(cert):
        if t != id_type:
            continue
        if t in (IdType.FQDN, IdType.RFC822_ADDR):
            if data.lower() == bytes(id_data).lower():
                return True
        elif data == bytes(id_data):
            return True
    return False


__all__ = [
    "PrivateKey",
    "PublicKey",
    "cert_der",
    "cert_identities",
    "certreq_hash",
    "id_matches_cert",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "public_key",
    "verify_chain",
]
