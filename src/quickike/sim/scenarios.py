"""The scenarios of ``quickike sim list``: each one builds a world and a story.

All but the issue-202 ones share a star: gateway ``gw2`` (192.0.2.2, LAN
10.0.0.0/16) and N peers ``gw1...`` (198.18.0.0/15, each with a /24 out of
10.128.0.0/9), one IKE SA and one CHILD SA per peer.  ``gw2`` is either a
responder for any address (the usual hub) or holds one connection per peer
with its address ("mesh", inter-domain style, so it can initiate too).  The
same engine plays every part; :mod:`.topology` says how each implementation
being compared is configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..engine.config import DpdAction, StartAction
from .attacker import STRATEGIES, Attacker
from .network import LinkProfile, Nat
from .node import ExtensionFactory, Node, NodeStore
from .params import ParamError, Params, parse_bool
from .qcdlink import memory_secret_store, qcd_extensions
from .seeds import stream
from .topology import (
    LIBRESWAN,
    QUICKIKE,
    STRONGSWAN,
    Behaviour,
    Side,
    connection,
    gateway_config,
    host_in,
    peer_ip,
    subnet_of,
)
from .trace import TraceMode
from .traffic import Pattern, TrafficSpec
from .tunnel import Tunnel
from .world import World

HUB_IP = "192.0.2.2"
HUB_ID = "gw2.example"
HUB_NET = "10.0.0.0/16"
HUB_HOST = "10.0.0.10"
PEERS_NET = "10.128.0.0/9"
VIP = "192.0.2.10"
STANDBY_IP = "192.0.2.3"
ATTACKER_IP = "203.0.113.66"


@dataclass(slots=True)
class Setup:
    """A built scenario, ready to run."""

    world: World
    until: float
    focus: Tunnel
    #: diagram columns: (left node, right node); the left one is the survivor
    columns: tuple[str, str]
    attackers: list[Attacker] = field(default_factory=list)
    notes: dict[str, object] = field(default_factory=dict)
    settle: float | None = 5.0


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    story: str
    expect: str
    build: Callable[[Params], Setup]
    default_tunnels: int = 1


# ----------------------------------------------------------------------------- helpers


def _behaviour(p: Params, default: Behaviour) -> Behaviour:
    """Apply --qcd and -p qcd.KEY / unprotected_rate overrides to a behaviour."""
    b = default
    if p.qcd is True and not b.qcd:
        b = replace(b, qcd=True, name=b.name + "+qcd")
    elif p.qcd is False and b.qcd:
        b = replace(b, qcd=False, name=b.name.replace("+qcd", ""))
    extra = p.prefixed("qcd")
    if extra and b.qcd:
        b = b.with_options(**extra)
    rate = p.opt("unprotected_rate", None, float)
    if rate is not None:
        b = replace(b, unprotected_rate=rate, unprotected_burst=max(2 * rate, b.unprotected_burst))
    dpd = p.opt("dpd_delay", None, float)
    if dpd is not None:
        b = replace(b, dpd_delay=dpd)
    jitter = p.opt("retransmit_jitter", None, float)
    if jitter is not None:
        if not 0 <= jitter < 100:
            raise ParamError("-p retransmit_jitter is a percentage in [0, 100)")
        b = replace(b, retransmit=replace(b.retransmit, jitter=jitter))
    return b


def sized_limits(b: Behaviour, tunnels: int) -> Behaviour:
    """A gateway dimensioned for ``tunnels`` peers: unprotected replies scale with it.

    quickike's defaults (QCD tokens 100/s with a burst of 200, other unprotected replies
    10/s per source and 200/s in all) suit a few hundred peers; after a reboot every peer
    needs one answer, so a hub for 10,000 gets 2,000/s.
    """
    rate = max(100.0, tunnels / 5.0)
    b = replace(b, unprotected_rate=max(b.unprotected_rate, rate / 20.0),
                unprotected_burst=max(b.unprotected_burst, rate / 10.0))
    if b.qcd:
        b = b.with_options(reply_rate_global=f"{rate:g}", reply_burst_global=f"{2 * rate:g}")
    return b


def _traffic(p: Params, default_interval: float = 1.0, **kw: object) -> TrafficSpec:
    pattern = p.opt("traffic", "steady", str)
    try:
        pat = Pattern(pattern)
    except ValueError:
        raise ParamError(f"-p traffic={pattern}: one of steady, bursty") from None
    interval = p.interval if p.interval is not None else default_interval
    return TrafficSpec(pattern=pat, interval=interval, **kw)  # type: ignore[arg-type]


def _world(p: Params, default_trace: TraceMode, loss: float = 0.0) -> World:
    link = LinkProfile(latency=p.latency, jitter=p.jitter,
                       loss=p.loss if p.loss is not None else loss,
                       reorder=p.opt("reorder", 0.0, float),
                       duplicate=p.opt("duplicate", 0.0, float))
    return World(p.seed, trace=p.trace or default_trace, link=link)


def _ext(b: Behaviour) -> ExtensionFactory | None:
    return qcd_extensions if b.qcd else None


@dataclass(slots=True)
class Star:
    world: World
    hub: Node
    peers: list[Node]
    tunnels: list[Tunnel]
    crash_at: float
    stagger: float


def _star(p: Params, *, n: int, peer_b: Behaviour, hub_b: Behaviour, mesh: bool = False,
          peer_start: StartAction = StartAction.START,
          peer_dpd: DpdAction = DpdAction.RESTART,
          hub_start: StartAction = StartAction.NONE, hub_dpd: DpdAction = DpdAction.CLEAR,
          forward: TrafficSpec | None, reverse: TrafficSpec | None,
          default_trace: TraceMode = TraceMode.DIGEST, loss: float = 0.0,
          stagger: float | None = None, crash_at: float | None = None) -> Star:
    world = _world(p, default_trace, loss)
    nat = p.opt("nat", False, parse_bool)
    if nat and mesh:
        raise ParamError("-p nat=yes needs a hub that only responds (this scenario's hub initiates)")
    if stagger is None:
        stagger = p.opt("stagger", min(10.0, n / 1000.0), float)
    hub_side = Side(HUB_IP, HUB_ID, HUB_NET)
    trace_all = n <= 50
    names = ["gw1" if n == 1 else f"gw1-{i + 1:05d}" for i in range(n)]
    sides: list[Side] = []
    for i, name in enumerate(names):
        ip = peer_ip(i)
        if nat:
            ip = f"100.64.{i // 250}.{i % 250 + 2}"
            world.network.add_nat(Nat(peer_ip(i), frozenset({ip})))
        sides.append(Side(ip, f"{name}.example", subnet_of(i)))
    if mesh:
        hub_conns = [connection(hub_b, hub_side, Side(peer_ip(i), s.ident, s.subnet),
                                name=f"peer{i + 1}", start=hub_start, dpd_action=hub_dpd)
                     for i, s in enumerate(sides)]
    else:
        hub_conns = [connection(hub_b, hub_side, None, name="peers", start=StartAction.NONE,
                                dpd_action=DpdAction.CLEAR, remote_subnet=PEERS_NET)]
    hub_cfg = gateway_config(hub_b, *hub_conns, ids=(HUB_ID,))
    # the hub is switched on first: peers booting at the same instant find it listening
    hub = world.add_node("gw2", HUB_IP, hub_cfg, boot_at=0.0, extensions=_ext(hub_b),
                         trace_engine=trace_all, role="rebooted")
    boot_rng = stream(p.seed, "boot")
    peers: list[Node] = []
    for i, (name, side) in enumerate(zip(names, sides, strict=True)):
        conn = connection(peer_b, side, hub_side, name="hub", start=peer_start, dpd_action=peer_dpd)
        cfg = gateway_config(peer_b, conn, ids=(side.ident, HUB_ID))
        boot_at = stagger * boot_rng.random() if stagger > 0 else 0.0
        peers.append(world.add_node(name, side.ip, cfg, boot_at=boot_at, extensions=_ext(peer_b),
                                    trace_engine=trace_all or i == p.focus - 1, role="survivor"))
    tunnels = []
    for peer, side in zip(peers, sides, strict=True):
        t = world.add_tunnel(peer, HUB_IP, [hub])
        world.add_traffic(t, host_in(side.subnet), HUB_HOST, forward=forward, reverse=reverse)
        tunnels.append(t)
    at = p.crash_at if p.crash_at is not None else (crash_at if crash_at is not None
                                                     else stagger + 20.0)
    window = p.opt("crash_window", None, _interval)
    if window is not None:
        # a crash at a random instant of the window, drawn from the run seed
        at = window[0] + (window[1] - window[0]) * stream(p.seed, "crash", "gw2").random()
    cut = p.opt("partition", None, _interval)
    if cut is not None:
        # the hub's uplink fails: no packet between it and any peer for a while
        world.partition([HUB_IP], None, cut[0], cut[1])
    return Star(world, hub, peers, tunnels, at, stagger)


def _interval(text: str) -> tuple[float, float]:
    """``A:B`` in virtual seconds, A < B."""
    a, sep, b = text.partition(":")
    if not sep:
        raise ValueError("expected START:END in seconds")
    start, end = float(a), float(b)
    if not 0 <= start < end:
        raise ValueError("expected 0 <= START < END")
    return start, end


def _focus(star: Star, p: Params) -> Tunnel:
    if p.focus > len(star.tunnels):
        raise ParamError(f"--focus {p.focus}: there are only {len(star.tunnels)} tunnels")
    return star.tunnels[p.focus - 1]


def _crash_hub(star: Star, p: Params, notes: Mapping[str, object], *, settle: float = 5.0,
               columns: tuple[str, str] | None = None) -> Setup:
    if p.opt("crash", True, parse_bool):
        star.world.crash(star.hub, star.crash_at, p.boot_delay)
    else:
        settle = 0.0  # no disruption to wait for: run to the horizon
    focus = _focus(star, p)
    return Setup(star.world, star.crash_at + p.boot_delay + p.horizon, focus,
                 columns or (focus.a.name, star.hub.name),
                 notes=dict(notes, crash_at=star.crash_at, boot_delay=p.boot_delay),
                 settle=settle)


def _n(p: Params, default: int) -> int:
    return p.tunnels if p.tunnels is not None else default


# ----------------------------------------------------------------------------- scenarios


def seed_story(p: Params) -> Setup:
    b = _behaviour(p, QUICKIKE)
    hub_b = b
    if p.opt("spi_map", False, parse_bool):
        if not b.qcd:
            raise ParamError("-p spi_map=yes needs QCD")
        hub_b = b.with_options(child_spi_map="yes")
    spec = _traffic(p)
    star = _star(p, n=_n(p, 1), peer_b=b, hub_b=hub_b, forward=spec, reverse=spec)
    return _crash_hub(star, p, {"survivor": b.name, "rebooted": hub_b.name})


def initiator_crash(p: Params) -> Setup:
    b = _behaviour(p, QUICKIKE)
    n = _n(p, 1)
    crash_at = p.crash_at if p.crash_at is not None else min(10.0, n / 1000.0) + 20.0
    # gw1's hosts start the tunnel and stop before the crash; gw2's keep sending (issue 198)
    forward = _traffic(p, stop=crash_at - 1.0)
    reverse = _traffic(p, start=5.0)
    star = _star(p, n=n, peer_b=b, hub_b=b, mesh=True, peer_start=StartAction.TRAP,
                 peer_dpd=DpdAction.TRAP, hub_start=StartAction.TRAP, hub_dpd=DpdAction.TRAP,
                 forward=forward, reverse=reverse, crash_at=crash_at)
    for peer in star.peers:
        star.world.crash(peer, star.crash_at, p.boot_delay)
    focus = _focus(star, p)
    return Setup(star.world, star.crash_at + p.boot_delay + p.horizon, focus,
                 (star.hub.name, focus.a.name),
                 notes={"survivor": f"{b.name} (responder)", "rebooted": f"{b.name} (initiator)",
                        "crash_at": star.crash_at, "boot_delay": p.boot_delay})


def outgoing_only(p: Params) -> Setup:
    b = _behaviour(p, QUICKIKE)
    # the rebooted side's data plane reports nothing (like charon with kernel ESP): only the
    # survivor's outgoing-only liveness check (RFC 7296 §2.4, seed issue 200) can find out
    hub_b = replace(b, send_invalid_spi=False)
    star = _star(p, n=_n(p, 1), peer_b=b, hub_b=hub_b, forward=_traffic(p), reverse=None)
    return _crash_hub(star, p, {"survivor": b.name, "rebooted": hub_b.name + " (no INVALID_SPI)",
                                "dpd_delay": b.dpd_delay})


def inter_domain(p: Params) -> Setup:
    b = _behaviour(p, QUICKIKE)
    star = _star(p, n=_n(p, 1), peer_b=b, hub_b=b, mesh=True, peer_start=StartAction.TRAP,
                 peer_dpd=DpdAction.TRAP, hub_start=StartAction.TRAP, hub_dpd=DpdAction.TRAP,
                 forward=_traffic(p), reverse=None)
    return _crash_hub(star, p, {"survivor": b.name, "rebooted": b.name,
                                "start_action": "trap (both)"})


def dpd_baseline(default: Behaviour) -> Callable[[Params], Setup]:
    def build(p: Params) -> Setup:
        b = _behaviour(p, default)
        spec = _traffic(p)
        star = _star(p, n=_n(p, 1), peer_b=b, hub_b=b, forward=spec, reverse=spec)
        return _crash_hub(star, p, {"survivor": b.name, "rebooted": b.name,
                                    "dpd_delay": b.dpd_delay,
                                    "retransmit": list(b.retransmit.send_times()),
                                    "dead_after": b.retransmit.give_up_after()})

    return build


def lossy(p: Params) -> Setup:
    b = _behaviour(p, QUICKIKE)
    spec = _traffic(p)
    star = _star(p, n=_n(p, 20), peer_b=b, hub_b=b, forward=spec, reverse=spec, loss=0.3,
                 crash_at=60.0)
    loss = p.loss if p.loss is not None else 0.3
    return _crash_hub(star, p, {"survivor": b.name, "rebooted": b.name, "loss": loss})


def mass_reboot(p: Params) -> Setup:
    n = _n(p, 10000)
    limits = p.opt("limits", "sized", str)
    if limits not in ("sized", "default"):
        raise ParamError(f"-p limits={limits}: one of sized, default")
    b = _behaviour(p, QUICKIKE)
    hub_b = sized_limits(b, n) if limits == "sized" else b
    spec = _traffic(p, default_interval=1.0)
    stagger = p.opt("stagger", min(10.0, n / 1000.0), float)
    # peers power on over ``stagger`` seconds; the hub crashes 5 s after the last one is up
    star = _star(p, n=n, peer_b=b, hub_b=hub_b, forward=spec, reverse=spec,
                 default_trace=TraceMode.OFF, stagger=stagger, crash_at=stagger + 5.0)
    return _crash_hub(star, p, {"survivor": b.name, "rebooted": hub_b.name,
                                "stagger": star.stagger, "limits": limits,
                                "hub_qcd_options": dict(hub_b.qcd_options),
                                "hub_unprotected_rate": hub_b.unprotected_rate}, settle=2.0)


# ----------------------------------------------------------------------------- issue 202

#: the taker's issue-202 defences as quickike.qcd options, each one on its own
MITIGATIONS: dict[str, dict[str, str]] = {
    "pending": {"require_pending": "yes"},
    "delay": {"accept_delay": "10ms", "accept_rtt_factor": "1.5", "accept_delay_max": "2s"},
    "dampening": {"dampening": "2s", "dampening_max": "300s"},
    "rekey": {"rekey_before_delete": "yes"},
}
_ALL_OFF = {"require_pending": "no", "accept_delay": "0", "accept_rtt_factor": "0",
            "accept_delay_max": "0", "dampening": "0", "rekey_before_delete": "no"}


def mitigation_options(spec: str) -> dict[str, str]:
    """``none``, ``all`` or a comma list of :data:`MITIGATIONS` names, as QCD options."""
    words = [w.strip() for w in spec.split(",") if w.strip()]
    if words == ["all"]:
        words = list(MITIGATIONS)
    if words == ["none"]:
        words = []
    opts = dict(_ALL_OFF)
    for w in words:
        if w not in MITIGATIONS:
            raise ValueError(f"unknown mitigation {w!r} (none, all, {', '.join(MITIGATIONS)})")
        opts.update(MITIGATIONS[w])
    return opts


def standby_spoof(p: Params) -> Setup:
    """Issue 202: a hot-standby pair shares the QCD secret; the standby is an oracle."""
    mit = p.opt("mitigations", "all", str)
    try:
        opts = mitigation_options(mit)
    except ValueError as e:
        raise ParamError(f"-p mitigations={mit}: {e}") from None
    strategy = p.opt("attacker", "smart", str)
    if strategy not in STRATEGIES:
        raise ParamError(f"-p attacker={strategy}: one of {', '.join(STRATEGIES)}")
    attacks = p.opt("attacks", 10, int)
    period = p.opt("attack_period", 1.0, float)
    attack_at = p.opt("attack_at", 20.0, float)
    failover_delay = p.opt("failover_delay", 3.0, float)
    b = _behaviour(p, QUICKIKE).with_options(deployment="hot-standby", **opts)
    world = _world(p, TraceMode.DIGEST)
    # the attacker sits on the victim's access link, 1 ms from it and 5 ms from the standby
    near = LinkProfile(latency=0.001)
    world.network.set_link(ATTACKER_IP, peer_ip(0), near)
    world.network.set_link(ATTACKER_IP, STANDBY_IP, LinkProfile(latency=0.005))
    peer_side = Side(peer_ip(0), "gw1.example", subnet_of(0))
    service = Side(VIP, HUB_ID, HUB_NET)
    peer_cfg = gateway_config(b, connection(b, peer_side, service, name="hub"),
                              ids=(peer_side.ident, HUB_ID))
    hub_cfg = gateway_config(b, connection(b, service, None, name="peers",
                                           start=StartAction.NONE, dpd_action=DpdAction.CLEAR,
                                           remote_subnet=PEERS_NET), ids=(HUB_ID,))
    # one secret, two gateways, no synchronised SA database (separate stores otherwise)
    secret = memory_secret_store() if b.qcd else None
    active = world.add_node("gw2", HUB_IP, hub_cfg, store=NodeStore(qcd_secrets=secret),
                            extensions=_ext(b), trace_engine=True, role="active")
    standby = world.add_node("gw2-standby", STANDBY_IP, hub_cfg,
                             store=NodeStore(qcd_secrets=secret), extensions=_ext(b),
                             trace_engine=True, role="standby")
    world.network.attach(VIP, active)
    peer = world.add_node("gw1", peer_side.ip, peer_cfg, boot_at=0.001, extensions=_ext(b),
                          trace_engine=True, role="victim")
    t = world.add_tunnel(peer, VIP, [active, standby])
    spec = _traffic(p)
    world.add_traffic(t, host_in(peer_side.subnet), HUB_HOST, forward=spec, reverse=spec)
    attacker = Attacker(world, "mallory", ATTACKER_IP, victim=peer, vip=VIP,
                        standby_ip=STANDBY_IP, strategy=strategy,
                        rng=stream(p.seed, "attacker"))
    for k in range(attacks):
        world.sched.at(attack_at + k * period, attacker.attack)
    failover_at = attack_at + attacks * period + 15.0
    if p.crash_at is not None:
        failover_at = p.crash_at
    world.crash(active, failover_at, None)
    world.failover(VIP, standby, failover_at + failover_delay)
    return Setup(world, failover_at + failover_delay + p.horizon, t, ("gw1", "gw2"),
                 attackers=[attacker],
                 notes={"mitigations": mit, "attacker": strategy, "attacks": attacks,
                        "attack_period": period, "failover_at": failover_at,
                        "failover_delay": failover_delay, "qcd_options": dict(opts)})


# ----------------------------------------------------------------------------- registry

SCENARIOS: Mapping[str, Scenario] = MappingProxyType({s.name: s for s in (
    Scenario(
        "seed", "The seed's story: gateway 2 crashes and reboots",
        "gw1 initiated the tunnel to gw2 (responder only); both run QCD and exchanged tokens in "
        "IKE_AUTH. gw2 crashes and reboots; gw1's next ESP packet gets INVALID_SPI, gw1's "
        "liveness check gets INVALID_IKE_SPI + QCD token, gw1 deletes the SA and re-creates it. "
        "-p spi_map=yes gives gw2 the persistent CHILD-SPI map (RFC 6290 §8.2: INVALID_SPI + "
        "token in one message); -p nat=yes puts each gw1 behind its own NAT.",
        "detection within one RTT of gw2's token answer, a few RTTs after the first packet",
        seed_story),
    Scenario(
        "initiator-crash", "Issue 198: the initiator crashes (traffic-triggered SAs)",
        "gw1 brought the tunnel up on its own traffic (start_action=trap) and then fell quiet; "
        "gw1 crashes and reboots and does not initiate (no traffic of its own), while gw2's "
        "hosts keep sending into the stale SA. Only a token from the initiator lets gw2 see the "
        "reboot quickly.",
        "gw2 (responder) detects within one RTT of gw1's token answer",
        initiator_crash),
    Scenario(
        "outgoing-only", "Issue 200: outgoing-only traffic",
        "Traffic flows from gw1 to gw2 only, and gw2's data plane never answers unknown SPIs "
        "(like charon with kernel ESP). gw1 learns nothing from its packets; its outgoing-only "
        "liveness check (RFC 7296 §2.4, dpd_delay 30 s) is what QCD answers.",
        "detection at the first liveness check after the reboot plus one RTT",
        outgoing_only),
    Scenario(
        "inter-domain", "Issue 201: traffic-triggered inter-domain SAs",
        "Two inter-domain gateways configured with each other's addresses, both with "
        "start_action=trap. gw2 crashes and reboots but has no traffic of its own, so it does "
        "not re-create the SA; gw1's traffic hits the stale SA until it learns of the reboot.",
        "QCD: detection within one RTT of the token; then the trap re-creates the SA",
        inter_domain),
    Scenario(
        "standby-spoof", "Issue 202: the standby of a hot-standby pair as a token oracle",
        "gw2 and gw2-standby share the QCD secret and a virtual address; the attacker (on "
        "gw1's access link) asks the standby about gw1's live SA with gw1's address as "
        "source, captures the token answer and injects it to gw1. -p mitigations=none|all|"
        "pending,delay,dampening,rekey picks the taker's defences, -p attacker=naive|smart the "
        "attack. Afterwards gw2 really fails and the standby takes over, which measures what "
        "the defences cost a genuine failover.",
        "attacks succeed without defences; 'delay' stops both attackers, 'pending' only the "
        "naive one, 'rekey' removes the outage, 'dampening' limits repetitions",
        standby_spoof),
    Scenario(
        "dpd-strongswan", "DPD baseline: strongSwan default timers, no QCD",
        "The seed's story with both gateways configured like strongSwan 5.9: dpd_delay = 30s, "
        "retransmits after 4 s with base 1.8 and 5 tries (given up 165 s after the first "
        "check), and a restarted gateway that answers unknown SPIs with nothing.",
        "detection about 165 s after the first liveness check",
        dpd_baseline(STRONGSWAN)),
    Scenario(
        "dpd-libreswan", "DPD baseline: libreswan-like timers, no QCD",
        "The same with libreswan-like timers: dpddelay = 30s, retransmits from 0.5 s doubling, "
        "given up 60 s after the probe.",
        "detection about 60 s after the first liveness check",
        dpd_baseline(LIBRESWAN)),
    Scenario(
        "loss", "The seed's story over paths losing 30 % of packets",
        "20 tunnels, every path drops 30 % of packets (IKE and ESP alike); gw2 crashes and "
        "reboots. QCD messages are retransmitted like any other exchange.",
        "every tunnel recovers; detection stretched by retransmissions, no false teardowns",
        lossy, default_tunnels=20),
    Scenario(
        "mass-reboot", "A gateway holding 10,000 tunnels crashes and reboots",
        "gw2 is the hub of 10,000 peers (one IKE SA each, steady traffic both ways). It crashes "
        "and reboots; every peer must detect it and rebuild. The rebooted hub's reply rate "
        "limits (RFC 7296 §2.21.4, RFC 6290 §8.1) pace the recovery: -p limits=sized (default) "
        "gives a hub for N peers N/5 token answers per second, -p limits=default keeps "
        "quickike's defaults (100/s), under which synchronised retransmissions starve most "
        "peers of a token.",
        "sized limits: every tunnel detected by QCD within a few seconds of the reboot",
        mass_reboot, default_tunnels=10000),
)})
