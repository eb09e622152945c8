"""A simulated gateway: persistent store, volatile engine and data plane.

``boot`` builds a fresh :class:`quickike.engine.Engine` (the daemon's code,
with a seeded random source for this node and this life) and a fresh data
plane; ``crash`` throws both away.  What survives is the :class:`NodeStore`
(the QCD secret and the optional CHILD-SPI map) and the hosts behind the
gateway, whose flows keep sending into the void while it is down.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..engine import Engine
from ..engine.config import QuickikeConfig
from ..engine.extension import Extension
from ..wire.framing import NON_ESP_MARKER
from .dataplane import SimDataPlane
from .packets import Packet
from .seeds import engine_rng

if TYPE_CHECKING:
    from .traffic import Flow
    from .tunnel import Tunnel
    from .world import World


@dataclass(slots=True)
class NodeStore:
    """Non-volatile state: what a real gateway keeps in its state directory.

    ``qcd_secrets`` and ``child_spi_map`` hold whatever objects the QCD
    package uses as in-memory stores; a hot-standby pair shares one
    ``qcd_secrets`` object (the shared secret of issue 202).
    """

    qcd_secrets: Any = None
    child_spi_map: Any = None
    data: dict[str, Any] = field(default_factory=dict)


ExtensionFactory = Callable[["Node"], Sequence[Extension]]


class Node:
    def __init__(self, world: World, name: str, ip: str, config: QuickikeConfig, *,
                 store: NodeStore | None = None, extensions: ExtensionFactory | None = None,
                 trace_engine: bool = False, role: str = "gateway") -> None:
        self.world = world
        self.name = name
        self.ip = ip
        self.config = config
        self.store = store if store is not None else NodeStore()
        self.extensions = extensions
        self.trace_engine = trace_engine
        self.role = role
        self.engine: Engine | None = None
        self.dataplane: SimDataPlane | None = None
        self.up = False
        self.boots = 0
        self.booted_at: float | None = None
        self.crashed_at: float | None = None
        #: when a scheduled reboot will bring the node up again (None: none planned)
        self.boot_due: float | None = None
        self.gen = 0
        self.wake_at = math.inf
        s = config.settings
        self.ike_port = s.port
        self.ports = (s.port, s.port_nat_t)
        self.flows: list[Flow] = []
        self.tunnels: list[Tunnel] = []
        #: tunnels by the peer's (inside) address, for attributing packets and SAs
        self.tunnel_by_peer: dict[str, Tunnel] = {}
        #: IKE SA uid -> tunnel, for this life of the engine
        self.uid_tunnel: dict[int, Tunnel] = {}
        #: engine counters summed over all lives
        self.counters: Counter[str] = Counter()
        #: set after a reboot until every tunnel of this node is detected by its survivor
        self.watch_hits = False
        self.pending_detection = 0

    @property
    def now(self) -> float:
        return self.world.sched.now

    # ------------------------------------------------------------ life cycle

    def boot(self) -> None:
        now = self.now
        self.boot_due = None
        self.boots += 1
        self.gen += 1
        self.wake_at = math.inf
        self.dataplane = SimDataPlane(self)
        exts = list(self.extensions(self)) if self.extensions is not None else []
        self.engine = Engine(
            self.config,
            rng=engine_rng(self.world.seed, self.name, self.boots),
            dataplane=self.dataplane,
            extensions=exts,
            trace=self.trace_engine,
            now=now,
        )
        self.up = True
        self.booted_at = now
        self.world.trace.record(now, self.name, "boot", str(self.boots))
        self.engine.start(now)
        self.pump()
        sched = self.world.sched
        for f in self.flows:
            f.resume(sched)

    def crash(self) -> None:
        now = self.now
        if self.engine is not None:
            self.counters.update(self.engine.counters)
        self.engine = None
        self.dataplane = None
        self.up = False
        self.crashed_at = now
        self.gen += 1
        self.wake_at = math.inf
        self.uid_tunnel.clear()
        for f in self.flows:
            f.children = []
            f.bare_since = None
        self.world.trace.record(now, self.name, "crash")

    def total_counters(self) -> Counter[str]:
        total = Counter(self.counters)
        if self.engine is not None:
            total.update(self.engine.counters)
        return total

    # ------------------------------------------------------------ driving the engine

    def pump(self) -> None:
        """Send what the engine produced, hand its events on and arm its next timer."""
        eng = self.engine
        if eng is None:
            return
        # events first: they happened before the datagrams they caused left
        for e in eng.events():
            self.world.on_event(self, e)
        out = eng.datagrams_to_send()
        if out:
            send = self.world.network.send
            name = self.name
            watch = self.watch_hits
            for d in out:
                pkt = Packet(d.local[0], d.local[1], d.remote[0], d.remote[1], data=d.data,
                             origin=name)
                if watch:
                    self.world.note_answer(self, pkt)
                send(pkt)
        t = eng.get_timer()
        if t is not None and t < self.wake_at:
            self.wake_at = t
            self.world.sched.at(t, self._wake, self.gen, t)

    def _wake(self, gen: int, when: float) -> None:
        if gen != self.gen or self.engine is None:
            return
        if when == self.wake_at:
            self.wake_at = math.inf
        self.engine.handle_timer(self.now)
        self.pump()

    def receive(self, pkt: Packet) -> None:
        world = self.world
        if pkt.esp is not None and self.up and not self.watch_hits:
            self.dataplane.receive_esp(pkt, world.sched.now)  # type: ignore[union-attr]
            return
        if not self.up:
            world.stats["drop:node-down"] += 1
            if world.trace.enabled:
                world.trace.record(self.now, self.name, "drop", f"{pkt!r} node-down")
            if world.network.observer is not None:
                world.network.observer("drop", pkt, "gateway down")
            return
        if self.watch_hits:
            world.note_hit(self, pkt)
        if pkt.esp is not None:
            assert self.dataplane is not None
            self.dataplane.receive_esp(pkt, self.now)
            return
        port = pkt.dst_port
        if port not in self.ports:
            world.stats["drop:port-unreachable"] += 1
            return
        data = pkt.data
        if port != 500:
            # the daemon frames every socket but port 500 with the non-ESP marker
            if data == b"\xff":
                world.stats["keepalives"] += 1
                return
            if data[:4] != NON_ESP_MARKER:
                world.stats["drop:bad-framing"] += 1
                return
            data = data[4:]
        assert self.engine is not None
        self.engine.receive_datagram(data, (pkt.dst_ip, port), (pkt.src_ip, pkt.src_port), self.now)
        self.pump()

    def __repr__(self) -> str:
        return f"<Node {self.name} {self.ip} {'up' if self.up else 'down'}>"
