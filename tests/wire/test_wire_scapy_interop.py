"""Cross-check with an independent implementation: scapy.contrib.ikev2.

Messages quickike builds parse in scapy to the same field values, and
messages scapy builds decode in quickike to the same values.
"""

from __future__ import annotations

import datetime
import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from quickike.wire import (
    AUTH,
    CERT,
    CERTREQ,
    CP,
    EAP,
    KE,
    QCD_TOKEN,
    SA,
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    ConfigAttribute,
    Delete,
    DhGroup,
    EncrId,
    Encrypted,
    EncryptedFragment,
    EsnId,
    ExchangeType,
    IDi,
    IDr,
    IdType,
    IntegId,
    Message,
    Nonce,
    Notify,
    NotifyType,
    PayloadType,
    PrfId,
    Proposal,
    ProtocolId,
    TrafficSelector,
    Transform,
    TransformType,
    TSi,
    TSr,
    VendorId,
    decode_message,
)

from .scapy_view import ik, quickike_header, quickike_payloads, scapy_header, scapy_payloads

SPI_I, SPI_R = bytes.fromhex("0011223344556677"), bytes.fromhex("8899aabbccddeeff")
TOKEN = bytes(range(32))


def _self_signed_der() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw.example")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def T(ttype: TransformType, tid: int, key_length: int | None = None) -> Transform:
    return Transform(ttype, tid, key_length)


