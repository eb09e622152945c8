"""Whole IKE messages: the header plus the chain of generic payload headers.

Decoding is strict about structure (every length and count must fit) but
lenient about meaning: unknown non-critical payloads and unknown numbers are
kept so the engine can ignore them, as RFC 7296 §2.5 asks.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from .enums import FLAG_INITIATOR, FLAG_RESPONSE, ExchangeType, NotifyType, PayloadType
from .errors import CodecError
from .header import _HEADER, HEADER_SIZE, Header
from .payloads import (
    REGISTRY,
    Encrypted,
    EncryptedFragment,
    Notify,
    Payload,
    UnknownPayload,
)

_GENERIC = struct.Struct("!BBH")
_CRITICAL = 0x80
_SK = int(PayloadType.SK)
_SKF = int(PayloadType.SKF)
_SK_CLASSES = (Encrypted, EncryptedFragment)

P = TypeVar("P", bound=Payload)


def encode_payloads(payloads: Sequence[Payload]) -> tuple[int, bytes]:
    """Encode a payload chain; returns the type of the first payload and the octets.

    The last payload's Next field is 0 unless it is SK/SKF, whose Next field
    names the first payload *inside* it.
    """
    # Hot path (every message sent): the Next fields are read once up front instead of
    # indexing the list per payload, and the isinstance check takes a tuple (cheaper than
    # a union type).
    parts: list[bytes] = []
    nexts = [p.payload_type for p in payloads]
    nexts.append(0)
    pack = _GENERIC.pack
    for i, p in enumerate(payloads, 1):
        body = p.encode_body()
        nxt = p.next_inner if isinstance(p, _SK_CLASSES) else nexts[i]
        length = 4 + len(body)
        if length > 0xFFFF:
            raise CodecError(f"{p.ptype} payload of {length} octets does not fit its length field")
        parts.append(pack(nxt, _CRITICAL if p.critical else 0, length))
        parts.append(body)
    return nexts[0], b"".join(parts)


def decode_payloads(
    first: int, data: bytes | memoryview, start: int = 0
) -> tuple[list[Payload], int]:
    """Decode the chain that starts at ``start`` with type ``first``.

    Returns the payloads and the offset of an SK/SKF generic header (-1 if
    there is none). SK/SKF must be the last payload (RFC 7296 §3.14).
    """
    out: list[Payload] = []
    nxt, off, end = first, start, len(data)
    registry = REGISTRY
    while nxt:
        if end - off < 4:
            raise CodecError(f"payload {PayloadType(nxt)} header truncated at offset {off}")
        following, flags, length = _GENERIC.unpack_from(data, off)
        if length < 4 or length > end - off:
            raise CodecError(f"payload {PayloadType(nxt)} length {length} out of bounds at {off}")
        body = data[off + 4 : off + length]
        if nxt in (_SK, _SKF):
            if off + length != end:
                raise CodecError("encrypted payload is not the last payload")
            if nxt == _SK:
                out.append(Encrypted(following, bytes(body)))
            else:
                out.append(EncryptedFragment.from_body(following, body))
            out[-1].critical = bool(flags & _CRITICAL)
            return out, off
        cls = registry.get(nxt)
        if cls is None:
            if flags & _CRITICAL:
                raise CodecError(
                    f"unsupported critical payload type {nxt}",
                    NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                    bytes((nxt,)),
                )
            p: Payload = UnknownPayload(nxt, bytes(body))
        else:
            p = cls.decode_body(body)
        if flags & _CRITICAL:  # the default is False: set only when it changes something
            p.critical = True
        out.append(p)
        off += length
        nxt = following
    if off != end:
        raise CodecError(f"{end - off} octets after the last payload")
    return out, -1


@dataclass(slots=True)
class Message:
    """A decoded (or to-be-encoded) IKE message.

    For a protected message the last payload is :class:`Encrypted` (or
    :class:`EncryptedFragment`) and ``sk_offset`` is where its generic header
    starts, which the SK protector needs for the AAD.
    """

    spi_i: bytes
    spi_r: bytes
    exchange: ExchangeType
    flags: int
    message_id: int
    payloads: list[Payload] = field(default_factory=list)
    sk_offset: int = -1
    minor: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_initiator(self) -> bool:
        return bool(self.flags & FLAG_INITIATOR)

    @property
    def encrypted(self) -> Encrypted | EncryptedFragment | None:
        if self.payloads and isinstance(self.payloads[-1], _SK_CLASSES):
            return self.payloads[-1]
        return None

    def get(self, cls: type[P]) -> P | None:
        for p in self.payloads:
            if type(p) is cls:
                return p
        return None

    def all(self, cls: type[P]) -> list[P]:
        return [p for p in self.payloads if type(p) is cls]

    def notifies(self) -> Iterator[Notify]:
        for p in self.payloads:
            if type(p) is Notify:
                yield p

    def notify(self, ntype: NotifyType) -> Notify | None:
        for p in self.payloads:
            if type(p) is Notify and p.type == ntype:
                return p
        return None

    def encode(self) -> bytes:
        first, body = encode_payloads(self.payloads)
        length = HEADER_SIZE + len(body)
        head = _HEADER.pack(
            self.spi_i,
            self.spi_r,
            first,
            0x20 | (self.minor & 0x0F),
            self.exchange,
            self.flags,
            self.message_id,
            length,
        )
        return head + body

    def summary(self) -> str:
        """One line like ``IKE_AUTH request 1 [ SK ]`` (charon's log style)."""
        kind = "response" if self.is_response else "request"
        names = []
        for p in self.payloads:
            if type(p) is Notify:
                names.append(f"N({p.type})")
            else:
                names.append(str(PayloadType(p.payload_type)))
        return f"{self.exchange} {kind} {self.message_id} [ {' '.join(names)} ]"


def decode_message(data: bytes | memoryview) -> Message:
    """Decode one IKE message (without the port-4500 non-ESP marker)."""
    h = Header.decode(data)
    payloads, sk_offset = decode_payloads(h.next_payload, data, HEADER_SIZE)
    return Message(
        h.spi_i, h.spi_r, h.exchange, h.flags, h.message_id, payloads, sk_offset, h.minor
    )
