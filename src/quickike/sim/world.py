"""The simulation: a scheduler, a network, gateways, tunnels and their story.

``World`` wires the pieces together and turns engine events and packet
deliveries into the timestamps the metrics are made of.  It is the only
place that knows which tunnel an SA, a packet or a liveness check belongs
to; nodes, data planes and the network stay ignorant of metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..engine import events as ev
from ..engine.config import QuickikeConfig
from ..engine.sa import IkeState
from .network import LinkProfile, Network
from .node import ExtensionFactory, Node, NodeStore
from .packets import EspFrame, Packet
from .scheduler import Scheduler
from .seeds import stream
from .trace import Trace, TraceMode
from .traffic import Flow, TrafficSpec
from .tunnel import Tunnel
from .wireview import describe, unprotected_kind

if TYPE_CHECKING:
    from .dataplane import SimChild

#: teardown reasons both ends agreed on (an exchange with the peer); anything else
#: destroying an SA the peer still holds is a false teardown
AGREED_REASONS = frozenset({"deleted", "peer-deleted", "rekeyed", "shutdown", "redundant"})

TeardownHook = Callable[[Node, Tunnel, ev.IkeSaDown, bool], None]
EventHook = Callable[[Node, ev.Event], None]


class World:
    """One simulated deployment; build it with ``add_*``, then ``run`` it once."""

    def __init__(self, seed: int, *, trace: TraceMode = TraceMode.DIGEST,
                 link: LinkProfile | None = None, start: float = 0.0) -> None:
        self.seed = seed
        self.sched = Scheduler(start)
        self.trace = Trace(trace)
        self.network = Network(self.sched, stream(seed, "network"), self.trace, link)
        self.nodes: dict[str, Node] = {}
        self.tunnels: list[Tunnel] = []
        self.flows: list[Flow] = []
        self.stats: Counter[str] = Counter()
        #: virtual times at which a disrupted tunnel carried traffic again
        self.restorations: list[float] = []
        self.disruptions = 0
        #: crashes scheduled but not yet happened (a run does not end before them)
        self.planned = 0
        self.pending_restore = 0
        self.first_disruption: float | None = None
        self.teardown_hooks: list[TeardownHook] = []
        #: (time, node, text) story notes: crashes, boots, failovers, restorations
        self.note_hooks: list[Callable[[float, str, str], None]] = []
        self.event_hooks: list[EventHook] = []
        #: bytes/packets per (node, kind) up to the first disruption, for "cost of recovery"
        self.sent_before: dict[str, list[int]] | None = None
        self.ended_at: float | None = None
        self.settle: float | None = None
        self._handlers: dict[type, Callable[[Node, Any], None]] = {
            ev.IkeSaUp: self._ike_up,
            ev.IkeSaDown: self._ike_down,
            ev.LivenessCheck: self._liveness,
            ev.ExtensionEvent: self._extension,
        }

    @property
    def now(self) -> float:
        return self.sched.now

    # ------------------------------------------------------------ building

    def add_node(self, name: str, ip: str, config: QuickikeConfig, *, boot_at: float | None = 0.0,
                 store: NodeStore | None = None, extensions: ExtensionFactory | None = None,
                 trace_engine: bool = False, role: str = "gateway", attach: bool = True) -> Node:
        if name in self.nodes:
            raise ValueError(f"duplicate node name {name!r}")
        node = Node(self, name, ip, config, store=store, extensions=extensions,
                    trace_engine=trace_engine, role=role)
        self.nodes[name] = node
        if attach:
            self.network.attach(ip, node)
        if boot_at is not None:
            self.sched.at(boot_at, node.boot)
        return node

    def add_tunnel(self, a: Node, b_addr: str, b_nodes: list[Node]) -> Tunnel:
        t = Tunnel(len(self.tunnels) + 1, a, a.ip, b_addr, b_nodes)
        self.tunnels.append(t)
        a.tunnels.append(t)
        a.tunnel_by_peer[b_addr] = t
        for b in b_nodes:
            b.tunnels.append(t)
            b.tunnel_by_peer[a.ip] = t
        return t

    def add_traffic(self, t: Tunnel, a_host: str, b_host: str, *,
                    forward: TrafficSpec | None, reverse: TrafficSpec | None) -> None:
        """Host ``a_host`` (behind ``t.a``) sends ``forward`` to ``b_host`` (behind the b side),
        which answers with ``reverse``; either may be None (one-way traffic)."""
        rng = stream(self.seed, "traffic", t.id)
        if forward is not None:
            self._flow(t.a, t, a_host, b_host, forward, rng, forward=True)
        if reverse is not None:
            for b in t.b_nodes:
                self._flow(b, t, b_host, a_host, reverse, rng, forward=False)

    def _flow(self, node: Node, t: Tunnel, src: str, dst: str, spec: TrafficSpec, rng: Any,
              *, forward: bool) -> None:
        f = Flow(len(self.flows) + 1, node, t, src, dst, spec, rng, forward=forward)
        self.flows.append(f)
        node.flows.append(f)
        t.flows.append(f)
        f.start(self.sched)

    def note(self, node: str, text: str) -> None:
        self.trace.record(self.now, node or "-", "note", text)
        for hook in self.note_hooks:
            hook(self.now, node, text)

    # ------------------------------------------------------------ disruptions

    def crash(self, node: Node, at: float, boot_delay: float | None) -> None:
        """``node`` crashes at ``at`` and (unless ``boot_delay`` is None) is up again after it."""
        self.planned += 1
        self.sched.at(at, self._crash, node, boot_delay)

    def _crash(self, node: Node, boot_delay: float | None) -> None:
        now = self.now
        self.planned -= 1
        self._mark_disrupted(node, now)
        node.crash()
        self.note(node.name, "crashes")
        if boot_delay is not None:
            node.boot_due = now + boot_delay
            self.sched.at(now + boot_delay, self._reboot, node)

    def _mark_disrupted(self, node: Node, now: float) -> None:
        if self.first_disruption is None:
            self.first_disruption = now
            self.sent_before = {k: list(v) for k, v in self.network.sent.items()}
        self.disruptions += 1
        for t in node.tunnels:
            if t.disrupted_at is not None or t.established_at is None:
                continue
            if node is not t.a and self.network.holder(t.b_addr) is not node:
                continue  # a standby that held nothing of this tunnel
            survivor = t.a if node is not t.a else t.other_node(t.a)
            t.disrupted_at = now
            t.survivor = survivor
            if survivor is not None:
                t.old_uids = set(t.live.get(survivor.name, ()))
            self.pending_restore += 1

    def _reboot(self, node: Node) -> None:
        self._start_watch(node)
        kept = " (SAs lost, QCD secret kept)" if node.extensions is not None else " (SAs lost)"
        self.note(node.name, "boots" + kept)
        node.boot()

    def _start_watch(self, node: Node) -> None:
        now = self.now
        pending = 0
        for t in node.tunnels:
            if t.disrupted_at is not None and t.rebooted_at is None and t.survivor is not node:
                t.rebooted_at = now
            if t.rebooted_at is not None and t.detected is None and t.survivor is not node:
                pending += 1
        node.pending_detection = pending
        node.watch_hits = pending > 0

    def failover(self, vip: str, standby: Node, at: float) -> None:
        """``standby`` takes over the address ``vip`` at ``at`` (the active one failed)."""
        self.sched.at(at, self._failover, vip, standby)

    def _failover(self, vip: str, standby: Node) -> None:
        self.network.attach(vip, standby)
        self.note(standby.name, f"takes over {vip}")
        self._start_watch(standby)

    def partition(self, side_a: list[str], side_b: list[str] | None, start: float,
                  end: float | None) -> None:
        """Cut the addresses in ``side_a`` off from ``side_b`` (everyone else) for a while."""
        def cut() -> None:
            p = self.network.partition(side_a, side_b)
            self.note("", f"network partition: {', '.join(side_a)} cut off")
            if end is not None:
                self.sched.at(end, heal, p)

        def heal(p: Any) -> None:
            p.active = False
            self.note("", f"network partition healed: {', '.join(side_a)}")

        self.sched.at(start, cut)

    # ------------------------------------------------------------ observations

    def tunnel_for(self, node: Node, remote: tuple[str, int]) -> Tunnel | None:
        t = node.tunnel_by_peer.get(remote[0])
        if t is None and self.network.nats:
            t = node.tunnel_by_peer.get(self.network.resolve(remote[0], remote[1])[0])
        return t

    def note_hit(self, node: Node, pkt: Packet) -> None:
        """A packet reached a rebooted node: the first one per tunnel starts detection."""
        if pkt.esp is None and pkt.data == b"\xff":
            return  # a NAT keepalive carries nothing that could reveal the reboot
        t = self.tunnel_for(node, (pkt.src_ip, pkt.src_port))
        if t is not None and t.first_hit is None and t.rebooted_at is not None:
            t.first_hit = self.now

    def note_answer(self, node: Node, pkt: Packet) -> None:
        """An unprotected message a rebooted node sends towards a survivor."""
        t = self.tunnel_for(node, (pkt.dst_ip, pkt.dst_port))
        if t is None or t.detected is not None or t.rebooted_at is None:
            return
        view = describe(pkt.data)
        if view is not None and not view.protected:
            t.answers.append((self.now, unprotected_kind(view)))

    def delivered(self, frame: EspFrame, child: SimChild, now: float) -> None:
        t = frame.flow.tunnel
        t.delivered += 1
        last = t.last_delivery
        if last is not None:
            gap = now - last
            if gap > t.max_gap:
                t.max_gap = gap
        t.last_delivery = now
        d = t.disrupted_at
        if d is not None and t.restored is None and child.installed_at > d and frame.sent_at > d:
            t.restored = now
            self.restorations.append(now)
            self.pending_restore -= 1
            if self.pending_restore == 0 and self.planned == 0 and self.settle is not None:
                self.sched.at(now + self.settle, self.sched.halt)
            self.note("", f"{t.name} traffic flows again")

    def on_event(self, node: Node, e: ev.Event) -> None:
        if self.trace.enabled:
            self.trace.record(e.time, node.name, type(e).__name__, repr(e))
        handler = self._handlers.get(type(e))
        if handler is not None:
            handler(node, e)
        for hook in self.event_hooks:
            hook(node, e)

    def _ike_up(self, node: Node, e: ev.IkeSaUp) -> None:
        t = self.tunnel_for(node, e.remote)
        if t is None:
            self.stats["unattributed-sa"] += 1
            return
        node.uid_tunnel[e.ike_uid] = t
        t.live.setdefault(node.name, set()).add(e.ike_uid)
        if t.established_at is None:
            t.established_at = e.time

    def _ike_down(self, node: Node, e: ev.IkeSaDown) -> None:
        t = node.uid_tunnel.pop(e.ike_uid, None)
        if t is None:
            return
        live = t.live.get(node.name)
        if live is not None:
            live.discard(e.ike_uid)
        if not e.established:
            return
        t.teardowns.append((e.time, node.name, e.reason))
        if node is t.survivor and e.ike_uid in t.old_uids:
            self._detected(node, t, e.time, e.reason)
        false = e.reason not in AGREED_REASONS and self._peer_holds(node, t, e)
        if false:
            t.false_teardowns += 1
            self.stats["false-teardowns"] += 1
        for hook in self.teardown_hooks:
            hook(node, t, e, false)

    def _detected(self, node: Node, t: Tunnel, when: float, reason: str) -> None:
        if t.detected is not None:
            return
        t.detected = when
        t.detect_reason = reason
        rebooted = t.other_node(node) if node is t.a else t.a
        if rebooted is not None and rebooted.watch_hits:
            rebooted.pending_detection -= 1
            if rebooted.pending_detection <= 0:
                rebooted.watch_hits = False

    def _extension(self, node: Node, e: ev.ExtensionEvent) -> None:
        """QCD decides at its "teardown": with make-before-break the old SA goes later."""
        if e.source != "qcd" or e.kind != "teardown" or e.ike_uid is None:
            return
        t = node.uid_tunnel.get(e.ike_uid)
        if t is not None and node is t.survivor and e.ike_uid in t.old_uids:
            self._detected(node, t, e.time, f"qcd ({e.attrs.get('mode', '?')})")

    def _peer_holds(self, node: Node, t: Tunnel, e: ev.IkeSaDown) -> bool:
        peer = t.other_node(node)
        if peer is None or peer.engine is None:
            return False
        for spi in (e.spi_i, e.spi_r):
            sa = peer.engine.sas.get(spi)
            if sa is not None and sa.spi_i == e.spi_i and sa.spi_r == e.spi_r:
                return sa.state in (IkeState.ESTABLISHED, IkeState.REKEYING)
        return False

    def _liveness(self, node: Node, e: ev.LivenessCheck) -> None:
        t = node.uid_tunnel.get(e.ike_uid)
        if t is None:
            return
        if node is t.survivor and t.first_check is None and t.disrupted_at is not None \
                and e.ike_uid in t.old_uids:
            t.first_check = e.time

    # ------------------------------------------------------------ running

    def run(self, until: float, *, settle: float | None = 5.0) -> None:
        """Run to ``until``; with ``settle``, stop that long after the last disrupted tunnel is back."""
        self.settle = settle
        self.sched.run(until)
        self.ended_at = self.now
        for t in self.tunnels:
            if t.last_delivery is not None:
                gap = self.now - t.last_delivery
                if gap > t.max_gap:
                    t.max_gap = gap
