"""One class per IKEv2 payload (RFC 7296 §3.3-3.16, RFC 7383 §2.5).

Each class knows only its own body: ``encode_body()`` and ``decode_body()``.
The generic payload header (next type, critical bit, length) and the chaining
live in :mod:`quickike.wire.message`, so every length is computed in one
place on encode and checked in one place on decode.

Classes are slotted dataclasses because an established SA keeps some of them
(nonces, IDs, selectors) for its whole life.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import ClassVar

from .enums import (
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    DhGroup,
    EncrId,
    EsnId,
    IdType,
    IntegId,
    NotifyType,
    OpenIntEnum,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
)
from .errors import CodecError

Buffer = bytes | memoryview

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_KE_HDR = struct.Struct("!HH")
_PROPOSAL_HDR = struct.Struct("!BBHBBBB")
_TRANSFORM_HDR = struct.Struct("!BBHBBH")
_TRANSFORM_KL = struct.Struct("!BBHBBHHH")  # a transform whose only attribute is a Key Length
_TS_HDR = struct.Struct("!BBHHH")
_NOTIFY_HDR = struct.Struct("!BBH")
_DELETE_HDR = struct.Struct("!BBH")
_SKF_HDR = struct.Struct("!HH")
_ATTR_TV = 0x8000
_KEY_LENGTH_TV = _ATTR_TV | TransformAttr.KEY_LENGTH
# value -> member maps of the enums decoded per transform: a dict lookup is several times
# cheaper than Enum.__call__; unknown values still go through the enum (and become members).
_TRANSFORM_TYPES: dict[int, TransformType] = {int(m): m for m in TransformType}
_PROTOCOLS: dict[int, ProtocolId] = {int(m): m for m in ProtocolId}
_NOTIFY_TYPES: dict[int, NotifyType] = {int(m): m for m in NotifyType}
# members read per identity / selector as module constants: ``EnumClass.MEMBER`` goes through
# EnumType's attribute hook and costs several times a global lookup
_ID_IPV4, _ID_IPV6, _ID_FQDN, _ID_RFC822, _ID_KEY = (
    IdType.IPV4_ADDR, IdType.IPV6_ADDR, IdType.FQDN, IdType.RFC822_ADDR, IdType.KEY_ID
)
_TS_V4, _TS_V6 = TsType.IPV4_ADDR_RANGE, TsType.IPV6_ADDR_RANGE


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise CodecError(what)


@dataclass(slots=True)
class Payload:
    """Base of all payloads; ``critical`` is the generic header's C bit."""

    ptype: ClassVar[PayloadType] = PayloadType.NONE
    critical: bool = field(default=False, kw_only=True)

    @property
    def payload_type(self) -> int:
        return int(self.ptype)

    def encode_body(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def decode_body(cls, body: Buffer) -> Payload:
        raise NotImplementedError


# ---------------------------------------------------------------- SA (§3.3)


@dataclass(slots=True)
class Attribute:
    """A transform attribute: TV form when ``value`` is an int, TLV when bytes."""

    type: int
    value: int | bytes


@dataclass(slots=True)
class Transform:
    type: TransformType
    id: int
    key_length: int | None = None
    attributes: list[Attribute] = field(default_factory=list)

    @property
    def named_id(self) -> OpenIntEnum:
        """The id as the enum of its transform type (for printing)."""
        enum = _TRANSFORM_ID_ENUMS.get(int(self.type))
        return enum(self.id) if enum else ProtocolId(self.id)

    def encode(self, last: bool) -> bytes:
        # Fast path for the two shapes nearly every transform has (every offer and answer
        # encodes several): one pack call instead of building and joining attribute parts.
        if not self.attributes:
            if self.key_length is None:
                return _TRANSFORM_HDR.pack(0 if last else 3, 0, 8, self.type, 0, self.id)
            return _TRANSFORM_KL.pack(
                0 if last else 3, 0, 12, self.type, 0, self.id, _KEY_LENGTH_TV, self.key_length
            )
        attrs = []
        if self.key_length is not None:
            attrs.append(_U16.pack(_KEY_LENGTH_TV) + _U16.pack(self.key_length))
        for a in self.attributes:
            if isinstance(a.value, int):
                attrs.append(_U16.pack(_ATTR_TV | a.type) + _U16.pack(a.value))
            else:
                attrs.append(_U16.pack(a.type & 0x7FFF) + _U16.pack(len(a.value)) + a.value)
        body = b"".join(attrs)
        return _TRANSFORM_HDR.pack(0 if last else 3, 0, 8 + len(body), self.type, 0, self.id) + body

    @classmethod
    def decode(cls, data: Buffer, off: int, end: int) -> tuple[Transform, bool, int]:
        # Hot path (every SA of every IKE_SA_INIT/IKE_AUTH/CREATE_CHILD_SA): plain ifs instead
        # of _need() so no f-string is built unless it is raised, and a fast path for the two
        # shapes nearly every transform has (no attribute, or only a Key Length).
        if end - off < 8:
            raise CodecError("transform header truncated")
        last, _, length, ttype, _, tid = _TRANSFORM_HDR.unpack_from(data, off)
        if last != 0 and last != 3:
            raise CodecError(f"transform last-substructure field is {last}")
        if length < 8 or length > end - off:
            raise CodecError(f"transform length {length} out of bounds")
        tt = _TRANSFORM_TYPES.get(ttype)
        if tt is None:
            tt = TransformType(ttype)
        if length == 8:
            return cls(tt, tid), last == 3, off + 8
        pos, tend = off + 8, off + length
        if length == 12 and _U16.unpack_from(data, pos)[0] == _KEY_LENGTH_TV:
            return cls(tt, tid, _U16.unpack_from(data, pos + 2)[0]), last == 3, tend
        t = cls(tt, tid)
        while pos < tend:
            _need(tend - pos >= 4, "transform attribute truncated")
            atype, alen = _U16.unpack_from(data, pos)[0], _U16.unpack_from(data, pos + 2)[0]
            if atype & _ATTR_TV:
                atype &= 0x7FFF
                if atype == TransformAttr.KEY_LENGTH and t.key_length is None and not t.attributes:
                    t.key_length = alen
                else:
                    t.attributes.append(Attribute(atype, alen))
                pos += 4
            else:
                _need(tend - pos - 4 >= alen, "transform attribute value truncated")
                t.attributes.append(Attribute(atype, bytes(data[pos + 4 : pos + 4 + alen])))
                pos += 4 + alen
        return t, last == 3, tend


_TRANSFORM_ID_ENUMS: dict[int, type[OpenIntEnum]] = {
    TransformType.ENCR: EncrId,
    TransformType.PRF: PrfId,
    TransformType.INTEG: IntegId,
    TransformType.DH: DhGroup,
    TransformType.ESN: EsnId,
}


@dataclass(slots=True)
class Proposal:
    number: int
    protocol: ProtocolId
    spi: bytes = b""
    transforms: list[Transform] = field(default_factory=list)

    def transforms_of(self, ttype: TransformType) -> list[Transform]:
        return [t for t in self.transforms if t.type == ttype]

    def encode(self, last: bool) -> bytes:
        n = len(self.transforms)
        _need(n <= 255 and len(self.spi) <= 255, "too many transforms or SPI too long")
        body = b"".join(t.encode(i == n - 1) for i, t in enumerate(self.transforms))
        length = 8 + len(self.spi) + len(body)
        hdr = _PROPOSAL_HDR.pack(
            0 if last else 2, 0, length, self.number, self.protocol, len(self.spi), n
        )
        return hdr + self.spi + body

    @classmethod
    def decode(cls, data: Buffer, off: int, end: int) -> tuple[Proposal, bool, int]:
        if end - off < 8:
            raise CodecError("proposal header truncated")
        last, _, length, num, proto, spi_size, ntrans = _PROPOSAL_HDR.unpack_from(data, off)
        if last != 0 and last != 2:
            raise CodecError(f"proposal last-substructure field is {last}")
        if length < 8 + spi_size or length > end - off:
            raise CodecError(f"proposal length {length} out of bounds")
        protocol = _PROTOCOLS.get(proto)
        if protocol is None:
            protocol = ProtocolId(proto)
        pos, pend = off + 8 + spi_size, off + length
        transforms: list[Transform] = []
        more = True
        decode = Transform.decode
        for i in range(ntrans):
            if pos >= pend:
                raise CodecError(f"proposal {num} announces {ntrans} transforms but holds {i}")
            if not more:
                raise CodecError(f"proposal {num}: transform {i} of {ntrans} marked last")
            t, more, pos = decode(data, pos, pend)
            transforms.append(t)
        if more and ntrans:
            raise CodecError(f"proposal {num}: last transform not marked last")
        if pos != pend:
            raise CodecError(f"proposal {num}: {pend - pos} octets after its {ntrans} transforms")
        spi = bytes(data[off + 8 : off + 8 + spi_size]) if spi_size else b""
        return cls(num, protocol, spi, transforms), last == 2, pend


@dataclass(slots=True)
class SA(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.SA
    proposals: list[Proposal] = field(default_factory=list)

    def encode_body(self) -> bytes:
        n = len(self.proposals)
        return b"".join(p.encode(i == n - 1) for i, p in enumerate(self.proposals))

    @classmethod
    def decode_body(cls, body: Buffer) -> SA:
        sa = cls()
        pos, end, more = 0, len(body), True
        _need(end > 0, "SA payload without proposals")
        while pos < end:
            _need(more, "SA payload: data after the proposal marked last")
            p, more, pos = Proposal.decode(body, pos, end)
            sa.proposals.append(p)
        _need(not more, "SA payload: last proposal not marked last")
        return sa


# ---------------------------------------------------------------- simple payloads


@dataclass(slots=True)
class KE(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.KE
    group: DhGroup
    data: bytes

    def encode_body(self) -> bytes:
        return _KE_HDR.pack(self.group, 0) + self.data

    @classmethod
    def decode_body(cls, body: Buffer) -> KE:
        _need(len(body) >= 4, "KE payload truncated")
        group, _ = _KE_HDR.unpack_from(body)
        return cls(DhGroup(group), bytes(body[4:]))


@dataclass(slots=True)
class Identification(Payload):
    id_type: IdType
    data: bytes

    def encode_body(self) -> bytes:
        return bytes((self.id_type, 0, 0, 0)) + self.data

    body = encode_body  # ID' of the AUTH computation is exactly the payload body

    @classmethod
    def decode_body(cls, body: Buffer) -> Identification:
        _need(len(body) >= 4, "ID payload truncated")
        return cls(IdType(body[0]), bytes(body[4:]))

    def text(self) -> str:
        """Human form, as strongSwan prints identities."""
        t = self.id_type
        try:
            if t == _ID_IPV4 and len(self.data) == 4:
                return str(IPv4Address(self.data))
            if t == _ID_IPV6 and len(self.data) == 16:
                return str(IPv6Address(self.data))
            if t in (_ID_FQDN, _ID_RFC822):
                return self.data.decode("ascii", "backslashreplace")
        except ValueError:
            pass
        if t == _ID_KEY:
            return "@#" + self.data.hex()
        return f"{t}:{self.data.hex()}"


@dataclass(slots=True)
class IDi(Identification):
    ptype: ClassVar[PayloadType] = PayloadType.IDi


@dataclass(slots=True)
class IDr(Identification):
    ptype: ClassVar[PayloadType] = PayloadType.IDr


@dataclass(slots=True)
class CERT(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.CERT
    encoding: CertEncoding
    data: bytes

    def encode_body(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    @classmethod
    def decode_body(cls, body: Buffer) -> CERT:
        _need(len(body) >= 1, "CERT payload truncated")
        return cls(CertEncoding(body[0]), bytes(body[1:]))


@dataclass(slots=True)
class CERTREQ(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.CERTREQ
    encoding: CertEncoding
    data: bytes

    def encode_body(self) -> bytes:
        return bytes((self.encoding,)) + self.data

    @classmethod
    def decode_body(cls, body: Buffer) -> CERTREQ:
        _need(len(body) >= 1, "CERTREQ payload truncated")
        return cls(CertEncoding(body[0]), bytes(body[1:]))


@dataclass(slots=True)
class AUTH(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.AUTH
    method: AuthMethod
    data: bytes

    def encode_body(self) -> bytes:
        return bytes((self.method, 0, 0, 0)) + self.data

    @classmethod
    def decode_body(cls, body: Buffer) -> AUTH:
        _need(len(body) >= 4, "AUTH payload truncated")
        return cls(AuthMethod(body[0]), bytes(body[4:]))


@dataclass(slots=True)
class Nonce(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.NONCE
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: Buffer) -> Nonce:
        return cls(bytes(body))


@dataclass(slots=True)
class Notify(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.NOTIFY
    type: NotifyType
    data: bytes = b""
    protocol: ProtocolId = ProtocolId.NONE
    spi: bytes = b""

    def encode_body(self) -> bytes:
        return _NOTIFY_HDR.pack(self.protocol, len(self.spi), self.type) + self.spi + self.data

    @classmethod
    def decode_body(cls, body: Buffer) -> Notify:
        # plain ifs rather than _need(): about ten notifies per IKE SA setup pass here
        if len(body) < 4:
            raise CodecError("Notify payload truncated")
        proto, spi_size, ntype = _NOTIFY_HDR.unpack_from(body)
        if len(body) < 4 + spi_size:
            raise CodecError("Notify SPI truncated")
        nt = _NOTIFY_TYPES.get(ntype)
        protocol = _PROTOCOLS.get(proto)
        return cls(
            nt if nt is not None else NotifyType(ntype),
            bytes(body[4 + spi_size :]),
            protocol if protocol is not None else ProtocolId(proto),
            bytes(body[4 : 4 + spi_size]) if spi_size else b"",
        )


@dataclass(slots=True)
class Delete(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.DELETE
    protocol: ProtocolId
    spis: list[bytes] = field(default_factory=list)
    spi_size: int | None = None  # None: 0 for IKE, 4 for AH/ESP

    def encode_body(self) -> bytes:
        size = self.spi_size
        if size is None:
            size = 0 if self.protocol == ProtocolId.IKE else 4
        for s in self.spis:
            _need(len(s) == size, "Delete SPI of the wrong size")
        return _DELETE_HDR.pack(self.protocol, size, len(self.spis)) + b"".join(self.spis)

    @classmethod
    def decode_body(cls, body: Buffer) -> Delete:
        _need(len(body) >= 4, "Delete payload truncated")
        proto, size, count = _DELETE_HDR.unpack_from(body)
        # Without this check 8 octets could make us build 65535 empty SPIs (a cheap CPU and
        # memory amplification); SPIs of size 0 only exist as "the IKE SA itself", count 0.
        _need(size > 0 or count == 0, f"Delete payload announces {count} SPIs of size 0")
        _need(
            len(body) == 4 + size * count,
            f"Delete payload announces {count} SPIs of {size} octets in {len(body) - 4} octets",
        )
        spis = [bytes(body[4 + i * size : 4 + (i + 1) * size]) for i in range(count)]
        default = 0 if proto == ProtocolId.IKE else 4
        return cls(ProtocolId(proto), spis, None if size == default else size)


@dataclass(slots=True)
class VendorId(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.VENDOR
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: Buffer) -> VendorId:
        return cls(bytes(body))


# ---------------------------------------------------------------- traffic selectors (§3.13)


@dataclass(slots=True, frozen=True)
class TrafficSelector:
    start_addr: IPv4Address | IPv6Address
    end_addr: IPv4Address | IPv6Address
    ip_protocol: int = 0
    start_port: int = 0
    end_port: int = 65535

    @property
    def ts_type(self) -> TsType:
        return _TS_V4 if self.start_addr.version == 4 else _TS_V6

    def encode(self) -> bytes:
        _need(self.start_addr.version == self.end_addr.version, "selector mixes address families")
        addrs = self.start_addr.packed + self.end_addr.packed
        return (
            _TS_HDR.pack(
                self.ts_type, self.ip_protocol, 8 + len(addrs), self.start_port, self.end_port
            )
            + addrs
        )

    def __str__(self) -> str:
        if self.start_addr == self.end_addr:
            net = str(self.start_addr) + ("/32" if self.start_addr.version == 4 else "/128")
        else:
            net = f"{self.start_addr}..{self.end_addr}"
        if self.ip_protocol == 0 and self.start_port == 0 and self.end_port == 65535:
            return net
        ports = (
            ""
            if (self.start_port, self.end_port) == (0, 65535)
            else f"/{self.start_port}"
            if self.start_port == self.end_port
            else f"/{self.start_port}-{self.end_port}"
        )
        return f"{net}[{self.ip_protocol}{ports}]"


@dataclass(slots=True, frozen=True)
class UnknownSelector:
    """A selector type this codec does not know (kept so the message still round-trips)."""

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    data: bytes

    def encode(self) -> bytes:
        return (
            _TS_HDR.pack(
                self.ts_type, self.ip_protocol, 8 + len(self.data), self.start_port, self.end_port
            )
            + self.data
        )


#: the whole encoded selector -> its decoded (immutable) form; see _address_selector
_decoded_selectors: dict[bytes, TrafficSelector] = {}
_DECODED_SELECTORS_MAX = 4096


def _address_selector(encoded: bytes) -> TrafficSelector:
    """An IPv4/IPv6 range selector from its whole encoding (header included, length checked).

    Every CHILD SA between two sites carries the same few selectors, and building one (two
    address objects and a frozen dataclass) costs more than a dict lookup. Selectors are
    immutable, so one shared instance is as good as a fresh one; the table is bounded and
    simply emptied when full.
    """
    ts = _decoded_selectors.get(encoded)
    if ts is not None:
        return ts
    _, proto, _, sport, eport = _TS_HDR.unpack_from(encoded)
    if len(encoded) == 16:
        ts = TrafficSelector(
            IPv4Address(encoded[8:12]), IPv4Address(encoded[12:]), proto, sport, eport
        )
    else:
        ts = TrafficSelector(
            IPv6Address(encoded[8:24]), IPv6Address(encoded[24:]), proto, sport, eport
        )
    if len(_decoded_selectors) >= _DECODED_SELECTORS_MAX:
        _decoded_selectors.clear()
    _decoded_selectors[encoded] = ts
    return ts


@dataclass(slots=True)
class TrafficSelectors(Payload):
    selectors: list[TrafficSelector | UnknownSelector] = field(default_factory=list)

    def encode_body(self) -> bytes:
        _need(len(self.selectors) <= 255, "too many traffic selectors")
        return bytes((len(self.selectors), 0, 0, 0)) + b"".join(s.encode() for s in self.selectors)

    @classmethod
    def decode_body(cls, body: Buffer) -> TrafficSelectors:
        _need(len(body) >= 4, "TS payload truncated")
        count, pos, end = body[0], 4, len(body)
        out: list[TrafficSelector | UnknownSelector] = []
        for i in range(count):
            if pos >= end:
                raise CodecError(f"TS payload announces {count} selectors but holds {i}")
            _need(end - pos >= 8, "traffic selector truncated")
            tstype, proto, length, sport, eport = _TS_HDR.unpack_from(body, pos)
            # plain ifs: no error text is built unless it is raised (every IKE_AUTH passes here)
            if not 8 <= length <= end - pos:
                raise CodecError(f"traffic selector length {length} out of bounds")
            if tstype == _TS_V4:
                _need(length == 16, "IPv4 traffic selector must be 16 octets")
                out.append(_address_selector(bytes(body[pos : pos + length])))
            elif tstype == _TS_V6:
                _need(length == 40, "IPv6 traffic selector must be 40 octets")
                out.append(_address_selector(bytes(body[pos : pos + length])))
            else:
                raw = bytes(body[pos + 8 : pos + length])
                out.append(UnknownSelector(tstype, proto, sport, eport, raw))
            pos += length
        if pos != end:
            raise CodecError(f"TS payload: {end - pos} octets after its {count} selectors")
        return cls(out)


@dataclass(slots=True)
class TSi(TrafficSelectors):
    ptype: ClassVar[PayloadType] = PayloadType.TSi


@dataclass(slots=True)
class TSr(TrafficSelectors):
    ptype: ClassVar[PayloadType] = PayloadType.TSr


# ---------------------------------------------------------------- encrypted payloads


@dataclass(slots=True)
class Encrypted(Payload):
    """SK (§3.14): opaque here; :mod:`quickike.crypto.sk` protects and unprotects it.

    ``next_inner`` is the generic header's Next Payload field: the type of the
    first payload inside. ``data`` is IV | ciphertext | ICV.
    """

    ptype: ClassVar[PayloadType] = PayloadType.SK
    next_inner: int
    data: bytes

    def encode_body(self) -> bytes:
        return self.data


@dataclass(slots=True)
class EncryptedFragment(Payload):
    """SKF (RFC 7383 §2.5)."""

    ptype: ClassVar[PayloadType] = PayloadType.SKF
    next_inner: int
    number: int
    total: int
    data: bytes

    def encode_body(self) -> bytes:
        return _SKF_HDR.pack(self.number, self.total) + self.data

    @classmethod
    def from_body(cls, next_inner: int, body: Buffer) -> EncryptedFragment:
        _need(len(body) >= 4, "SKF payload truncated")
        number, total = _SKF_HDR.unpack_from(body)
        _need(1 <= number <= total, f"fragment {number} of {total} is impossible")
        return cls(next_inner, number, total, bytes(body[4:]))


# ---------------------------------------------------------------- CP, EAP, unknown


@dataclass(slots=True)
class ConfigAttribute:
    type: CfgAttr
    value: bytes = b""


@dataclass(slots=True)
class CP(Payload):
    ptype: ClassVar[PayloadType] = PayloadType.CP
    cfg_type: CfgType
    attributes: list[ConfigAttribute] = field(default_factory=list)

    def encode_body(self) -> bytes:
        parts = [bytes((self.cfg_type, 0, 0, 0))]
        for a in self.attributes:
            parts.append(_U16.pack(a.type & 0x7FFF) + _U16.pack(len(a.value)) + a.value)
        return b"".join(parts)

    @classmethod
    def decode_body(cls, body: Buffer) -> CP:
        _need(len(body) >= 4, "CP payload truncated")
        cp = cls(CfgType(body[0]))
        pos, end = 4, len(body)
        while pos < end:
            _need(end - pos >= 4, "configuration attribute truncated")
            atype = _U16.unpack_from(body, pos)[0] & 0x7FFF
            alen = _U16.unpack_from(body, pos + 2)[0]
            _need(end - pos - 4 >= alen, "configuration attribute value truncated")
            cp.attributes.append(
                ConfigAttribute(CfgAttr(atype), bytes(body[pos + 4 : pos + 4 + alen]))
            )
            pos += 4 + alen
        return cp


@dataclass(slots=True)
class EAP(Payload):
    """EAP (§3.16), kept opaque: quickike does not terminate EAP."""

    ptype: ClassVar[PayloadType] = PayloadType.EAP
    data: bytes

    def encode_body(self) -> bytes:
        return self.data

    @classmethod
    def decode_body(cls, body: Buffer) -> EAP:
        _need(len(body) >= 4, "EAP payload truncated")
        _need(_U16.unpack_from(body, 2)[0] == len(body), "EAP length does not match the payload")
        return cls(bytes(body))


@dataclass(slots=True)
class UnknownPayload(Payload):
    """A non-critical payload type we do not know; skipped by the engine, kept for round trips."""

    type_number: int
    data: bytes

    @property
    def payload_type(self) -> int:
        return self.type_number

    def encode_body(self) -> bytes:
        return self.data


#: Payload type -> class with ``decode_body``; SK/SKF are handled by the chain decoder.
REGISTRY: dict[int, type[Payload]] = {
    cls.ptype: cls
    for cls in (
        SA,
        KE,
        IDi,
        IDr,
        CERT,
        CERTREQ,
        AUTH,
        Nonce,
        Notify,
        Delete,
        VendorId,
        TSi,
        TSr,
        CP,
        EAP,
    )
}


def notify(
    ntype: NotifyType,
    data: bytes = b"",
    *,
    protocol: ProtocolId = ProtocolId.NONE,
    spi: bytes = b"",
) -> Notify:
    """Shorthand used all over the engine."""
    return Notify(ntype, data, protocol, spi)

