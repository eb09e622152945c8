"""strongSwan's identity strings turned into :class:`~quickike.engine.config.Identity`.

The type is guessed the way charon's ``identification_create_from_string``
does, so ``id = moon.strongswan.org`` means ID_FQDN here exactly as it does on
a strongSwan peer:

* ``ipv4:`` ``ipv6:`` ``rfc822:``/``email:``/``userfqdn:`` ``fqdn:``/``dns:``
  ``asn1dn:`` ``asn1gn:`` ``keyid:`` force a type (``prefix:#hex`` for raw
  bytes); ``{N}:`` forces type number N;
* anything with ``=`` is a Distinguished Name (``C=CH, O=strongSwan, CN=moon``
  or ``/C=CH/O=...``), DER-encoded here with ``cryptography``; an unknown
  attribute makes charon fall back to ID_KEY_ID of the text, and so do we
  (with a warning);
* ``%any``, ``%any6``, ``*``, ``0.0.0.0``, ``::`` and the empty string are
  the wildcard;
* an IPv4/IPv6 address is ID_IPV4_ADDR/ID_IPV6_ADDR; ``net/len`` and
  ``a-b`` are the subnet/range patterns charon accepts for remote ids;
* ``@#hex`` is ID_KEY_ID, ``@@user@host`` ID_RFC822_ADDR, ``@name`` ID_FQDN;
  ``user@domain`` is ID_RFC822_ADDR; any other text is ID_FQDN (charon does
  not require a dot).
"""

from __future__ import annotations

import ipaddress

from cryptography import x509
from cryptography.x509.oid import NameOID

from quickike.engine.config import (
    ID_ANY,
    ID_IPV4_ADDR_RANGE,
    ID_IPV4_ADDR_SUBNET,
    ID_IPV6_ADDR_RANGE,
    ID_IPV6_ADDR_SUBNET,
    Identity,
)
from quickike.wire.enums import IdType

_PREFIXES: tuple[tuple[str, IdType], ...] = (
    ("ipv4:", IdType.IPV4_ADDR),
    ("ipv6:", IdType.IPV6_ADDR),
    ("ipv4net:", ID_IPV4_ADDR_SUBNET),
    ("ipv6net:", ID_IPV6_ADDR_SUBNET),
    ("ipv4range:", ID_IPV4_ADDR_RANGE),
    ("ipv6range:", ID_IPV6_ADDR_RANGE),
    ("rfc822:", IdType.RFC822_ADDR),
    ("email:", IdType.RFC822_ADDR),
    ("userfqdn:", IdType.RFC822_ADDR),
    ("fqdn:", IdType.FQDN),
    ("dns:", IdType.FQDN),
    ("asn1dn:", IdType.DER_ASN1_DN),
    ("asn1gn:", IdType.DER_ASN1_GN),
    ("keyid:", IdType.KEY_ID),
)

_ANY_TEXTS = frozenset({"", "%any", "%any6", "0.0.0.0", "*", "::", "0::0"})

_OID = x509.ObjectIdentifier
#: charon's attribute names (matched case-insensitively), see its x501rdns table
_DN_ATTRIBUTES: dict[str, x509.ObjectIdentifier] = {
    "uid": NameOID.USER_ID,
    "dc": NameOID.DOMAIN_COMPONENT,
    "cn": NameOID.COMMON_NAME,
    "s": NameOID.SURNAME,
    "sn": NameOID.SERIAL_NUMBER,
    "serialnumber": NameOID.SERIAL_NUMBER,
    "c": NameOID.COUNTRY_NAME,
    "l": NameOID.LOCALITY_NAME,
    "st": NameOID.STATE_OR_PROVINCE_NAME,
    "street": NameOID.STREET_ADDRESS,
    "o": NameOID.ORGANIZATION_NAME,
    "ou": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "t": NameOID.TITLE,
    "d": _OID("2.5.4.13"),
    "postaladdress": _OID("2.5.4.16"),
    "postalcode": NameOID.POSTAL_CODE,
    "n": _OID("2.5.4.41"),
    "g": NameOID.GIVEN_NAME,
    "i": _OID("2.5.4.43"),
    "dnqualifier": NameOID.DN_QUALIFIER,
    "dmdname": _OID("2.5.4.54"),
    "pseudonym": NameOID.PSEUDONYM,
    "id": _OID("2.5.4.45"),
    "en": _OID("2.16.840.1.113730.3.1.3"),
    "employeenumber": _OID("2.16.840.1.113730.3.1.3"),
    "e": NameOID.EMAIL_ADDRESS,
    "email": NameOID.EMAIL_ADDRESS,
    "emailaddress": NameOID.EMAIL_ADDRESS,
    "un": _OID("1.2.840.113549.1.9.2"),
    "unstructuredname": _OID("1.2.840.113549.1.9.2"),
    "ua": _OID("1.2.840.113549.1.9.8"),
    "unstructuredaddress": _OID("1.2.840.113549.1.9.8"),
}


class UnknownDnAttribute(ValueError):
    """A DN attribute name charon would not know either."""


