"""Identities (strongSwan's ID syntax and matching), addresses and traffic selectors."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from quickike.control.config import parse_address_spec, parse_identity, parse_traffic_selector
from quickike.engine.config import (
    ID_ANY,
    AddrKind,
    Identity,
    IdMatch,
    IkeSecret,
    Secrets,
    TrafficSelectorConfig,
)
from quickike.wire.enums import IdType


def ident(text: str) -> Identity:
    result, warning = parse_identity(text)
    assert warning is None, warning
    return result


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "id_type", "data"),
    [
        ("192.168.0.1", IdType.IPV4_ADDR, bytes([192, 168, 0, 1])),
        ("fec0::1", IdType.IPV6_ADDR, ipaddress.IPv6Address("fec0::1").packed),
        ("moon.strongswan.org", IdType.FQDN, b"moon.strongswan.org"),
        ("@moon.strongswan.org", IdType.FQDN, b"moon.strongswan.org"),
        ("gateway", IdType.FQDN, b"gateway"),
        ("carol@strongswan.org", IdType.RFC822_ADDR, b"carol@strongswan.org"),
        ("@@carol@strongswan.org", IdType.RFC822_ADDR, b"carol@strongswan.org"),
        ("@#0a0b0c", IdType.KEY_ID, b"\x0a\x0b\x0c"),
        ("keyid:#cafe", IdType.KEY_ID, b"\xca\xfe"),
        ("keyid:plain", IdType.KEY_ID, b"plain"),
        ("fqdn:192.168.0.1", IdType.FQDN, b"192.168.0.1"),
        ("ipv4:#c0a80001", IdType.IPV4_ADDR, b"\xc0\xa8\x00\x01"),
        ("email:x@y", IdType.RFC822_ADDR, b"x@y"),
        ("{11}:#01ff", IdType.KEY_ID, b"\x01\xff"),
    ],
)
def test_identity_types(text: str, id_type: IdType, data: bytes) -> None:
    result = ident(text)
    assert (result.id_type, result.data) == (id_type, data)
    assert result.text == text


@pytest.mark.parametrize("text", ["%any", "%any6", "*", "0.0.0.0", "::", ""])
def test_any_identities(text: str) -> None:
    result = ident(text)
    assert result.is_any and result.id_type == ID_ANY


def test_dn_is_der_encoded_in_written_order() -> None:
    result = ident("C=CH, O=strongSwan Project, CN=moon.strongswan.org")
    assert result.id_type == IdType.DER_ASN1_DN
    # RFC 4514 strings list the last RDN first
    name = x509.Name.from_rfc4514_string("CN=moon.strongswan.org,O=strongSwan Project,C=CH")
    assert name.rdns[0].get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "CH"
    assert result.data == name.public_bytes()


def test_dn_slash_form_and_strongswan_attribute_names() -> None:
    slash = ident("/C=CH/O=strongSwan/CN=moon")
    comma = ident("c=CH,  o=strongSwan ,CN = moon")
    assert slash == comma
    # strongSwan's SN is serialNumber (S is the surname)
    expected = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SERIAL_NUMBER, "1234")]),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SURNAME, "Doe")]),
        ]
    )
    assert ident("SN=1234, S=Doe").data == expected.public_bytes()
    assert ident("E=carol@strongswan.org, CN=carol").id_type == IdType.DER_ASN1_DN


def test_unknown_dn_attribute_falls_back_to_key_id_with_warning() -> None:
    result, warning = parse_identity("XX=foo, CN=bar")
    assert result.id_type == IdType.KEY_ID and result.data == b"XX=foo, CN=bar"
    assert warning is not None and "XX" in warning


def test_impossible_dn_value_is_an_error() -> None:
    with pytest.raises(ValueError, match="C=CHE"):
        parse_identity("C=CHE, CN=x")


def test_bad_hex_is_an_error() -> None:
    with pytest.raises(ValueError, match="hex"):
        parse_identity("@#zz")


def test_identity_equality_ignores_text() -> None:
    assert ident("@moon.strongswan.org") == ident("moon.strongswan.org")
    assert hash(ident("@moon.strongswan.org")) == hash(ident("moon.strongswan.org"))


# -- matching ----------------------------------------------------------------------------


def test_any_matches_everything() -> None:
    assert Identity.any().match(ident("moon")) == IdMatch.ANY
    assert Identity.any().matches(ident("C=CH, CN=x"))


def test_fqdn_and_email_match_case_insensitively_with_leading_wildcard() -> None:
    assert ident("Moon.StrongSwan.org").match(ident("moon.strongswan.org")) == IdMatch.PERFECT
    assert ident("*.strongswan.org").match(ident("moon.strongswan.org")) == IdMatch.WILDCARD
    assert not ident("*.strongswan.org").matches(ident("moon.example.org"))
    assert ident("*@strongswan.org").match(ident("carol@strongswan.org")) == IdMatch.WILDCARD
    assert not ident("moon").matches(ident("carol@moon"))  # type differs


def test_dn_matching_with_wildcards_and_string_types() -> None:
    pattern = ident("C=CH, O=strongSwan, CN=*")
    assert pattern.has_wildcards
    assert pattern.match(ident("C=CH, O=strongSwan, CN=carol")) == IdMatch.WILDCARD
    assert not pattern.matches(ident("C=CH, O=other, CN=carol"))
    assert not pattern.matches(ident("C=CH, O=strongSwan"))
    # a certificate subject encoded with PrintableString still matches
    printable = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "CH")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(
                        NameOID.COMMON_NAME, "moon", _type=x509.name._ASN1Type.PrintableString
                    )
                ]
            ),
        ]
    ).public_bytes()
    received = Identity(IdType.DER_ASN1_DN, printable)
    assert ident("C=CH, CN=moon").match(received) == IdMatch.PERFECT
    assert not ident("C=CH, CN=Moon").matches(received)  # UTF8 vs Printable: exact bytes


def test_address_patterns_for_remote_ids() -> None:
    subnet = ident("10.0.0.0/8")
    assert subnet.match(ident("10.1.2.3")) == IdMatch.WILDCARD
    assert not subnet.matches(ident("11.0.0.1"))
    span = ident("10.0.0.1-10.0.0.9")
    assert span.matches(ident("10.0.0.5")) and not span.matches(ident("10.0.0.10"))
    assert ident("192.168.0.1").match(ident("192.168.0.1")) == IdMatch.PERFECT


def test_from_address() -> None:
    assert Identity.from_address(ipaddress.ip_address("192.0.2.1")) == ident("192.0.2.1")


def test_psk_lookup_prefers_the_best_match() -> None:
    moon, sun = ident("moon.strongswan.org"), ident("sun.strongswan.org")
    secrets = Secrets(
        (
            IkeSecret("wild", (), b"any"),
            IkeSecret("pair", (moon, sun), b"pair"),
            IkeSecret("sun-only", (sun,), b"sun"),
        )
    )
    assert secrets.psk(moon, sun) == b"pair"
    assert secrets.psk(ident("other"), sun) == b"pair"  # first of the equally good ones
    assert secrets.psk(ident("a"), ident("b")) == b"any"
    assert Secrets((IkeSecret("x", (moon,), b"m"),)).psk(ident("a"), ident("b")) is None
    assert "b'pair'" not in repr(secrets)


# -- addresses and selectors -------------------------------------------------------------


def test_address_specs() -> None:
    assert parse_address_spec("%any").kind == AddrKind.ANY
    any6 = parse_address_spec("%any6")
    assert any6.contains(ipaddress.ip_address("::1")) and not any6.contains(
        ipaddress.ip_address("1.2.3.4")
    )
    host = parse_address_spec("192.168.0.2")
    assert host.kind == AddrKind.ADDRESS and host.is_concrete
    net = parse_address_spec("10.0.0.0/8")
    assert net.kind == AddrKind.SUBNET and net.contains(ipaddress.ip_address("10.9.9.9"))
    span = parse_address_spec("10.0.0.1-10.0.0.9")
    assert span.kind == AddrKind.RANGE and not span.is_concrete
    dns = parse_address_spec("vpn-gw.example.org")
    assert dns.kind == AddrKind.DNS and dns.text == "vpn-gw.example.org" and dns.is_concrete
    assert parse_address_spec("fec0::1").start == ipaddress.ip_address("fec0::1")
    for bad in ("10.0.0.0/33", "a b", "10.0.0.9-10.0.0.1", "1.2.3.4-::1"):
        with pytest.raises(ValueError):
            parse_address_spec(bad)


def test_traffic_selectors() -> None:
    net = parse_traffic_selector("10.1.0.0/16")
    assert (net.dynamic, str(net.start), str(net.end), net.protocol) == (
        False,
        "10.1.0.0",
        "10.1.255.255",
        0,
    )
    assert (net.start_port, net.end_port) == (0, 65535)
    span = parse_traffic_selector("10.1.0.1-10.1.0.9")
    assert (str(span.start), str(span.end)) == ("10.1.0.1", "10.1.0.9")
    host = parse_traffic_selector("192.168.0.1")
    assert host.start == host.end
    web = parse_traffic_selector("10.1.0.0/16[tcp/80]")
    assert (web.protocol, web.start_port, web.end_port) == (6, 80, 80)
    udp = parse_traffic_selector("[udp]")
    assert udp.dynamic and udp.protocol == 17 and (udp.start_port, udp.end_port) == (0, 65535)
    l2tp = parse_traffic_selector("dynamic[udp/l2tp]")
    assert l2tp.dynamic and (l2tp.protocol, l2tp.start_port) == (17, 1701)
    ports = parse_traffic_selector("0.0.0.0/0[6/1024-2048]")
    assert (ports.protocol, ports.start_port, ports.end_port) == (6, 1024, 2048)
    v6 = parse_traffic_selector("fec1::/16[icmpv6/128]")
    assert (
        v6.version == 6
        and v6.protocol == 58
        and (v6.start_port, v6.end_port) == (128 << 8, (128 << 8) | 0xFF)
    )
    opaque = parse_traffic_selector("10.0.0.0/8[any/opaque]")
    assert opaque.is_opaque
    anyproto = parse_traffic_selector("10.0.0.0/8[any/any]")
    assert (anyproto.protocol, anyproto.start_port, anyproto.end_port) == (0, 0, 65535)
    assert parse_traffic_selector("dynamic") == TrafficSelectorConfig.dynamic_any()


@pytest.mark.parametrize(
    "text",
    [
        "10.1.0.0/33",
        "10.1.0.0/16[tcp",
        "10.1.0.0/16[nosuchproto]",
        "[tcp/70000]",
        "[tcp/90-80]",
        "[300]",
        "moon",
        "[tcp/nosuchservice-xyz]",
        "10.0.0.9-10.0.0.1",
    ],
)
def test_bad_traffic_selectors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_traffic_selector(text)


def test_dynamic_selector_binds_to_outer_address() -> None:
    ts = parse_traffic_selector("dynamic[tcp/22]")
    bound = ts.bind(ipaddress.ip_address("192.0.2.7"))
    assert not bound.dynamic and bound.start == bound.end == ipaddress.ip_address("192.0.2.7")
    assert (bound.protocol, bound.start_port, bound.end_port) == (6, 22, 22)
    assert bound.contains(ipaddress.ip_address("192.0.2.7"), 6, 22)
    assert not bound.contains(ipaddress.ip_address("192.0.2.7"), 6, 23)
    assert parse_traffic_selector("10.0.0.0/8").bind(ipaddress.ip_address("1.1.1.1")).start == (
        ipaddress.ip_address("10.0.0.0")
    )
