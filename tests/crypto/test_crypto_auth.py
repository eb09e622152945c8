"""AUTH payload computation: PSK, signatures (methods 1, 9-11, 14) and certificates."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from ipaddress import IPv4Address, IPv6Address

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, x25519
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from quickike.crypto import (
    PRF_ALGS,
    AuthError,
    cert_der,
    cert_identities,
    certreq_hash,
    id_matches_cert,
    load_certificate,
    load_certificates,
    load_private_key,
    psk_auth,
    public_key,
    sign,
    signed_octets,
    supported_hashes,
    verify,
    verify_chain,
    verify_psk_auth,
)
from quickike.crypto.certs import PrivateKey, PublicKey
from quickike.wire import IDi
from quickike.wire.enums import AuthMethod, HashAlgorithm, IdType, PrfId

H = HashAlgorithm
OCTETS = b"IKE_SA_INIT message" + b"\x00" * 100 + b"nonce" + b"\x11" * 32
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


# ---------------------------------------------------------------- PSK


def test_psk_auth_two_ways() -> None:
    prf = PRF_ALGS[PrfId.HMAC_SHA2_256]
    real_msg, nonce_r, sk_pi = b"\x01" * 300, b"\x02" * 32, b"\x03" * 32
    idi = IDi(IdType.FQDN, b"moon.example.org")
    octets = signed_octets(real_msg, nonce_r, prf, sk_pi, idi.encode_body())
    # independent computation straight from RFC 7296 §2.15
    id_body = bytes([2, 0, 0, 0]) + b"moon.example.org"
    expected_octets = real_msg + nonce_r + hmac.new(sk_pi, id_body, "sha256").digest()
    assert octets == expected_octets
    psk = b"This is a very long pre-shared key of at least sixty-four octets, really!"
    key = hmac.new(psk, b"Key Pad for IKEv2", "sha256").digest()
    expected = hmac.new(key, expected_octets, "sha256").digest()
    assert psk_auth(prf, psk, octets) == expected
    verify_psk_auth(prf, psk, octets, expected)
    with pytest.raises(AuthError):
        verify_psk_auth(prf, psk + b"x", octets, expected)
    with pytest.raises(AuthError):
        verify_psk_auth(prf, psk, octets, expected[:-1])


def test_supported_hashes_exclude_sha1() -> None:
    hs = supported_hashes()
    assert H.SHA2_256 in hs and H.SHA2_512 in hs and H.IDENTITY in hs
    assert H.SHA1 not in hs


# ---------------------------------------------------------------- keys and certificates


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_keys() -> dict[str, ec.EllipticCurvePrivateKey]:
    return {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "p521": ec.generate_private_key(ec.SECP521R1()),
    }


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "quickike test"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _cert(
    subject: str,
    key: PrivateKey,
    issuer: str,
    issuer_key: PrivateKey,
    *,
    ca: bool,
    path_length: int | None = None,
    san: list[x509.GeneralName] | None = None,
    days: int = 365,
    key_usage_cert_sign: bool = True,
) -> x509.Certificate:
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length), critical=True)
    )
    if ca:
        b = b.add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=key_usage_cert_sign,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
    algorithm = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return b.sign(issuer_key, algorithm)


SAN: list[x509.GeneralName] = [
    x509.DNSName("gw.example.org"),
    x509.RFC822Name("vpn@example.org"),
    x509.IPAddress(IPv4Address("192.0.2.1")),
    x509.IPAddress(IPv6Address("2001:db8::1")),
]


@pytest.fixture(scope="module")
def pki(rsa_key: rsa.RSAPrivateKey) -> dict[str, object]:
    ca_key = ec.generate_private_key(ec.SECP384R1())
    int_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("Root CA", ca_key, "Root CA", ca_key, ca=True, days=3650)
    inter = _cert("Intermediate CA", int_key, "Root CA", ca_key, ca=True, path_length=0)
    ee = _cert("gw.example.org", rsa_key, "Intermediate CA", int_key, ca=False, san=SAN)
    return {"ca": ca, "ca_key": ca_key, "inter": inter, "int_key": int_key, "ee": ee}


# ---------------------------------------------------------------- signatures


def test_rsa_legacy_method_1_without_peer_hashes(rsa_key: rsa.RSAPrivateKey) -> None:
    method, data = sign(rsa_key, OCTETS)
    assert method == AuthMethod.RSA_SIG and len(data) == 256
    verify(rsa_key.public_key(), method, data, OCTETS)
    # independent check: PKCS#1 v1.5 with SHA-1 (what method 1 means)
    rsa_key.public_key().verify(data, OCTETS, padding.PKCS1v15(), hashes.SHA1())


def test_rsa_method_14_pkcs1_uses_peer_hash(rsa_key: rsa.RSAPrivateKey) -> None:
    method, data = sign(rsa_key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, [H.SHA2_256])
    assert method == AuthMethod.DIGITAL_SIGNATURE
    # RFC 7427 A.1.2 sha256WithRSAEncryption, preceded by its length (15)
    assert data[:16] == bytes.fromhex("0f300d06092a864886f70d01010b0500")
    verify(rsa_key.public_key(), method, data, OCTETS, supported_hashes())
    _, data512 = sign(rsa_key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, [H.SHA2_512])
    assert data512[:16] == bytes.fromhex("0f300d06092a864886f70d01010d0500")  # A.1.4
    with pytest.raises(AuthError):  # we announced only SHA-256
        verify(rsa_key.public_key(), method, data512, OCTETS, [H.SHA2_256])


def test_rsa_pss(rsa_key: rsa.RSAPrivateKey) -> None:
    method, data = sign(rsa_key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, [H.SHA2_256], rsa_pss=True)
    assert method == AuthMethod.DIGITAL_SIGNATURE
    verify(rsa_key.public_key(), method, data, OCTETS)
    # A peer using RFC 7427 A.4.3 verbatim (explicit trailerField) is accepted too.
    rfc_algid = bytes.fromhex(
        "3046 0609 2a86 4886 f70d 0101 0a30 39a0 0f30 0d06 0960 8648 0165 0304 0201 0500"
        "a11c 301a 0609 2a86 4886 f70d 0101 0830 0d06 0960 8648 0165 0304 0201 0500 a203"
        "0201 20a3 0302 0101".replace(" ", "")
    )
    sig = rsa_key.sign(OCTETS, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    verify(rsa_key.public_key(), 14, bytes([len(rfc_algid)]) + rfc_algid + sig, OCTETS)
    with pytest.raises(AuthError):
        verify(rsa_key.public_key(), 14, bytes([len(rfc_algid)]) + rfc_algid + sig, OCTETS + b"!")


@pytest.mark.parametrize(
    ("curve", "legacy", "size", "algid"),
    [
        ("p256", AuthMethod.ECDSA_SHA256_P256, 64, "0c300a06082a8648ce3d040302"),
        ("p384", AuthMethod.ECDSA_SHA384_P384, 96, "0c300a06082a8648ce3d040303"),
        ("p521", AuthMethod.ECDSA_SHA512_P521, 132, "0c300a06082a8648ce3d040304"),
    ],
)
def test_ecdsa_legacy_and_method_14(
    ec_keys: dict[str, ec.EllipticCurvePrivateKey], curve: str, legacy: AuthMethod, size: int,
    algid: str,
) -> None:
    key = ec_keys[curve]
    method, data = sign(key, OCTETS)
    assert method == legacy and len(data) == size  # raw r|s, not DER (RFC 4754)
    verify(key.public_key(), method, data, OCTETS)
    method, data = sign(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, supported_hashes())
    assert method == AuthMethod.DIGITAL_SIGNATURE
    assert data[:13] == bytes.fromhex(algid)  # the curve's own hash is preferred (A.3.x)
    assert data[13] == 0x30  # DER ECDSA-Sig-Value inside method 14
    verify(key.public_key(), method, data, OCTETS, supported_hashes())
    other = ec_keys["p256" if curve != "p256" else "p384"]
    with pytest.raises(AuthError):
        verify(other.public_key(), method, data, OCTETS)


def test_ed25519_needs_method_14_with_identity() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    method, data = sign(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, [H.SHA2_256, H.IDENTITY])
    assert method == AuthMethod.DIGITAL_SIGNATURE
    assert data[:8] == bytes.fromhex("07300506032b6570")  # RFC 8420 id-Ed25519
    verify(key.public_key(), method, data, OCTETS, supported_hashes())
    with pytest.raises(AuthError):
        sign(key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, [H.SHA2_256])
    with pytest.raises(AuthError):
        verify(key.public_key(), method, data, OCTETS, [H.SHA2_256])  # identity not announced


def test_wrong_key_method_and_data_are_rejected(
    rsa_key: rsa.RSAPrivateKey, ec_keys: dict[str, ec.EllipticCurvePrivateKey]
) -> None:
    p256 = ec_keys["p256"]
    method, data = sign(p256, OCTETS)
    with pytest.raises(AuthError):
        verify(ec_keys["p384"].public_key(), method, data, OCTETS)  # curve/method mismatch
    with pytest.raises(AuthError):
        verify(rsa_key.public_key(), method, data, OCTETS)
    with pytest.raises(AuthError):
        verify(p256.public_key(), method, data, OCTETS[:-1])
    with pytest.raises(AuthError):
        verify(p256.public_key(), AuthMethod.PSK, data, OCTETS)
    with pytest.raises(AuthError):
        sign(rsa_key, OCTETS, AuthMethod.ECDSA_SHA256_P256)
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    m, d = sign(rsa_key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, [H.SHA2_384])
    with pytest.raises(AuthError):
        verify(other_rsa.public_key(), m, d, OCTETS)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=120), method=st.sampled_from([1, 9, 10, 11, 14, 2, 200]))
def test_garbage_signatures_only_raise_auth_error(data: bytes, method: int) -> None:
    for key in _GARBAGE_KEYS:
        with pytest.raises(AuthError):
            verify(key, method, data, OCTETS)


_GARBAGE_KEYS: list[PublicKey] = [
    ec.generate_private_key(ec.SECP256R1()).public_key(),
    ed25519.Ed25519PrivateKey.generate().public_key(),
    rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
]


# ---------------------------------------------------------------- certificates


def test_chain_verifies_through_intermediate(pki: dict[str, object]) -> None:
    ca, inter, ee = pki["ca"], pki["inter"], pki["ee"]
    assert isinstance(ca, x509.Certificate) and isinstance(inter, x509.Certificate)
    assert isinstance(ee, x509.Certificate)
    assert verify_chain(ee, [inter], [ca], NOW) == [ee, inter, ca]
    assert verify_chain(ee, [ca, inter], [ca], NOW.replace(tzinfo=None)) == [ee, inter, ca]
    with pytest.raises(AuthError):
        verify_chain(ee, [], [ca], NOW)  # intermediate missing
    with pytest.raises(AuthError):
        verify_chain(ee, [inter], [ca], dt.datetime(2024, 12, 31, tzinfo=dt.UTC))  # not yet
    with pytest.raises(AuthError):
        verify_chain(ee, [inter], [ca], dt.datetime(2026, 6, 1, tzinfo=dt.UTC))  # expired
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = _cert("Other CA", other_key, "Other CA", other_key, ca=True)
    with pytest.raises(AuthError):
        verify_chain(ee, [inter], [other_ca], NOW)
    # Same names, different key: the signature check must catch it.
    fake_root = _cert("Root CA", other_key, "Root CA", other_key, ca=True, days=3650)
    with pytest.raises(AuthError):
        verify_chain(ee, [inter], [fake_root], NOW)


def test_chain_rejects_non_ca_issuers_and_path_length(pki: dict[str, object]) -> None:
    ca, ca_key, inter, int_key = pki["ca"], pki["ca_key"], pki["inter"], pki["int_key"]
    assert isinstance(ca, x509.Certificate) and isinstance(inter, x509.Certificate)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    assert isinstance(int_key, ec.EllipticCurvePrivateKey)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    # an end-entity certificate (CA=false) used as issuer
    leaf = _cert("Leaf", leaf_key, "Intermediate CA", int_key, ca=False)
    below = _cert("Below", ec.generate_private_key(ec.SECP256R1()), "Leaf", leaf_key, ca=False)
    with pytest.raises(AuthError):
        verify_chain(below, [leaf, inter], [ca], NOW)
    # intermediate has pathLen 0: it may not issue another CA that issues certificates
    sub_key = ec.generate_private_key(ec.SECP256R1())
    sub = _cert("Sub CA", sub_key, "Intermediate CA", int_key, ca=True)
    deep = _cert("Deep", ec.generate_private_key(ec.SECP256R1()), "Sub CA", sub_key, ca=False)
    with pytest.raises(AuthError):
        verify_chain(deep, [sub, inter], [ca], NOW)
    # a CA without keyCertSign
    no_sign_key = ec.generate_private_key(ec.SECP256R1())
    no_sign = _cert("NoSign CA", no_sign_key, "Root CA", ca_key, ca=True,
                    key_usage_cert_sign=False)
    under = _cert("Under", ec.generate_private_key(ec.SECP256R1()), "NoSign CA", no_sign_key,
                  ca=False)
    with pytest.raises(AuthError):
        verify_chain(under, [no_sign], [ca], NOW)


def test_self_signed_peer_pinned_as_anchor() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    me = _cert("Pinned", key, "Pinned", key, ca=False)
    assert verify_chain(me, [], [me], NOW) == [me]
    with pytest.raises(AuthError):
        verify_chain(me, [], [me], dt.datetime(2027, 1, 1, tzinfo=dt.UTC))  # expired


def test_identities_and_matching(pki: dict[str, object]) -> None:
    ee = pki["ee"]
    assert isinstance(ee, x509.Certificate)
    ids = cert_identities(ee)
    assert (IdType.DER_ASN1_DN, ee.subject.public_bytes()) in ids
    assert (IdType.FQDN, b"gw.example.org") in ids
    assert (IdType.RFC822_ADDR, b"vpn@example.org") in ids
    assert (IdType.IPV4_ADDR, bytes([192, 0, 2, 1])) in ids
    assert (IdType.IPV6_ADDR, IPv6Address("2001:db8::1").packed) in ids
    assert id_matches_cert(IdType.FQDN, b"GW.Example.ORG", ee)
    assert id_matches_cert(IdType.DER_ASN1_DN, ee.subject.public_bytes(), ee)
    assert id_matches_cert(IdType.IPV4_ADDR, bytes([192, 0, 2, 1]), ee)
    assert not id_matches_cert(IdType.FQDN, b"other.example.org", ee)
    assert not id_matches_cert(IdType.IPV4_ADDR, bytes([192, 0, 2, 2]), ee)
    assert not id_matches_cert(IdType.KEY_ID, b"gw.example.org", ee)
    assert not id_matches_cert(IdType.DER_ASN1_DN, _name("gw.example.org").public_bytes()[:-1], ee)


def test_loading_and_certreq_hash(pki: dict[str, object], rsa_key: rsa.RSAPrivateKey) -> None:
    ca, inter, ee = pki["ca"], pki["inter"], pki["ee"]
    assert isinstance(ca, x509.Certificate) and isinstance(inter, x509.Certificate)
    assert isinstance(ee, x509.Certificate)
    bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (ee, inter, ca))
    assert load_certificates(bundle) == [ee, inter, ca]
    assert load_certificate(cert_der(ee)) == ee
    with pytest.raises(AuthError):
        load_certificate(bundle)  # three, not one
    with pytest.raises(AuthError):
        load_certificates(b"\x30\x03garbage")
    pem = rsa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.BestAvailableEncryption(b"secret"))
    loaded = load_private_key(pem, b"secret")
    assert isinstance(loaded, rsa.RSAPrivateKey)
    assert loaded.private_numbers() == rsa_key.private_numbers()
    der = rsa_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    assert isinstance(load_private_key(der), rsa.RSAPrivateKey)
    with pytest.raises(AuthError):
        load_private_key(pem, b"wrong")
    with pytest.raises(AuthError):
        load_private_key(b"not a key")
    spki = ca.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert certreq_hash(ca) == hashlib.sha1(spki).digest()


def test_keys_ike_cannot_sign_with_are_refused() -> None:
    """X25519 is a key-agreement key: neither a private key file nor a certificate with one
    may be loaded as an AUTH key (typed error, not a key object of the wrong kind)."""
    xkey = x25519.X25519PrivateKey.generate()
    pem = xkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    with pytest.raises(AuthError, match="unsupported private key type"):
        load_private_key(pem)
    issuer = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x25519 holder")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(xkey.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(issuer, None)
    )
    with pytest.raises(AuthError, match="unsupported public key type"):
        public_key(cert)


def test_end_to_end_certificate_auth(pki: dict[str, object], rsa_key: rsa.RSAPrivateKey) -> None:
    ca, inter, ee = pki["ca"], pki["inter"], pki["ee"]
    assert isinstance(ca, x509.Certificate) and isinstance(inter, x509.Certificate)
    assert isinstance(ee, x509.Certificate)
    method, data = sign(rsa_key, OCTETS, AuthMethod.DIGITAL_SIGNATURE, supported_hashes())
    # the verifier only has what came over the wire: CERT payload bodies
    peer_ee = load_certificate(cert_der(ee))
    peer_inter = load_certificate(cert_der(inter))
    verify_chain(peer_ee, [peer_inter], [ca], NOW)
    assert id_matches_cert(IdType.FQDN, b"gw.example.org", peer_ee)
    verify(public_key(peer_ee), method, data, OCTETS, supported_hashes())
    with pytest.raises(AuthError):
        verify(public_key(inter), method, data, OCTETS, supported_hashes())
