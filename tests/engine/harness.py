"""Two (or more) engines back to back in memory, with a driven clock.

The network is a dict from address to engine: datagrams are delivered in
order, optionally dropped by a filter, and time only moves when the test
says so or when every engine is idle and a timer is due.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType

from quickike.crypto.rng import SeededRandomSource
from quickike.engine import Datagram, Engine
from quickike.engine import events as ev
from quickike.engine.config import (
    AddressSpec,
    AddrKind,
    AuthClass,
    AuthConfig,
    ChildConfig,
    ConnectionConfig,
    DaemonSettings,
    Identity,
    IkeSecret,
    QuickikeConfig,
    Secrets,
    StartAction,
    TrafficSelectorConfig,
)
from quickike.engine.dataplane import RecordingDataPlane
from quickike.wire.enums import IdType
from quickike.wire.framing import Kind, classify_marked

PSK = b"this is a long enough pre-shared key for tests"


def addr_spec(ip: str) -> AddressSpec:
    a = ipaddress.ip_address(ip)
    return AddressSpec(AddrKind.ADDRESS, ip, a, a)


def fqdn(name: str) -> Identity:
    return Identity(IdType.FQDN, name.encode(), name)


def child(name: str = "net", local: str = "10.1.0.0/16", remote: str = "10.2.0.0/16",
          esp: str = "aes128gcm16-esn", **kw: object) -> ChildConfig:
    return ChildConfig(
        name,
        local_ts=(TrafficSelectorConfig.from_network(local),),
        remote_ts=(TrafficSelectorConfig.from_network(remote),),
        esp_proposals=(esp,),
        **kw,  # type: ignore[arg-type]
    )


def conn(name: str, local_ip: str, remote_ip: str, me: str, peer: str, *,
         proposals: str = "aes128gcm16-prfsha256-x25519", children: tuple[ChildConfig, ...] = (),
         **kw: object) -> ConnectionConfig:
    return ConnectionConfig(
        name,
        local_addrs=(addr_spec(local_ip),),
        remote_addrs=(addr_spec(remote_ip),),
        proposals=(proposals,),
        local=(AuthConfig(auth=AuthClass.PSK, auth_spec="psk", id=fqdn(me)),),
        remote=(AuthConfig(name="remote", auth=AuthClass.PSK, auth_spec="psk", id=fqdn(peer)),),
        children=children,
        **kw,  # type: ignore[arg-type]
    )


def config(*conns: ConnectionConfig, secret: bytes = PSK, ids: tuple[str, ...] = ("a.example", "b.example"),
           settings: DaemonSettings | None = None) -> QuickikeConfig:
    return QuickikeConfig(
        connections=MappingProxyType({c.name: c for c in conns}),
        secrets=Secrets(ike=(IkeSecret("ike-1", tuple(fqdn(i) for i in ids), secret),)),
        settings=settings or DaemonSettings(),
    )


@dataclass
class Node:
    name: str
    ip: str
    engine: Engine
    dataplane: RecordingDataPlane
    events: list[ev.Event] = field(default_factory=list)

    def of(self, kind: type[ev.Event]) -> list[ev.Event]:
        return [e for e in self.events if isinstance(e, kind)]


class Net:
    """Engines attached to IP addresses; delivers datagrams between them.

    With ``latency`` > 0 every datagram is in flight that many seconds (one
    way); then only :meth:`advance` moves it, as it moves timers.
    """

    def __init__(self, latency: float = 0.0) -> None:
        self.now = 1000.0
        self.nodes: dict[str, Node] = {}
        self.wire: list[tuple[float, Datagram]] = []
        #: return False to drop a datagram
        self.filter: Callable[[Datagram], bool] = lambda d: True
        self.down: set[str] = set()
        self.latency = latency
        #: (arrival time, sequence, datagram, source address) of datagrams in flight
        self._flight: list[tuple[float, int, Datagram, tuple[str, int]]] = []
        self._seq = 0

    def add(self, name: str, ip: str, cfg: QuickikeConfig, seed: int, **kw: object) -> Node:
        dp = RecordingDataPlane()
        eng = Engine(cfg, rng=SeededRandomSource(seed), dataplane=dp, trace=True, now=self.now, **kw)  # type: ignore[arg-type]
        node = Node(name, ip, eng, dp)
        self.nodes[ip] = node
        return node

    def replace(self, node: Node, cfg: QuickikeConfig, seed: int, **kw: object) -> Node:
        """A reboot: same address, fresh engine (all SAs lost)."""
        return self.add(node.name, node.ip, cfg, seed, **kw)

    def inject(self, d: Datagram, src: tuple[str, int], delay: float | None = None) -> None:
        """Put a datagram on the wire with any source address (spoofing, replays)."""
        self._seq += 1
        when = self.now + (self.latency if delay is None else delay)
        heapq.heappush(self._flight, (when, self._seq, d, src))

    def _deliver(self, d: Datagram, src: tuple[str, int]) -> None:
        dst = self.nodes.get(d.remote[0])
        if dst is None or dst.ip in self.down:
            return
        data = d.data
        if d.local[1] != 500 and d.remote[1] != 500:
            kind, view = classify_marked(data)
            if kind is not Kind.IKE:
                return
            data = bytes(view)
        dst.engine.receive_datagram(data, d.remote, src, self.now)

    def step(self) -> bool:
        """Deliver every datagram now queued (and due); returns True if anything moved."""
        moved = False
        for node in list(self.nodes.values()):
            for e in node.engine.events():
                node.events.append(e)
            for d in node.engine.datagrams_to_send():
                moved = True
                self.wire.append((self.now, d))
                if not self.filter(d):
                    continue
                if self.latency > 0:
                    self.inject(d, (node.ip, d.local[1]))
                else:
                    self._deliver(d, (node.ip, d.local[1]))
        while self._flight and self._flight[0][0] <= self.now:
            _, _, d, src = heapq.heappop(self._flight)
            moved = True
            self._deliver(d, src)
        for node in self.nodes.values():
            for e in node.engine.events():
                node.events.append(e)
        return moved

    def settle(self, max_rounds: int = 200) -> None:
        """Deliver until quiet, without moving the clock."""
        for _ in range(max_rounds):
            if not self.step():
                return
        raise AssertionError("network did not settle")

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing timers in order and delivering as we go."""
        end = self.now + seconds
        self.settle()
        while True:
            due = [t for n in self.nodes.values() if (t := n.engine.get_timer()) is not None]
            if self._flight:
                due.append(self._flight[0][0])
            nxt = min(due) if due else None
            if nxt is None or nxt > end:
                break
            self.now = max(self.now, nxt)
            for n in list(self.nodes.values()):
                t = n.engine.get_timer()
                if t is not None and t <= self.now:
                    n.engine.handle_timer(self.now)
            self.settle()
        self.now = end


