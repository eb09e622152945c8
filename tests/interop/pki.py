"""Throw-away X.509 hierarchies for the interop tests, built with cryptography's x509 builder.

Each gateway gets an end-entity certificate whose subjectAltName carries its FQDN identity
(charon and quickike both accept an FQDN IDi/IDr only if the certificate names it), issued by a
chain of ``intermediates`` CAs under one root. RSA 4096 keys are slow to make (a second or so
each on this machine), so callers cache a `Pki` per test session.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def make_key(kind: str) -> PrivateKey:
    """``ecdsa`` (P-256), ``ecdsa384`` (P-384) or ``rsa<bits>``."""
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:] or 2048))
    raise ValueError(f"unknown key kind {kind!r}")


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "quickike interop lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])  # fmt: skip


@dataclass(frozen=True, slots=True)
class Issued:
    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _issue(
    subject: str,
    key: PrivateKey,
    issuer: Issued | None,
    *,
    ca: bool,
    san: str | None = None,
) -> Issued:
    now = dt.datetime.now(dt.UTC)
    signer = issuer.key if issuer is not None else key
    issuer_name = issuer.cert.subject if issuer is not None else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    usage = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )  # fmt: skip
    if ca:
        usage.update(key_cert_sign=True, crl_sign=True, digital_signature=True)
    else:
        usage.update(digital_signature=True)
    builder = builder.add_extension(x509.KeyUsage(**usage), critical=True)
    if san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False
        )
    return Issued(builder.sign(signer, hashes.SHA256()), key)


@dataclass(frozen=True, slots=True)
class Pki:
    """A root, ``len(intermediates)`` CAs below it and one end entity per gateway."""

    root: Issued
    intermediates: tuple[Issued, ...]
    gateways: dict[str, Issued]

    @classmethod
    def build(cls, kind: str, gateways: tuple[str, ...], *, intermediates: int = 0) -> Pki:
        root = _issue(f"interop root {kind}", make_key(kind), None, ca=True)
        chain: list[Issued] = []
        issuer = root
        for n in range(intermediates):
            issuer = _issue(f"interop intermediate {n + 1} {kind}", make_key(kind), issuer, ca=True)
            chain.append(issuer)
        ees = {fqdn: _issue(fqdn, make_key(kind), issuer, ca=False, san=fqdn) for fqdn in gateways}
        return cls(root, tuple(chain), ees)

    def chain_pem(self, fqdn: str) -> bytes:
        """The end entity followed by its issuers up to (not including) the root."""
        parts = [self.gateways[fqdn].cert_pem()]
        parts.extend(ca.cert_pem() for ca in reversed(self.intermediates))
        return b"".join(parts)

    def install_charon(self, base: Path, fqdn: str) -> str:
        """swanctl's layout: own cert in x509/, CAs in x509ca/, key in private/. Returns the
        file name of the own certificate (for ``local.certs``)."""
        for sub in ("x509", "x509ca", "private"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "x509ca" / "root.pem").write_bytes(self.root.cert_pem())
        for n, ca in enumerate(self.intermediates):
            (base / "x509ca" / f"intermediate{n + 1}.pem").write_bytes(ca.cert_pem())
        own = f"{fqdn}.pem"
        (base / "x509" / own).write_bytes(self.gateways[fqdn].cert_pem())
        (base / "private" / f"{fqdn}.key").write_bytes(self.gateways[fqdn].key_pem())
        return own

    def install_quickike(self, base: Path, fqdn: str) -> tuple[str, str]:
        """quickike's layout (the same subdirectories): the own chain in x509/ as one bundle, the
        root in x509ca/, the key in private/ where quickike looks for keys. Returns the
        (certs, cacerts) file names for the configuration."""
        for sub in ("x509", "x509ca", "private"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "x509ca" / "root.pem").write_bytes(self.root.cert_pem())
        own = f"{fqdn}.pem"
        (base / "x509" / own).write_bytes(self.chain_pem(fqdn))
        (base / "private" / f"{fqdn}.key").write_bytes(self.gateways[fqdn].key_pem())
        return own, "root.pem"
