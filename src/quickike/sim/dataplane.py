"""The data plane of a simulated gateway, driven in virtual time.

It implements :class:`quickike.engine.dataplane.DataPlane` for the engine and
behaves towards it like the userspace ESP data plane of the daemon: outbound
packets pick the newest CHILD SA whose selectors cover them, fall back to a
trap (held, up to 32 packets, and an acquire at most every 5 s) or are
dropped without a policy; inbound ESP for an SPI it does not hold is
reported with ``Engine.unknown_esp_spi`` at most once a second per SPI; and
the counters' ``last_in``/``last_out`` follow the traffic, so dead-peer
detection sees exactly what it would see in the daemon (outgoing-only
traffic included).  Packets carry no ciphertext: see ``packets.py``.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..engine.dataplane import ChildCounters, ChildSaSpec, IPAddress, Selector, TrapSpec
from .packets import UDP_OVERHEAD, EspFrame, Packet

if TYPE_CHECKING:
    from .node import Node
    from .traffic import Flow

TRAP_QUEUE_LIMIT = 32
ACQUIRE_INTERVAL = 5.0
UNKNOWN_SPI_INTERVAL = 1.0


class SimChild:
    """One installed CHILD SA pair."""

    __slots__ = ("counters", "flows", "installed_at", "route", "seq", "spec", "spi_out")

    def __init__(self, spec: ChildSaSpec, now: float) -> None:
        self.spec = spec
        self.spi_out = spec.spi_out
        self.counters = ChildCounters()
        self.installed_at = now
        self.flows: list[Flow] = []
        self.seq = 0
        self.route = _route((str(spec.local_addr[0]), spec.local_addr[1]),
                            (str(spec.remote_addr[0]), spec.remote_addr[1]), spec.encap)


def _route(local: tuple[str, int], remote: tuple[str, int],
           encap: bool) -> tuple[str, int, str, int, bool]:
    """(source, port, destination, port, udp): UDP-encapsulated on the IKE ports, else raw ESP."""
    if encap:
        return (local[0], local[1], remote[0], remote[1], True)
    return (local[0], 0, remote[0], 0, False)


class _Trap:
    __slots__ = ("held", "last_acquire", "local", "remote", "spec")

    def __init__(self, spec: TrapSpec) -> None:
        self.spec = spec
        self.local = _ranges(spec.local_ts)
        self.remote = _ranges(spec.remote_ts)
        self.held: deque[tuple[Flow, float]] = deque()
        self.last_acquire: float | None = None

    def covers(self, flow: Flow) -> bool:
        return any(lo <= flow.src_int <= hi for lo, hi in self.local) and any(
            lo <= flow.dst_int <= hi for lo, hi in self.remote
        )


def _ranges(selectors: Iterable[Selector]) -> list[tuple[int, int]]:
    return [(int(s.start), int(s.end)) for s in selectors]


class SimDataPlane:
    """Volatile: a reboot builds a new one (all SAs and traps gone)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.name = node.name
        self.world = node.world
        self.network = node.world.network
        self.children: dict[bytes, SimChild] = {}
        self.traps: dict[tuple[str, str], _Trap] = {}
        self._unknown_seen: dict[bytes, float] = {}
        flows = sorted(node.flows, key=lambda f: (f.dst_int, f.id))
        self._flows = flows
        self._flow_keys = [f.dst_int for f in flows]
        for f in flows:
            f.children = []
            f.bare_since = None

    # ------------------------------------------------------------ DataPlane protocol

    def install_child(self, spec: ChildSaSpec) -> None:
        now = self.node.now
        if spec.spi_in in self.children:
            self.remove_child(spec.spi_in)
        child = SimChild(spec, now)
        self.children[spec.spi_in] = child
        local = _ranges(spec.local_ts)
        keys, flows = self._flow_keys, self._flows
        for lo, hi in _ranges(spec.remote_ts):
            i = bisect.bisect_left(keys, lo)
            while i < len(keys) and keys[i] <= hi:
                f = flows[i]
                if any(a <= f.src_int <= b for a, b in local) and child not in f.children:
                    f.children.append(child)
                    child.flows.append(f)
                    if f.bare_since is not None:
                        f.tunnel.no_sa.append((f.bare_since, now))
                        f.bare_since = None
                i += 1
        if self.traps:
            self._release(now)

    def remove_child(self, spi_in: bytes) -> None:
        child = self.children.pop(spi_in, None)
        if child is None:
            return
        now = self.node.now
        for f in child.flows:
            if child in f.children:
                f.children.remove(child)
                if not f.children and f.forward:
                    f.bare_since = now
        child.flows = []

    def update_addresses(self, spi_in: bytes, local: tuple[IPAddress, int],
                         remote: tuple[IPAddress, int], encap: bool) -> None:
        child = self.children.get(spi_in)
        if child is not None:
            child.route = _route((str(local[0]), local[1]), (str(remote[0]), remote[1]), encap)

    def counters(self, spi_in: bytes) -> ChildCounters | None:
        child = self.children.get(spi_in)
        return None if child is None else child.counters

    def install_trap(self, trap: TrapSpec) -> None:
        self.traps[(trap.ike_name, trap.child_name)] = _Trap(trap)

    def remove_trap(self, ike_name: str, child_name: str) -> None:
        self.traps.pop((ike_name, child_name), None)

    # ------------------------------------------------------------ traffic

    def send(self, flow: Flow, now: float) -> None:
        """A host behind this gateway sent a packet of ``flow``."""
        children = flow.children
        if children:
            self._seal(children[-1], flow, now)
            return
        for trap in self.traps.values():
            if trap.covers(flow):
                self.node.world.stats["held"] += 1
                if len(trap.held) >= TRAP_QUEUE_LIMIT:
                    trap.held.popleft()
                    self.node.world.stats["held-dropped"] += 1
                trap.held.append((flow, now))
                if trap.last_acquire is None or now - trap.last_acquire >= ACQUIRE_INTERVAL:
                    trap.last_acquire = now
                    engine = self.node.engine
                    if engine is not None:
                        engine.acquire(trap.spec.ike_name, trap.spec.child_name, now)
                        self.node.pump()
                return
        self.node.world.stats["no-policy"] += 1

    def _seal(self, child: SimChild, flow: Flow, now: float) -> None:
        c = child.counters
        c.packets_out += 1
        c.bytes_out += flow.size
        c.last_out = now
        child.seq += 1
        src, sport, dst, dport, udp = child.route
        self.network.send(Packet(src, sport, dst, dport, b"", EspFrame(child.spi_out, child.seq,
                                 flow, now), udp, flow.wire_size + (UDP_OVERHEAD if udp else 0),
                                 self.name))

    def _release(self, now: float) -> None:
        for trap in self.traps.values():
            if not trap.held:
                continue
            keep: deque[tuple[Flow, float]] = deque()
            for flow, when in trap.held:
                if flow.children:
                    self._seal(flow.children[-1], flow, now)
                else:
                    keep.append((flow, when))
            trap.held = keep
            if not keep:
                trap.last_acquire = None

    def receive_esp(self, pkt: Packet, now: float) -> None:
        frame = pkt.esp
        assert frame is not None
        child = self.children.get(frame.spi)
        if child is None:
            world = self.node.world
            world.stats["esp-unknown-spi"] += 1
            if world.network.observer is not None:
                world.network.observer("drop", pkt, "unknown SPI")
            seen = self._unknown_seen
            last = seen.get(frame.spi)
            if last is not None and now - last < UNKNOWN_SPI_INTERVAL:
                return
            seen[frame.spi] = now
            engine = self.node.engine
            if engine is not None:
                # raw ESP has no ports: the notification goes to the peer's IKE port
                local = (pkt.dst_ip, pkt.dst_port if pkt.udp else self.node.ike_port)
                remote = (pkt.src_ip, pkt.src_port if pkt.udp else self.node.ike_port)
                engine.unknown_esp_spi(frame.spi, local, remote, now)
                self.node.pump()
            return
        c = child.counters
        c.packets_in += 1
        c.bytes_in += frame.flow.size
        c.last_in = now
        self.world.delivered(frame, child, now)
