"""Certificates and private keys named by the configuration.

Files are read once and cached (an IKE_AUTH must not touch the disk on the
per-message path after the first one); a SIGHUP reload forgets the cache.
Relative names are looked up like swanctl does: in ``x509/``, ``x509ca/``
and ``private/`` next to the configuration file.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Collection, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import serialization as _ser

from ..crypto.auth import sign, supported_hashes, verify
from ..crypto.certs import (
    PrivateKey,
    cert_der,
    certreq_hash,
    id_matches_cert,
    load_certificates,
    load_private_key,
    public_key,
    verify_chain,
)
from ..crypto.errors import AuthError, CryptoError
from ..wire.enums import AuthMethod, HashAlgorithm
from .config import ConnectionConfig, Identity, QuickikeConfig

_SUBDIRS = ("", "x509", "x509ca", "private", "pubkey")


class Credentials:
    __slots__ = ("_certs", "_keys", "base_dirs", "config")

    def __init__(self, config: QuickikeConfig) -> None:
        self._certs: dict[str, list[x509.Certificate]] = {}
        self._keys: dict[bytes, PrivateKey] = {}
        self.reload(config)

    def reload(self, config: QuickikeConfig) -> None:
        self.config = config
        self._certs.clear()
        self._keys.clear()
        self.base_dirs = [os.path.dirname(os.path.abspath(s)) for s in config.sources[:1]]

    def _path(self, name: str) -> str:
        if os.path.isabs(name):
            return name
        for base in self.base_dirs:
            for sub in _SUBDIRS:
                p = os.path.join(base, sub, name)
                if os.path.exists(p):
                    return p
        return name

    def _load_certs(self, name: str) -> list[x509.Certificate]:
        certs = self._certs.get(name)
        if certs is None:
            with open(self._path(name), "rb") as f:
                certs = self._certs[name] = load_certificates(f.read())
        return certs

    def local_chain(self, conn: ConnectionConfig) -> list[x509.Certificate]:
        chain: list[x509.Certificate] = []
        for name in conn.local[0].certs:
            chain.extend(self._load_certs(name))
        return chain

    def local_subject(self, conn: ConnectionConfig) -> bytes | None:
        try:
            chain = self.local_chain(conn)
        except (OSError, ValueError):
            return None
        return chain[0].subject.public_bytes() if chain else None

    def _private_key_for(self, cert: x509.Certificate) -> PrivateKey:
        spki = cert.public_key().public_bytes(
            encoding=_ser.Encoding.DER, format=_ser.PublicFormat.SubjectPublicKeyInfo
        )
        key = self._keys.get(spki)
        if key is not None:
            return key
        candidates: list[tuple[str, bytes | None]] = [
            (p.file, p.secret or None) for p in self.config.secrets.private
        ]
        for base in self.base_dirs:
            d = os.path.join(base, "private")
            if os.path.isdir(d):
                candidates.extend((os.path.join(d, f), None) for f in sorted(os.listdir(d)))
        for path, password in candidates:
            try:
                with open(self._path(path), "rb") as f:
                    k = load_private_key(f.read(), password)
            except (OSError, ValueError, TypeError, CryptoError):
                continue  # not a key, or not ours to open: keep looking
            kspki = k.public_key().public_bytes(
                encoding=_ser.Encoding.DER, format=_ser.PublicFormat.SubjectPublicKeyInfo
            )
            self._keys[kspki] = k
            if kspki == spki:
                return k
        raise AuthError(f"no private key for certificate {cert.subject.rfc4514_string()!r}")

    def sign(
        self, conn: ConnectionConfig, octets: bytes, peer_hashes: Collection[int]
    ) -> tuple[list[bytes], AuthMethod, bytes]:
        chain = self.local_chain(conn)
        if not chain:
            raise AuthError(f"connection {conn.name!r} uses pubkey auth but has no certificate")
        key = self._private_key_for(chain[0])
        rsa_pss = "rsa/pss" in conn.local[0].auth_spec or "-pss" in conn.local[0].auth_spec
        method, data = sign(key, octets, AuthMethod.DIGITAL_SIGNATURE,
                            [HashAlgorithm(h) for h in peer_hashes], rsa_pss=rsa_pss)
        return [cert_der(c) for c in chain], method, data

    def anchors(self, conn: ConnectionConfig) -> list[x509.Certificate]:
        names: Sequence[str] = conn.remote[0].cacerts
        if not names:
            # like charon: every CA the configuration loads is a trust anchor
            names = [n for c in self.config.connections.values() for r in c.remote for n in r.cacerts]
        out: list[x509.Certificate] = []
        for n in names:
            out.extend(self._load_certs(n))
        return out

    def certreqs(self, conn: ConnectionConfig) -> list[bytes]:
        try:
            return [certreq_hash(ca) for ca in self.anchors(conn)]
        except (OSError, ValueError):
            return []

    def verify(
        self,
        conn: ConnectionConfig,
        peer_id: Identity,
        certs: list[bytes],
        method: AuthMethod,
        data: bytes,
        octets: bytes,
        wall: float,
    ) -> None:
        received = [c for der in certs for c in load_certificates(der)]
        pinned = [c for n in conn.remote[0].certs for c in self._load_certs(n)]
        if pinned:
            ee = pinned[0]
            inter = received
        elif received:
            ee, inter = received[0], received[1:]
        else:
            raise AuthError("peer sent no certificate and none is configured for it")
        if not pinned:
            verify_chain(ee, inter, self.anchors(conn), _dt.datetime.fromtimestamp(wall, _dt.UTC))
        if not peer_id.is_any and not id_matches_cert(peer_id.id_type, peer_id.data, ee):
            raise AuthError(f"identity {peer_id} is not in the peer's certificate")
        verify(public_key(ee), method, data, octets, supported_hashes())