def parse_identity(text: str) -> tuple[Identity, str | None]:
    """The identity for ``text`` and, if something looks off, a warning to show.

    Raises ``ValueError`` only for text charon would reject too (bad hex,
    impossible DN values).
    """
    s = text.strip()
    lowered = s.lower()
    for prefix, id_type in _PREFIXES:
        if lowered.startswith(prefix):
            return _typed(id_type, s[len(prefix) :], s), None
    numeric = _numeric_prefix(s)
    if numeric is not None:
        return numeric, None
    if "=" in s:
        try:
            return Identity(IdType.DER_ASN1_DN, encode_dn(s), s), None
        except UnknownDnAttribute as exc:
            warning = f"{exc}; the identity is used as ID_KEY_ID, as strongSwan does"
            return Identity(IdType.KEY_ID, s.encode("utf-8"), s), warning
    if "@" not in s:
        if s in _ANY_TEXTS:
            return Identity(ID_ANY, b"", "%any"), None
        if ":" not in s:
            ident = _ip_identity(s, 4)
            if ident is not None:
                return ident, None
            return Identity(IdType.FQDN, s.encode("utf-8"), s), None
        ident = _ip_identity(s, 6)
        if ident is not None:
            return ident, None
        return Identity(IdType.KEY_ID, s.encode("utf-8"), s), (
            f"'{s}' is neither an IPv6 address nor a name; used as ID_KEY_ID, as strongSwan does"
        )
    if s.startswith("@#"):
        return Identity(IdType.KEY_ID, _hex(s[2:]), s), None
    if s.startswith("@@"):
        return Identity(IdType.RFC822_ADDR, s[2:].encode("utf-8"), s), None
    if s.startswith("@"):
        empty = "empty FQDN identity '@' (a '#' starts a comment: quote values containing it)"
        return Identity(IdType.FQDN, s[1:].encode("utf-8"), s), empty if s == "@" else None
    return Identity(IdType.RFC822_ADDR, s.encode("utf-8"), s), None


def _typed(id_type: IdType, rest: str, text: str) -> Identity:
    data = _hex(rest[1:]) if rest.startswith("#") else rest.encode("utf-8")
    return Identity(id_type, data, text)


def _numeric_prefix(s: str) -> Identity | None:
    if not s.startswith("{"):
        return None
    close = s.find("}:")
    if close < 0:
        return None
    try:
        number = int(s[1:close], 0)
    except ValueError:
        return None
    if not 0 <= number <= 255:
        raise ValueError(f"identity type {number} is out of range")
    return _typed(IdType(number), s[close + 2 :], s)


def _hex(digits: str) -> bytes:
    clean = "".join(digits.split()).replace(":", "")
    if len(clean) % 2:
        clean = "0" + clean
    try:
        return bytes.fromhex(clean)
    except ValueError:
        raise ValueError(f"'{digits}' is not valid hex") from None


def _ip_identity(s: str, version: int) -> Identity | None:
    addr_cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    try:
        if "/" in s:
            net = ipaddress.ip_network(s, strict=False)
            if net.version != version:
                return None
            id_type = ID_IPV4_ADDR_SUBNET if version == 4 else ID_IPV6_ADDR_SUBNET
            return Identity(id_type, net.network_address.packed + net.netmask.packed, s)
        if "-" in s:
            low_text, high_text = s.split("-", 1)
            low, high = addr_cls(low_text), addr_cls(high_text)
            if int(low) > int(high):
                return None
            id_type = ID_IPV4_ADDR_RANGE if version == 4 else ID_IPV6_ADDR_RANGE
            return Identity(id_type, low.packed + high.packed, s)
        addr = addr_cls(s)
    except ValueError:
        return None
    id_type = IdType.IPV4_ADDR if version == 4 else IdType.IPV6_ADDR
    return Identity(id_type, addr.packed, s)


def encode_dn(text: str) -> bytes:
    """DER of a DN written ``C=CH, O=strongSwan, CN=moon`` (or ``/C=CH/O=...``).

    RDNs keep the written order (charon's order, not RFC 4514's reversed one).
    """
    body = text.strip()
    separator = ","
    if body.startswith("/"):
        separator = "/"
        body = body[1:]
    rdns: list[x509.RelativeDistinguishedName] = []
    for part in body.split(separator):
        if not part.strip():
            raise ValueError(f"empty attribute in distinguished name '{text}'")
        name, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"'{part.strip()}' in distinguished name '{text}' lacks '='")
        oid = _DN_ATTRIBUTES.get(name.strip().lower())
        if oid is None:
            raise UnknownDnAttribute(f"unknown distinguished name attribute '{name.strip()}'")
        value = value.lstrip(" =").rstrip(" ")
        try:
            attribute = x509.NameAttribute(oid, value)
        except ValueError as exc:
            raise ValueError(f"'{part.strip()}': {exc}") from None
        rdns.append(x509.RelativeDistinguishedName([attribute]))
    try:
        return x509.Name(rdns).public_bytes()
    except ValueError as exc:  # pragma: no cover - cryptography validated each attribute
        raise ValueError(str(exc)) from None
