"""Hypothesis strategies for well-formed IKEv2 messages.

"Well-formed" here means canonical as well: every object the strategies build
is the one the decoder gives back for its encoding (reserved bits zero, the
key length as a transform's first attribute, a Delete's SPI size omitted when
it is the protocol's default), so ``decode(encode(m)) == m`` is a fair test.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

from hypothesis import strategies as st

from quickike.wire import (
    AUTH,
    CERT,
    CERTREQ,
    CP,
    EAP,
    KE,
    SA,
    Attribute,
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    ConfigAttribute,
    Delete,
    DhGroup,
    Encrypted,
    EncryptedFragment,
    ExchangeType,
    IDi,
    IDr,
    IdType,
    Message,
    Nonce,
    Notify,
    NotifyType,
    Payload,
    Proposal,
    ProtocolId,
    TrafficSelector,
    Transform,
    TransformType,
    TSi,
    TSr,
    UnknownPayload,
    UnknownSelector,
    VendorId,
)
from quickike.wire.payloads import REGISTRY

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=40)
critical = st.booleans()

#: payload type numbers the codec does not know and that do not end a chain
UNKNOWN_TYPES = sorted(set(range(1, 256)) - set(REGISTRY) - {46, 53})


def open_enum(enum: type, bits: int = 8) -> st.SearchStrategy:
    """Known members most of the time, any number of the field's width sometimes."""
    return st.one_of(st.sampled_from(list(enum)), st.integers(0, (1 << bits) - 1).map(enum))


def attributes() -> st.SearchStrategy[Attribute]:
    tv = st.builds(Attribute, st.integers(0, 0x7FFF), u16)
    tlv = st.builds(Attribute, st.integers(0, 0x7FFF), st.binary(max_size=12))
    return st.one_of(tv, tlv)


@st.composite
def transforms(draw: st.DrawFn) -> Transform:
    ttype = draw(open_enum(TransformType))
    key_length = draw(st.one_of(st.none(), st.sampled_from([128, 192, 256]), u16))
    attrs = draw(st.lists(attributes(), max_size=2))
    if key_length is None and attrs and isinstance(attrs[0].value, int) and attrs[0].type == 14:
        # a leading TV key length attribute *is* the key_length field
        key_length, attrs = attrs[0].value, attrs[1:]
    return Transform(ttype, draw(u16), key_length, attrs)


proposals = st.builds(
    Proposal,
    st.integers(1, 255),
    open_enum(ProtocolId),
    st.sampled_from([b"", b"\x01\x02\x03\x04", bytes(range(8))]),
    st.lists(transforms(), max_size=5),
)

sa = st.builds(SA, st.lists(proposals, min_size=1, max_size=3), critical=critical)
ke = st.builds(KE, open_enum(DhGroup, 16), st.binary(max_size=64), critical=critical)


@st.composite
def id_data(draw: st.DrawFn) -> tuple[IdType, bytes]:
    id_type = draw(open_enum(IdType))
    if id_type == IdType.IPV4_ADDR:
        return id_type, draw(st.binary(min_size=4, max_size=4))
    if id_type == IdType.IPV6_ADDR:
        return id_type, draw(st.binary(min_size=16, max_size=16))
    if id_type in (IdType.FQDN, IdType.RFC822_ADDR):
        text = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789.-@", min_size=1, max_size=30))
        return id_type, text.encode()
    return id_type, draw(small_bytes)


idi = id_data().map(lambda t: IDi(*t))
idr = id_data().map(lambda t: IDr(*t))
cert = st.builds(CERT, open_enum(CertEncoding), small_bytes, critical=critical)
certreq = st.builds(CERTREQ, open_enum(CertEncoding), small_bytes, critical=critical)
auth = st.builds(AUTH, open_enum(AuthMethod), small_bytes, critical=critical)
nonce = st.builds(Nonce, st.binary(min_size=16, max_size=64), critical=critical)
notify = st.builds(
    Notify,
    open_enum(NotifyType, 16),
    small_bytes,
    open_enum(ProtocolId),
    st.sampled_from([b"", b"\xaa\xbb\xcc\xdd", bytes(8)]),
    critical=critical,
)


@st.composite
def deletes(draw: st.DrawFn) -> Delete:
    proto = draw(open_enum(ProtocolId))
    default = 0 if proto == ProtocolId.IKE else 4
    size = draw(st.sampled_from([default, default, 4, 8]))
    count = draw(st.integers(0, 4)) if size else 0
    spis = [draw(st.binary(min_size=size, max_size=size)) for _ in range(count)]
    return Delete(proto, spis, None if size == default else size, critical=draw(critical))


vendor = st.builds(VendorId, small_bytes, critical=critical)

ipv4 = st.builds(IPv4Address, u32)
ipv6 = st.builds(IPv6Address, st.integers(0, (1 << 128) - 1))
selector = st.one_of(
    st.builds(TrafficSelector, ipv4, ipv4, u8, u16, u16),
    st.builds(TrafficSelector, ipv6, ipv6, u8, u16, u16),
    st.builds(
        UnknownSelector,
        st.integers(0, 255).filter(lambda t: t not in (7, 8)),
        u8,
        u16,
        u16,
        small_bytes,
    ),
)
tsi = st.builds(TSi, st.lists(selector, max_size=4), critical=critical)
tsr = st.builds(TSr, st.lists(selector, max_size=4), critical=critical)
cp = st.builds(
    CP,
    open_enum(CfgType),
    st.lists(st.builds(ConfigAttribute, open_enum(CfgAttr, 15), small_bytes), max_size=4),
    critical=critical,
)


@st.composite
def eaps(draw: st.DrawFn) -> EAP:
    body = draw(st.binary(max_size=20))
    data = bytes([draw(st.integers(1, 4)), draw(u8)]) + (4 + len(body)).to_bytes(2, "big") + body
    return EAP(data, critical=draw(critical))


unknown = st.builds(
    UnknownPayload, st.sampled_from(UNKNOWN_TYPES), small_bytes, critical=st.just(False)
)

plain_payload: st.SearchStrategy[Payload] = st.one_of(
    sa,
    ke,
    idi,
    idr,
    cert,
    certreq,
    auth,
    nonce,
    notify,
    deletes(),
    vendor,
    tsi,
    tsr,
    cp,
    eaps(),
    unknown,
)

inner_type = st.sampled_from([0, *sorted(REGISTRY)])
encrypted = st.builds(Encrypted, inner_type, st.binary(min_size=0, max_size=60), critical=critical)


@st.composite
def fragments(draw: st.DrawFn) -> EncryptedFragment:
    total = draw(st.integers(1, 0xFFFF))
    number = draw(st.integers(1, total))
    return EncryptedFragment(
        draw(inner_type) if number == 1 else 0,
        number,
        total,
        draw(small_bytes),
        critical=draw(critical),
    )


payload_chains = st.builds(
    lambda body, tail: body + tail,
    st.lists(plain_payload, max_size=6),
    st.one_of(st.just([]), encrypted.map(lambda p: [p]), fragments().map(lambda p: [p])),
)

messages = st.builds(
    Message,
    st.binary(min_size=8, max_size=8),
    st.binary(min_size=8, max_size=8),
    open_enum(ExchangeType),
    u8,
    u32,
    payload_chains,
    minor=st.integers(0, 15),
)