IKE_SA = SA(
    [
        Proposal(
            1,
            ProtocolId.IKE,
            b"",
            [
                T(TransformType.ENCR, EncrId.AES_GCM_16, 256),
                T(TransformType.ENCR, EncrId.AES_GCM_16, 128),
                T(TransformType.PRF, PrfId.HMAC_SHA2_256),
                T(TransformType.PRF, PrfId.HMAC_SHA2_384),
                T(TransformType.DH, DhGroup.CURVE25519),
                T(TransformType.DH, DhGroup.ECP_256),
            ],
        ),
        Proposal(
            2,
            ProtocolId.IKE,
            b"",
            [
                T(TransformType.ENCR, EncrId.AES_CBC, 128),
                T(TransformType.PRF, PrfId.HMAC_SHA2_256),
                T(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
                T(TransformType.DH, DhGroup.MODP_2048),
            ],
        ),
        Proposal(
            3,
            ProtocolId.IKE,
            b"",
            [
                T(TransformType.ENCR, EncrId.CHACHA20_POLY1305),
                T(TransformType.PRF, PrfId.HMAC_SHA2_512),
                T(TransformType.DH, DhGroup.CURVE448),
            ],
        ),
    ]
)
ESP_SA = SA(
    [
        Proposal(
            1,
            ProtocolId.ESP,
            b"\xc1\xa9\x65\x6b",
            [
                T(TransformType.ENCR, EncrId.AES_GCM_16, 256),
                T(TransformType.ESN, EsnId.NO_ESN),
                T(TransformType.ESN, EsnId.ESN),
            ],
        ),
        Proposal(
            2,
            ProtocolId.ESP,
            b"\xc1\xa9\x65\x6b",
            [
                T(TransformType.ENCR, EncrId.AES_CBC, 256),
                T(TransformType.INTEG, IntegId.HMAC_SHA2_512_256),
                T(TransformType.ESN, EsnId.NO_ESN),
            ],
        ),
    ]
)


def all_payloads() -> list:
    return [
        IKE_SA,
        KE(DhGroup.CURVE25519, bytes(range(32))),
        Nonce(bytes(range(100, 132))),
        IDi(IdType.IPV4_ADDR, IPv4Address("192.0.2.1").packed),
        IDr(IdType.IPV6_ADDR, IPv6Address("2001:db8::1").packed),
        IDi(IdType.FQDN, b"gw.example.com"),
        IDr(IdType.RFC822_ADDR, b"alice@example.com"),
        IDi(IdType.DER_ASN1_DN, bytes.fromhex("3017311530130603550403130c67772e6578616d706c65")),
        IDr(IdType.DER_ASN1_GN, b"\x82\x0agw.example"),
        IDi(IdType.KEY_ID, b"\x01\x02\x03\x04"),
        IDr(IdType.FC_NAME, b"fc-name"),
        IDi(IdType.NULL, b""),
        CERT(CertEncoding.X509_SIGNATURE, _self_signed_der()),
        CERT(CertEncoding.HASH_URL_X509_CERT, bytes(20) + b"http://ca.example/c.der"),
        CERTREQ(CertEncoding.X509_SIGNATURE, bytes(range(20)) + bytes(range(20, 40))),
        AUTH(AuthMethod.PSK, bytes(32)),
        AUTH(AuthMethod.DIGITAL_SIGNATURE, b"\x0c" + bytes(12) + b"sig"),
        Notify(QCD_TOKEN, TOKEN, ProtocolId.IKE),
        Notify(QCD_TOKEN, TOKEN),
        Notify(NotifyType.INITIAL_CONTACT),
        Notify(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\x01\x02\x03\x04"),
        Notify(NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", 31)),
        Notify(NotifyType.REDIRECT, bytes((1, 4)) + IPv4Address("198.51.100.7").packed + bytes(16)),
        Delete(ProtocolId.IKE),
        Delete(ProtocolId.ESP, [b"\xac\x0f\xaf\x03", b"\x95\x8a\x75\x3b", b"\x00\x00\x00\x01"]),
        VendorId(b"strongSwan" + bytes(6)),
        TSi(
            [
                TrafficSelector(IPv4Address("10.0.0.0"), IPv4Address("10.0.0.255")),
                TrafficSelector(IPv4Address("192.0.2.1"), IPv4Address("192.0.2.1"), 17, 500, 500),
            ]
        ),
        TSr(
            [
                TrafficSelector(IPv6Address("2001:db8::"), IPv6Address("2001:db8::ffff")),
                TrafficSelector(
                    IPv6Address("::"),
                    IPv6Address("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                    6,
                    443,
                    443,
                ),
            ]
        ),
        ESP_SA,
        CP(
            CfgType.CFG_REQUEST,
            [
                ConfigAttribute(CfgAttr.INTERNAL_IP4_ADDRESS),
                ConfigAttribute(CfgAttr.INTERNAL_IP6_ADDRESS),
            ],
        ),
        CP(
            CfgType.CFG_REPLY,
            [
                ConfigAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, IPv4Address("10.9.0.2").packed),
                ConfigAttribute(CfgAttr.INTERNAL_IP4_DNS, IPv4Address("10.9.0.1").packed),
                ConfigAttribute(
                    CfgAttr.INTERNAL_IP6_ADDRESS, IPv6Address("fd00::2").packed + b"\x40"
                ),
                ConfigAttribute(CfgAttr.APPLICATION_VERSION, b"quickike 0.1"),
            ],
        ),
        EAP(bytes((1, 7, 0, 10, 1)) + b"alice"),
        Nonce(b"critical-bit-set", critical=True),
    ]


def _check_against_scapy(m: Message) -> bytes:
    wire = m.encode()
    theirs = ik.IKEv2(wire)
    assert scapy_header(theirs) == quickike_header(m, len(wire))
    assert scapy_payloads(theirs) == quickike_payloads(m)
    return wire


def test_every_payload_type_parses_identically_in_scapy() -> None:
    m = Message(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 0x08, 1, all_payloads())
    wire = _check_against_scapy(m)
    assert decode_message(wire) == m


@pytest.mark.parametrize("flags", [0x08, 0x20, 0x28, 0x00])
def test_sk_message(flags: int) -> None:
    m = Message(
        SPI_I,
        SPI_R,
        ExchangeType.INFORMATIONAL,
        flags,
        0xFFFFFFFF,
        [
            Notify(NotifyType.INITIAL_CONTACT),
            Encrypted(PayloadType.IDi, bytes(range(48))),
        ],
    )
    wire = _check_against_scapy(m)
    assert decode_message(wire).sk_offset == 36


def test_skf_message() -> None:
    m = Message(
        SPI_I,
        SPI_R,
        ExchangeType.IKE_AUTH,
        0x08,
        1,
        [
            EncryptedFragment(PayloadType.IDi, 1, 3, bytes(range(64))),
        ],
    )
    _check_against_scapy(m)
    m2 = Message(
        SPI_I,
        SPI_R,
        ExchangeType.IKE_AUTH,
        0x08,
        1,
        [
            EncryptedFragment(0, 3, 3, bytes(range(16))),
        ],
    )
    _check_against_scapy(m2)


# ---------------------------------------------------------------- built by scapy


def _scapy_message() -> bytes:
    trans = (
        ik.IKEv2_Transform(
            next_payload=3, transform_type=1, transform_id=20, length=12, key_length=256
        )
        / ik.IKEv2_Transform(next_payload=3, transform_type=2, transform_id=5)
        / ik.IKEv2_Transform(next_payload=0, transform_type=4, transform_id=31)
    )
    trans2 = (
        ik.IKEv2_Transform(
            next_payload=3, transform_type=1, transform_id=12, length=12, key_length=128
        )
        / ik.IKEv2_Transform(next_payload=3, transform_type=3, transform_id=12)
        / ik.IKEv2_Transform(next_payload=3, transform_type=2, transform_id=5)
        / ik.IKEv2_Transform(next_payload=0, transform_type=4, transform_id=14)
    )
    props = ik.IKEv2_Proposal(
        next_payload=2, proposal=1, proto=1, trans_nb=3, trans=trans
    ) / ik.IKEv2_Proposal(next_payload=0, proposal=2, proto=1, trans_nb=4, trans=trans2)
    pkt = (
        ik.IKEv2(init_SPI=SPI_I, resp_SPI=SPI_R, exch_type=35, flags="Initiator", id=1)
        / ik.IKEv2_SA(prop=props)
        / ik.IKEv2_KE(group=31, ke=bytes(32))
        / ik.IKEv2_Nonce(nonce=b"n" * 32)
        / ik.IKEv2_IDi(IDtype=2, ID=b"alice.example")
        / ik.IKEv2_IDr(IDtype=1, ID="192.0.2.9")
        / ik.IKEv2_AUTH(auth_type=2, load=b"a" * 32)
        / ik.IKEv2_Notify(proto=1, type=16419, notify=TOKEN)
        / ik.IKEv2_Notify(proto=0, type=16419, notify=TOKEN[:16])
        / ik.IKEv2_Notify(proto=3, type=16393, SPI=b"\x01\x02\x03\x04")
        / ik.IKEv2_Delete(
            proto=3, SPIsize=4, SPInum=2, SPI=[b"\xaa\xbb\xcc\xdd", b"\x11\x22\x33\x44"]
        )
        / ik.IKEv2_VendorID(vendorID=b"vendor")
        / ik.IKEv2_TSi(
            traffic_selector=[
                ik.IPv4TrafficSelector(
                    IP_protocol_ID=0,
                    starting_address_v4="10.1.0.0",
                    ending_address_v4="10.1.255.255",
                )
            ]
        )
        / ik.IKEv2_TSr(
            traffic_selector=[
                ik.IPv6TrafficSelector(
                    IP_protocol_ID=17,
                    length=40,
                    start_port=53,
                    end_port=53,
                    starting_address_v6="2001:db8::53",
                    ending_address_v6="2001:db8::53",
                )
            ]
        )
        / ik.IKEv2_CERTREQ(cert_encoding=4, cert_authority=bytes(20))
        / ik.IKEv2_CP(
            CFGType=2, attributes=[ik.ConfigurationAttribute(type=1, length=4, value="10.9.0.5")]
        )
        / ik.IKEv2_Encrypted(next_payload=41, load=bytes(range(40)))
    )
    return bytes(pkt)


def test_scapy_built_message_decodes_to_the_same_values() -> None:
    wire = _scapy_message()
    m = decode_message(wire)
    assert m.encode() == wire
    theirs = ik.IKEv2(wire)
    assert quickike_header(m, len(wire)) == scapy_header(theirs)
    assert quickike_payloads(m) == scapy_payloads(theirs)
    # and the values we asked scapy for, stated directly
    sa = m.get(SA)
    assert sa is not None
    assert [
        (p.number, [(t.type, t.id, t.key_length) for t in p.transforms]) for p in sa.proposals
    ] == [
        (1, [(1, 20, 256), (2, 5, None), (4, 31, None)]),
        (2, [(1, 12, 128), (3, 12, None), (2, 5, None), (4, 14, None)]),
    ]
    qcd = [n for n in m.notifies() if n.type == QCD_TOKEN]
    assert [(n.protocol, n.data) for n in qcd] == [
        (ProtocolId.IKE, TOKEN),
        (ProtocolId.NONE, TOKEN[:16]),
    ]
    assert str(qcd[0].type) == "QUICK_CRASH_DETECTION"
    rekey = m.notify(NotifyType.REKEY_SA)
    assert rekey is not None and rekey.spi == b"\x01\x02\x03\x04" and rekey.protocol == 3
    d = m.get(Delete)
    assert d is not None and d.spis == [b"\xaa\xbb\xcc\xdd", b"\x11\x22\x33\x44"]
    idr = m.get(IDr)
    assert idr is not None and idr.text() == "192.0.2.9"
    tsr = m.get(TSr)
    assert tsr is not None and str(tsr.selectors[0]) == "2001:db8::53/128[17/53]"
    cp = m.get(CP)
    assert cp is not None and cp.attributes == [
        ConfigAttribute(CfgAttr.INTERNAL_IP4_ADDRESS, bytes((10, 9, 0, 5)))
    ]
    sk = m.encrypted
    assert isinstance(sk, Encrypted) and sk.next_inner == 41 and sk.data == bytes(range(40))


def test_scapy_built_qcd_informational() -> None:
    """The unprotected INVALID_IKE_SPI + QCD_TOKEN answer of RFC 6290 §4.1, built by scapy."""
    pkt = (
        ik.IKEv2(init_SPI=SPI_I, resp_SPI=SPI_R, exch_type=37, flags="Response", id=7)
        / ik.IKEv2_Notify(proto=0, type=4)
        / ik.IKEv2_Notify(proto=1, type=16419, notify=TOKEN)
    )
    m = decode_message(bytes(pkt))
    assert m.is_response and m.message_id == 7 and m.exchange == ExchangeType.INFORMATIONAL
    assert [(n.type, n.protocol, n.data) for n in m.notifies()] == [
        (NotifyType.INVALID_IKE_SPI, ProtocolId.NONE, b""),
        (NotifyType.QUICK_CRASH_DETECTION, ProtocolId.IKE, TOKEN),
    ]