def pair(a_children: tuple[ChildConfig, ...] = (), b_children: tuple[ChildConfig, ...] | None = None,
         *, a_kw: dict | None = None, b_kw: dict | None = None, proposals: str = "aes128gcm16-prfsha256-x25519",
         b_proposals: str | None = None, engine_kw: dict | None = None) -> tuple[Net, Node, Node]:
    a_children = a_children or (child(),)
    if b_children is None:
        b_children = tuple(
            ChildConfig(c.name, local_ts=c.remote_ts, remote_ts=c.local_ts, esp_proposals=c.esp_proposals)
            for c in a_children
        )
    net = Net()
    ca = conn("gw", "192.0.2.1", "192.0.2.2", "a.example", "b.example", children=a_children,
              proposals=proposals, **(a_kw or {}))
    cb = conn("gw", "192.0.2.2", "192.0.2.1", "b.example", "a.example", children=b_children,
              proposals=b_proposals or proposals, **(b_kw or {}))
    a = net.add("A", "192.0.2.1", config(ca), seed=1, **(engine_kw or {}))
    b = net.add("B", "192.0.2.2", config(cb), seed=2, **(engine_kw or {}))
    return net, a, b


__all__ = ["PSK", "Net", "Node", "StartAction", "child", "config", "conn", "pair"]
