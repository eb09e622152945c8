"""Security policy lookups: which CHILD SA (or trap) a packet belongs to.

Outbound, every packet read from the TUN device is matched against the
traffic selectors of the installed CHILD SAs (local TS = source, remote TS =
destination), then against the traps (policies without an SA).  Inbound, the
SPI picks the SA and, after decryption, the inner packet must fit that SA's
selectors the other way round (RFC 4301 §5.2, step 4): otherwise a peer could
inject traffic for networks it was never given.

Selectors are compiled to integer ranges once per install; the per-packet
work is one ``struct.unpack_from`` for the addresses and a few integer
comparisons.  Protocol and ports are parsed only when some selector needs
them.  Entries are tried most specific first, newest first among equals, so
that after a rekey the new SA takes the traffic of the old one.

Ports of ICMP/ICMPv6 are ``type << 8 | code`` (RFC 7296 §3.13.1) and are
checked against both selectors' ranges.  Packets without port information
(non-first fragments, protocols without ports) only match selectors with the
full range 0-65535 or the OPAQUE range (start > end).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Generic, TypeVar

from quickike.engine.dataplane import IPAddress, Selector, TrapSpec

__all__ = [
    "PacketSummary",
    "SelectorTable",
    "Spd",
    "TrapQueue",
    "summarize",
]

T = TypeVar("T")

_V4_ADDRS = struct.Struct("!II")
_V6_ADDRS = struct.Struct("!QQQQ")
_PORTS = struct.Struct("!HH")
_NO_PORT = -1
_UNPARSED = -2
_PORT_PROTOCOLS = frozenset((6, 17, 33, 132, 136))  # TCP, UDP, DCCP, SCTP, UDP-Lite
_ICMP_PROTOCOLS = frozenset((1, 58))
#: IPv6 extension headers walked to find the upper-layer protocol
_V6_EXT = frozenset((0, 43, 60))
_V6_FRAGMENT = 44
_AH = 51

Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True, slots=True)
class PacketSummary:
    """What the engine needs from the packet that triggered an acquire.

    RFC 7296 §2.9: the initiator should put the packet's own addresses and
    ports first in TSi/TSr so that the responder can narrow correctly.
    """

    src: IPAddress
    dst: IPAddress
    protocol: int
    src_port: int | None
    dst_port: int | None


def _l4(pkt: Buffer, off: int, length: int) -> tuple[int, int, int]:
    """(protocol, source port, destination port) with _NO_PORT where there is none."""
    end = off + length
    if pkt[off] >> 4 == 4:
        proto = pkt[off + 9]
        if (pkt[off + 6] & 0x1F) or pkt[off + 7]:  # non-first fragment
            return proto, _NO_PORT, _NO_PORT
        pos = off + (pkt[off] & 0x0F) * 4
    else:
        proto = pkt[off + 6]
        pos = off + 40
        for _ in range(8):
            if proto in _V6_EXT:
                if pos + 8 > end:
                    return proto, _NO_PORT, _NO_PORT
                proto, pos = pkt[pos], pos + (pkt[pos + 1] + 1) * 8
            elif proto == _V6_FRAGMENT:
                if pos + 8 > end:
                    return proto, _NO_PORT, _NO_PORT
                nxt = pkt[pos]
                if (pkt[pos + 2] << 8 | pkt[pos + 3]) & 0xFFF8:
                    return nxt, _NO_PORT, _NO_PORT
                proto, pos = nxt, pos + 8
            elif proto == _AH:
                if pos + 8 > end:
                    return proto, _NO_PORT, _NO_PORT
                proto, pos = pkt[pos], pos + (pkt[pos + 1] + 2) * 4
            else:
                break
    if proto in _PORT_PROTOCOLS:
        if pos + 4 > end:
            return proto, _NO_PORT, _NO_PORT
        sport, dport = _PORTS.unpack_from(pkt, pos)
        return proto, sport, dport
    if proto in _ICMP_PROTOCOLS:
        if pos + 2 > end:
            return proto, _NO_PORT, _NO_PORT
        tc = pkt[pos] << 8 | pkt[pos + 1]
        return proto, tc, tc
    return proto, _NO_PORT, _NO_PORT


def _addrs(pkt: Buffer, off: int, length: int) -> tuple[int, int, int] | None:
    """(IP version, source, destination) as ints, None if not a plausible IP packet."""
    if length < 20:
        return None
    version = pkt[off] >> 4
    if version == 4:
        s, d = _V4_ADDRS.unpack_from(pkt, off + 12)
        return 4, s, d
    if version == 6 and length >= 40:
        sh, sl, dh, dl = _V6_ADDRS.unpack_from(pkt, off + 8)
        return 6, sh << 64 | sl, dh << 64 | dl
    return None


def summarize(packet: Buffer, off: int = 0, length: int | None = None) -> PacketSummary | None:
    """Summary of an IP packet for an acquire; None if it is not one."""
    n = len(packet) - off if length is None else length
    a = _addrs(packet, off, n)
    if a is None:
        return None
    version, s, d = a
    proto, sp, dp = _l4(packet, off, n)
    src: IPAddress
    dst: IPAddress
    if version == 4:
        src, dst = IPv4Address(s), IPv4Address(d)
    else:
        src, dst = IPv6Address(s), IPv6Address(d)
    return PacketSummary(
        src, dst, proto, None if sp == _NO_PORT else sp, None if dp == _NO_PORT else dp
    )


def _port_ok(port: int, lo: int, hi: int) -> bool:
    if port == _NO_PORT:
        return (lo == 0 and hi == 65535) or lo > hi
    return lo <= port <= hi


# An entry: (src lo, src hi, dst lo, dst hi, needs_l4, proto, sport lo, sport hi,
#            dport lo, dport hi, value)
_Entry = tuple[int, int, int, int, bool, int, int, int, int, int, T]


@dataclass(slots=True)
class _Rule(Generic[T]):
    key: object
    order: int
    version: int
    entry: tuple[int, int, int, int, bool, int, int, int, int, int, T]

    def sort_key(self) -> tuple[int, int, int, int]:
        e = self.entry
        return (e[3] - e[2], e[1] - e[0], 0 if e[4] else 1, -self.order)


class SelectorTable(Generic[T]):
    """Ordered (source selectors x destination selectors) -> value."""

    __slots__ = ("_order", "_rules", "_v4", "_v6")

    def __init__(self) -> None:
        self._rules: list[_Rule[T]] = []
        self._v4: list[_Entry[T]] = []
        self._v6: list[_Entry[T]] = []
        self._order = 0

    def __len__(self) -> int:
        return len({r.key for r in self._rules})

    def add(self, key: object, src: Iterable[Selector], dst: Iterable[Selector], value: T) -> None:
        """Every (src, dst) pair of the same IP version becomes an entry for ``key``."""
        self._order += 1
        dsts = tuple(dst)
        for s in src:
            for d in dsts:
                if s.start.version != d.start.version:
                    continue
                needs = bool(
                    s.protocol
                    or d.protocol
                    or (s.start_port, s.end_port) != (0, 65535)
                    or (d.start_port, d.end_port) != (0, 65535)
                )
                proto = s.protocol or d.protocol
                if s.protocol and d.protocol and s.protocol != d.protocol:
                    continue  # can never match
                entry = (
                    int(s.start),
                    int(s.end),
                    int(d.start),
                    int(d.end),
                    needs,
                    proto,
                    s.start_port,
                    s.end_port,
                    d.start_port,
                    d.end_port,
                    value,
                )
                self._rules.append(_Rule(key, self._order, s.start.version, entry))
        self._rebuild()

    def remove(self, key: object) -> None:
        self._rules = [r for r in self._rules if r.key != key]
        self._rebuild()

    def _rebuild(self) -> None:
        rules = sorted(self._rules, key=_Rule.sort_key)
        self._v4 = [r.entry for r in rules if r.version == 4]
        self._v6 = [r.entry for r in rules if r.version == 6]

    def lookup(self, pkt: Buffer, off: int, length: int) -> T | None:
        """Value of the first entry the packet at ``pkt[off:off+length]`` fits, else None."""
        if length < 20:
            return None
        version = pkt[off] >> 4
        if version == 4:
            entries = self._v4
            src, dst = _V4_ADDRS.unpack_from(pkt, off + 12)
        elif version == 6 and length >= 40:
            entries = self._v6
            sh, sl, dh, dl = _V6_ADDRS.unpack_from(pkt, off + 8)
            src = sh << 64 | sl
            dst = dh << 64 | dl
        else:
            return None
        proto = _UNPARSED
        sport = dport = _NO_PORT
        for e in entries:
            if e[0] <= src <= e[1] and e[2] <= dst <= e[3]:
                if not e[4]:
                    return e[10]
                if proto == _UNPARSED:
                    proto, sport, dport = _l4(pkt, off, length)
                if (
                    (not e[5] or e[5] == proto)
                    and _port_ok(sport, e[6], e[7])
                    and _port_ok(dport, e[8], e[9])
                ):
                    return e[10]
        return None


@dataclass(slots=True)
class TrapQueue:
    """Packets held for a trap until its SA exists; the oldest go first when full."""

    trap: TrapSpec
    limit: int
    packets: deque[bytes] = field(default_factory=deque)
    dropped: int = 0
    #: driver-clock time of the last acquire reported for this trap
    last_acquire: float | None = None

    def push(self, packet: bytes) -> None:
        if self.limit <= 0:
            self.dropped += 1
            return
        if len(self.packets) >= self.limit:
            self.packets.popleft()
            self.dropped += 1
        self.packets.append(packet)


class Spd(Generic[T]):
    """The data plane's policy and SA lookups, keyed by inbound SPI."""

    __slots__ = ("_queue_limit", "_trap_table", "_traps", "by_spi", "out_table")

    def __init__(self, trap_queue_limit: int = 32) -> None:
        #: outbound policy of the SAs; hot paths call ``out_table.lookup`` directly
        self.out_table: SelectorTable[T] = SelectorTable()
        #: inbound SPI (as int) -> SA; hot paths read it directly, only Spd writes it
        self.by_spi: dict[int, T] = {}
        self._trap_table: SelectorTable[TrapQueue] = SelectorTable()
        self._traps: dict[tuple[str, str], TrapQueue] = {}
        self._queue_limit = trap_queue_limit

    # --- SAs ---------------------------------------------------------------------------
    def add_sa(
        self, spi_in: bytes, local_ts: Iterable[Selector], remote_ts: Iterable[Selector], sa: T
    ) -> None:
        key = int.from_bytes(spi_in, "big")
        if key in self.by_spi:
            self.remove_sa(spi_in)
        self.by_spi[key] = sa
        self.out_table.add(key, local_ts, remote_ts, sa)

    def remove_sa(self, spi_in: bytes) -> T | None:
        key = int.from_bytes(spi_in, "big")
        sa = self.by_spi.pop(key, None)
        if sa is not None:
            self.out_table.remove(key)
        return sa

    def inbound(self, spi: int) -> T | None:
        return self.by_spi.get(spi)

    def outbound(self, pkt: Buffer, off: int, length: int) -> T | None:
        return self.out_table.lookup(pkt, off, length)

    def sas(self) -> list[T]:
        return list(self.by_spi.values())

    # --- traps -------------------------------------------------------------------------
    def add_trap(self, trap: TrapSpec) -> TrapQueue:
        """Install (or replace) a trap; a replaced one hands over its held packets and state."""
        key = (trap.ike_name, trap.child_name)
        old = self._traps.get(key)
        tq = TrapQueue(trap, self._queue_limit)
        if old is not None:
            tq.packets, tq.dropped, tq.last_acquire = old.packets, old.dropped, old.last_acquire
            self._trap_table.remove(key)
        self._traps[key] = tq
        self._trap_table.add(key, trap.local_ts, trap.remote_ts, tq)
        return tq

    def remove_trap(self, ike_name: str, child_name: str) -> TrapQueue | None:
        key = (ike_name, child_name)
        tq = self._traps.pop(key, None)
        if tq is not None:
            self._trap_table.remove(key)
        return tq

    def trap_for_name(self, ike_name: str, child_name: str) -> TrapQueue | None:
        return self._traps.get((ike_name, child_name))

    def trap_for(self, pkt: Buffer, off: int, length: int) -> TrapQueue | None:
        return self._trap_table.lookup(pkt, off, length)

    def traps(self) -> list[TrapQueue]:
        return list(self._traps.values())


def inbound_table(
    local_ts: Iterable[Selector], remote_ts: Iterable[Selector]
) -> SelectorTable[bool]:
    """Selectors a decrypted packet from the peer must fit: source in remote, destination in local."""
    table: SelectorTable[bool] = SelectorTable()
    table.add(0, remote_ts, local_ts, True)
    return table
