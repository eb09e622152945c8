"""The virtual network: links with latency, jitter, loss, reordering and
duplication; partitions; NAT; taps for on-path attackers.

Addresses and ports are those of a real deployment: the engine's datagrams
go from its configured local address to the peer's, a NAT rewrites source
addresses and ports on the way out and maps replies back, and a packet for
an address nobody holds is lost.  All random decisions come from one seeded
stream, drawn in event order, so a seed fixes every loss and every delay.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from .packets import Packet
from .scheduler import Scheduler
from .trace import Trace


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """One direction of a path between two addresses.

    ``latency`` is the one-way delay; ``jitter`` adds a uniform [0, jitter)
    on top without reordering (a packet never overtakes an earlier one on
    the same path); with probability ``reorder`` a packet is held back an
    extra ``reorder_delay`` so later ones overtake it; with probability
    ``duplicate`` a second copy arrives ``duplicate_delay`` after the first.
    """

    latency: float = 0.010
    jitter: float = 0.0
    loss: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.005
    duplicate: float = 0.0
    duplicate_delay: float = 0.001

    def __post_init__(self) -> None:
        for name in ("loss", "reorder", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability, got {value}")
        if self.latency < 0 or self.jitter < 0 or self.reorder_delay < 0:
            raise ValueError("delays must not be negative")


class Receiver(Protocol):
    name: str
    up: bool
    boot_due: float | None

    def receive(self, packet: Packet) -> None: ...


@dataclass(slots=True)
class Partition:
    """No packet crosses between ``side_a`` and ``side_b`` (None: everyone else) while active."""

    side_a: frozenset[str]
    side_b: frozenset[str] | None = None
    active: bool = True

    def cuts(self, a: str, b: str) -> bool:
        if not self.active:
            return False
        if a in self.side_a:
            return b not in self.side_a if self.side_b is None else b in self.side_b
        if b in self.side_a:
            return a not in self.side_a if self.side_b is None else a in self.side_b
        return False


@dataclass(slots=True)
class Nat:
    """A NAPT box: inside addresses leave as ``public`` with a port of its choosing.

    Mappings are endpoint-independent (one public port per inside address and
    port, whatever the destination), as RFC 4787 recommends, and last for the
    run: the simulator does not expire them.
    """

    public: str
    inside: frozenset[str]
    first_port: int = 40000
    out_map: dict[tuple[str, int, bool], int] = field(default_factory=dict)
    in_map: dict[tuple[int, bool], tuple[str, int]] = field(default_factory=dict)

    def outbound(self, ip: str, port: int, udp: bool) -> tuple[str, int]:
        key = (ip, port, udp)
        public_port = self.out_map.get(key)
        if public_port is None:
            public_port = self.first_port + len(self.out_map)
            self.out_map[key] = public_port
            self.in_map[(public_port, udp)] = (ip, port)
        return self.public, public_port

    def inbound(self, port: int, udp: bool) -> tuple[str, int] | None:
        return self.in_map.get((port, udp))


#: sees every packet entering the network; returning True captures (swallows) it
Tap = Callable[[Packet, float], bool]
#: (event, packet, detail): "tx", "drop" with the reason, "rx" (detail empty but for drops)
Observer = Callable[[str, Packet, str], None]


class Network:
    """Delivers packets between receivers attached to IP addresses."""

    def __init__(self, sched: Scheduler, rng: random.Random, trace: Trace,
                 default: LinkProfile | None = None) -> None:
        self.sched = sched
        self.rng = rng
        self.trace = trace
        self.default = default or LinkProfile()
        self.hosts: dict[str, Receiver] = {}
        self.links: dict[tuple[str, str], LinkProfile] = {}
        self.partitions: list[Partition] = []
        self.nats: dict[str, Nat] = {}
        self.nat_of: dict[str, Nat] = {}
        self.taps: list[Tap] = []
        self._fifo: dict[tuple[str, str], float] = {}
        #: sees every send, drop and arrival (diagrams); None costs nothing
        self.observer: Observer | None = None
        #: drop reasons and delivery counts
        self.stats: Counter[str] = Counter()
        #: origin -> [IKE packets, bytes, ESP packets, bytes, keepalives, bytes] put on the wire
        self.sent: dict[str, list[int]] = {}
        self.delivered = 0
        #: packets for a gateway that was down when they would have arrived
        self.down_drops = 0
        self._simple = True

    # ------------------------------------------------------------ topology

    def attach(self, ip: str, receiver: Receiver) -> None:
        self.hosts[ip] = receiver

    def detach(self, ip: str) -> None:
        self.hosts.pop(ip, None)

    def holder(self, ip: str) -> Receiver | None:
        return self.hosts.get(ip)

    def set_link(self, a: str, b: str, profile: LinkProfile, *, both: bool = True) -> None:
        self.links[(a, b)] = profile
        if both:
            self.links[(b, a)] = profile

    def link(self, a: str, b: str) -> LinkProfile:
        return self.links.get((a, b), self.default)

    def partition(self, side_a: Iterable[str], side_b: Iterable[str] | None = None) -> Partition:
        p = Partition(frozenset(side_a), None if side_b is None else frozenset(side_b))
        self.partitions.append(p)
        self._simple = False
        return p

    def add_nat(self, nat: Nat) -> None:
        self.nats[nat.public] = nat
        for ip in nat.inside:
            self.nat_of[ip] = nat
        self._simple = False

    def add_tap(self, tap: Tap) -> None:
        self.taps.append(tap)
        self._simple = False

    def resolve(self, ip: str, port: int, udp: bool = True) -> tuple[str, int]:
        """The inside address behind a NAT's public address and port (else unchanged)."""
        nat = self.nats.get(ip)
        if nat is not None:
            inside = nat.inbound(port, udp)
            if inside is not None:
                return inside
        return ip, port

    # ------------------------------------------------------------ sending

    def send(self, pkt: Packet) -> None:
        """Put ``pkt`` on the wire now; it arrives (or not) after the path's delay."""
        acct = self.sent.get(pkt.origin)
        if acct is None:
            acct = self.sent[pkt.origin] = [0, 0, 0, 0, 0, 0]
        k = 2 if pkt.esp is not None else (4 if pkt.data == b"\xff" else 0)
        acct[k] += 1
        acct[k + 1] += pkt.size
        if self._simple:
            src, dst = pkt.src_ip if pkt.path_src is None else pkt.path_src, pkt.dst_ip
            prof = self.links.get((src, dst), self.default) if self.links else self.default
            self._transmit(pkt, src, dst, prof)
            return
        now = self.sched.now
        src_real = pkt.src_ip if pkt.path_src is None else pkt.path_src
        nat = self.nat_of.get(pkt.src_ip)
        if nat is not None and pkt.dst_ip not in nat.inside:
            if not pkt.udp:
                self._drop(pkt, "nat-raw-esp")
                return
            pkt = pkt.rewritten(src=nat.outbound(pkt.src_ip, pkt.src_port, True))
        for tap in self.taps:
            if tap(pkt, now):
                if self.observer is not None:
                    self.observer("tx", pkt, "")
                self._drop(pkt, "captured")
                return
        dst_real = pkt.dst_ip
        private = self.nat_of.get(dst_real)
        if private is not None and self.nat_of.get(src_real) is not private:
            self._drop(pkt, "unroutable-private")
            return
        public = self.nats.get(dst_real)
        if public is not None:
            inside = public.inbound(pkt.dst_port, pkt.udp)
            if inside is None:
                self._drop(pkt, "nat-no-mapping")
                return
            dst_real = inside[0]
        for p in self.partitions:
            if p.cuts(src_real, dst_real):
                self._drop(pkt, "partition")
                return
        self._transmit(pkt, src_real, dst_real, self.links.get((src_real, dst_real), self.default))

    def _transmit(self, pkt: Packet, src: str, dst: str, prof: LinkProfile) -> None:
        now = self.sched.now
        rng = self.rng
        if prof.loss and rng.random() < prof.loss:
            self._drop(pkt, "loss")
            return
        arrival = now + prof.latency
        if prof.reorder and rng.random() < prof.reorder:
            arrival += prof.reorder_delay
            self.stats["reordered"] += 1
        elif prof.jitter:
            # jitter never reorders a path: a packet waits for the one before it
            arrival += rng.random() * prof.jitter
            key = (src, dst)
            last = self._fifo.get(key)
            if last is not None and arrival < last:
                arrival = last
            self._fifo[key] = arrival
        if self.trace.enabled:
            self.trace.record(now, pkt.origin, "tx", f"{pkt!r} at {arrival!r}")
        if self.observer is not None:
            self.observer("tx", pkt, "")
        host = self.hosts.get(dst)
        if host is not None and not host.up and (host.boot_due is None or host.boot_due > arrival):
            # lost at a gateway that is still down when it arrives: no need to carry it there
            self.down_drops += 1
            if self.trace.enabled:
                self.trace.record(now, pkt.origin, "drop", f"{pkt!r} gateway-down")
            if self.observer is not None:
                self.observer("drop", pkt, "gateway down")
            return
        self.sched.at(arrival, self._arrive, pkt)
        if prof.duplicate and rng.random() < prof.duplicate:
            self.stats["duplicated"] += 1
            self.sched.at(arrival + prof.duplicate_delay, self._arrive, pkt)

    def _drop(self, pkt: Packet, reason: str) -> None:
        self.stats["drop:" + reason] += 1
        if self.trace.enabled:
            self.trace.record(self.sched.now, pkt.origin, "drop", f"{pkt!r} {reason}")
        if self.observer is not None:
            self.observer("drop", pkt, reason)

    def _arrive(self, pkt: Packet) -> None:
        if self.nats and pkt.dst_ip in self.nats:
            inside = self.nats[pkt.dst_ip].inbound(pkt.dst_port, pkt.udp)
            if inside is None:
                self._drop(pkt, "nat-no-mapping")
                return
            pkt = pkt.rewritten(dst=inside)
        host = self.hosts.get(pkt.dst_ip)
        if host is None:
            self._drop(pkt, "no-host")
            return
        self.delivered += 1
        host.receive(pkt)
        if self.observer is not None:
            self.observer("rx", pkt, "")
