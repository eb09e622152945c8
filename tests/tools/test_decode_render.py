"""What ``quickike decode`` prints for each payload type, in text and JSON."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address

import pytest

from quickike.cli import main
from quickike.wire import (
    AUTH,
    CERTREQ,
    CP,
    EAP,
    SA,
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    ConfigAttribute,
    Delete,
    EncrId,
    ExchangeType,
    IDi,
    IDr,
    IdType,
    Message,
    Notify,
    NotifyType,
    Proposal,
    ProtocolId,
    TrafficSelector,
    Transform,
    TransformType,
    TSi,
    TSr,
    UnknownPayload,
)

MSG = Message(
    bytes.fromhex("0102030405060708"),
    bytes.fromhex("1112131415161718"),
    ExchangeType.CREATE_CHILD_SA,
    0x28,
    5,
    [
        SA(
            [
                Proposal(
                    1,
                    ProtocolId.ESP,
                    b"\xde\xad\xbe\xef",
                    [
                        Transform(TransformType.ENCR, EncrId.AES_GCM_16, 128),
                        Transform(TransformType.ESN, 0),
                    ],
                )
            ]
        ),
        IDi(IdType.DER_ASN1_DN, b"\x30\x00"),
        IDr(IdType.IPV6_ADDR, IPv6Address("2001:db8::9").packed),
        AUTH(AuthMethod.PSK, b"\xaa" * 40),
        CERTREQ(CertEncoding.X509_SIGNATURE, b"\x01" * 20),
        Notify(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\x01\x02\x03\x04"),
        Notify(NotifyType(40000), b"\x09", critical=True),
        Delete(ProtocolId.ESP, [b"\xaa\xbb\xcc\xdd"]),
        TSi([TrafficSelector(IPv4Address("10.0.0.0"), IPv4Address("10.0.0.255"), 6, 80, 88)]),
        TSr([TrafficSelector(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.5"))]),
        CP(CfgType.CFG_REPLY, [ConfigAttribute(CfgAttr.INTERNAL_IP4_NETMASK, bytes((255,) * 4))]),
        EAP(bytes((2, 9, 0, 6, 1, 0x41))),
        UnknownPayload(200, b"\x77\x88"),
    ],
)


def test_text(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--hex", MSG.encode().hex()]) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[1] == "  CREATE_CHILD_SA response 5 [ SA IDi IDr AUTH CERTREQ N(REKEY_SA) "
        "N(UNKNOWN_40000) DELETE TSi TSr CP EAP UNKNOWN_200 ]"
    )
    assert "flags 0x28 (I,R)  message id 5" in out[2]
    body = out[3:]
    assert body == [
        "  SA",
        "    proposal 1 ESP SPI deadbeef",
        "      ENCR  AES_GCM_16 key length 128",
        "      ESN   NO_ESN",
        "  IDi DER_ASN1_DN 3000",
        "  IDr IPV6_ADDR 2001:db8::9",
        "  AUTH PSK " + "aa" * 32 + "... (40 octets)",
        "  CERTREQ X509_SIGNATURE " + "01" * 20,
        "  N(REKEY_SA) protocol ESP SPI 01020304",
        "  N(UNKNOWN_40000) data 09 (critical)",
        "  DELETE ESP aabbccdd",
        "  TSi",
        "    10.0.0.0/24[6/80-88]",
        "  TSr",
        "    10.0.0.1..10.0.0.5",
        "  CP CFG_REPLY",
        "    INTERNAL_IP4_NETMASK 255.255.255.255",
        "  EAP Response id 9 (6 octets)",
        "  UNKNOWN_200 7788",
    ]


def test_full_hex(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--full", "--hex", MSG.encode().hex()]) == 0
    assert "  AUTH PSK " + "aa" * 40 + "\n" in capsys.readouterr().out


def test_json_has_the_same_content(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", "--json", "--hex", MSG.encode().hex()]) == 0
    obj = json.loads(capsys.readouterr().out)
    p = {v["type"]: v for v in obj["payloads"]}
    assert obj["header"]["flags_text"] == ["I", "R"]
    assert p["SA"]["proposals"][0]["spi"] == "deadbeef"
    assert p["IDr"]["id"] == "2001:db8::9"
    assert p["AUTH"]["data"] == "aa" * 40
    assert p["TSi"]["selectors"] == [
        {
            "ts_type": "IPV4_ADDR_RANGE",
            "protocol": 6,
            "start_port": 80,
            "end_port": 88,
            "start": "10.0.0.0",
            "end": "10.0.0.255",
            "text": "10.0.0.0/24[6/80-88]",
        }
    ]
    assert p["CP"]["attributes"][0]["text"] == "255.255.255.255"
    assert p["EAP"] == {
        "type": "EAP",
        "type_number": 48,
        "critical": False,
        "code": "Response",
        "identifier": 9,
        "length": 6,
        "eap_type": 1,
        "data": "020900060141",
    }
    assert p["UNKNOWN_200"]["data"] == "7788"
    notifies = [v for v in obj["payloads"] if v["type"] == "NOTIFY"]
    assert notifies[1] == {
        "type": "NOTIFY",
        "type_number": 41,
        "critical": True,
        "notify": "UNKNOWN_40000",
        "notify_type": 40000,
        "protocol": "NONE",
        "spi": "",
        "data": "09",
    }
