"""The fixed 28-octet IKE header (RFC 7296 §3.1)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .enums import FLAG_INITIATOR, FLAG_RESPONSE, ExchangeType, NotifyType
from .errors import CodecError

HEADER_SIZE = 28
_HEADER = struct.Struct("!8s8sBBBBII")
#: value -> member: every received datagram is decoded, and a dict lookup is several times
#: cheaper than ExchangeType.__call__ (unknown values still go through the enum)
_EXCHANGES: dict[int, ExchangeType] = {int(m): m for m in ExchangeType}


@dataclass(slots=True)
class Header:
    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: ExchangeType
    flags: int
    message_id: int
    length: int = 0
    major: int = 2
    minor: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)

    @property
    def is_initiator(self) -> bool:
        """Sender is the original initiator (or last IKE rekey initiator)."""
        return bool(self.flags & FLAG_INITIATOR)

    def encode(self) -> bytes:
        return _HEADER.pack(
            self.spi_i,
            self.spi_r,
            self.next_payload,
            (self.major << 4) | (self.minor & 0x0F),
            self.exchange,
            self.flags,
            self.message_id,
            self.length,
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Header:
        """Decode and check the header of a datagram holding exactly one message."""
        if len(data) < HEADER_SIZE:
            raise CodecError(f"datagram of {len(data)} octets is shorter than the IKE header")
        spi_i, spi_r, nxt, version, exch, flags, msg_id, length = _HEADER.unpack_from(data)
        major = version >> 4
        if major != 2:
            # A higher major version gets INVALID_MAJOR_VERSION (§2.5); a lower one is IKEv1.
            raise CodecError(
                f"unsupported IKE major version {major}", NotifyType.INVALID_MAJOR_VERSION
            )
        if length != len(data):
            raise CodecError(f"header length {length} but datagram holds {len(data)} octets")
        exchange = _EXCHANGES.get(exch)
        if exchange is None:
            exchange = ExchangeType(exch)
        return cls(spi_i, spi_r, nxt, exchange, flags, msg_id, length, major, version & 0x0F)


def pack_header(
    spi_i: bytes,
    spi_r: bytes,
    next_payload: int,
    exchange: int,
    flags: int,
    message_id: int,
    length: int,
) -> bytes:
    """Header octets for messages built elsewhere (the SK protector needs them as AAD)."""
    return _HEADER.pack(spi_i, spi_r, next_payload, 0x20, exchange, flags, message_id, length)


__all__ = ["FLAG_INITIATOR", "FLAG_RESPONSE", "HEADER_SIZE", "Header", "pack_header"]
