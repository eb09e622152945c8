"""Two QCD gateways back to back (tests/engine/harness.py) plus the crash/reboot moves."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from engine.harness import Net, Node, child, config, conn
from quickike.engine import events as ev
from quickike.engine.config import (
    ChildConfig,
    CloseAction,
    ConnectionConfig,
    DaemonSettings,
    DpdAction,
    QcdSettings,
    QuickikeConfig,
    StartAction,
)
from quickike.engine.sa import IkeSa, IkeState
from quickike.qcd import (
    ChildSpiMap,
    MemorySecretStore,
    QcdExtension,
    QcdPolicy,
    SecretStore,
)
from quickike.qcd.settings import ConnPolicy

A_IP = "192.0.2.1"
B_IP = "192.0.2.2"
DEFAULT_POLICY = QcdPolicy()


def a_child(**kw: Any) -> ChildConfig:
    return child("net", local="10.1.0.0/16", remote="10.2.0.0/16", **kw)


def b_child(**kw: Any) -> ChildConfig:
    return child("net", local="10.2.0.0/16", remote="10.1.0.0/16", **kw)


def policy(**conn_kw: Any) -> QcdPolicy:
    """QcdPolicy with per-connection (taker) defaults overridden."""
    glob = {k: conn_kw.pop(k) for k in list(conn_kw) if k in QcdPolicy.__dataclass_fields__}
    return QcdPolicy(conn=replace(ConnPolicy(), **conn_kw), **glob)


@dataclass
class Gateway:
    """A gateway's lasting identity: what survives a crash (config, secret, SPI map)."""

    name: str
    ip: str
    cfg: QuickikeConfig
    policy: QcdPolicy | None
    store: SecretStore = field(default_factory=MemorySecretStore)
    spi_map: ChildSpiMap | None = None
    seed: int = 1
    node: Node | None = None

    def extensions(self) -> list[QcdExtension]:
        if self.policy is None:
            return []
        return [QcdExtension(self.policy, self.store, self.spi_map)]

    def boot(self, net: Net) -> Node:
        self.node = net.add(self.name, self.ip, self.cfg, self.seed, extensions=self.extensions())
        return self.node

    def crash_and_reboot(self, net: Net) -> Node:
        """The process dies with all SAs; a fresh engine starts on the same stores."""
        assert self.node is not None
        self.seed += 100
        self.node = net.replace(self.node, self.cfg, self.seed, extensions=self.extensions())
        self.node.engine.start(net.now)
        net.step()
        return self.node

    @property
    def ext(self) -> QcdExtension:
        assert self.node is not None
        (e,) = [x for x in self.node.engine.extensions if isinstance(x, QcdExtension)]
        return e


def gateways(*, a_children: tuple[ChildConfig, ...] | None = None,
             b_children: tuple[ChildConfig, ...] | None = None,
             a_policy: QcdPolicy | None = DEFAULT_POLICY,
             b_policy: QcdPolicy | None = DEFAULT_POLICY,
             a_kw: dict[str, Any] | None = None, b_kw: dict[str, Any] | None = None,
             latency: float = 0.0, settings: DaemonSettings | None = None,
             ) -> tuple[Net, Gateway, Gateway]:
    net = Net(latency=latency)
    ca = conn("gw", A_IP, B_IP, "a.example", "b.example",
              children=a_children or (a_child(start_action=StartAction.START),), **(a_kw or {}))
    cb = conn("gw", B_IP, A_IP, "b.example", "a.example",
              children=b_children or (b_child(),), **(b_kw or {}))
    ga = Gateway("A", A_IP, config(ca, settings=settings), a_policy, seed=1)
    gb = Gateway("B", B_IP, config(cb, settings=settings), b_policy, seed=2)
    ga.boot(net)
    gb.boot(net)
    return net, ga, gb


def bring_up(net: Net, ga: Gateway, gb: Gateway, settle: float = 1.0) -> None:
    assert ga.node is not None and gb.node is not None
    ga.node.engine.start(net.now)
    gb.node.engine.start(net.now)
    if not any(True for _ in ga.node.engine.ike_sas()):
        ga.node.engine.initiate("gw", None, net.now)  # A's connection does not start by itself
    net.advance(settle)
    assert live(ga) and live(gb), (ga.node.events, gb.node.events)


def live(g: Gateway) -> list[IkeSa]:
    assert g.node is not None
    return [s for s in g.node.engine.ike_sas() if s.state != IkeState.DESTROYED and s.auth_done]


def only_sa(g: Gateway) -> IkeSa:
    sas = live(g)
    assert len(sas) == 1, sas
    return sas[0]


def esp_from(sender: Gateway, receiver: Gateway, net: Net) -> None:
    """``sender``'s data plane sends ESP on its CHILD SA; ``receiver`` has no SA for it."""
    assert receiver.node is not None
    spi = only_sa(sender).children[0].spi_out
    receiver.node.engine.unknown_esp_spi(spi, (receiver.ip, 500), (sender.ip, 500), net.now)


def qcd_events(node: Node, *kinds: str) -> list[ev.ExtensionEvent]:
    return [e for e in node.events if isinstance(e, ev.ExtensionEvent) and e.source == "qcd"
            and (not kinds or e.kind in kinds)]


def story(node: Node, since: float = 0.0) -> list[tuple[Any, ...]]:
    """The node's events as compact tuples: messages, QCD decisions, SA changes."""
    out: list[tuple[Any, ...]] = []
    for e in node.events:
        if e.time < since:
            continue
        if isinstance(e, ev.MessageTrace):
            kind = "resp" if e.response else "req"
            body = ("SK{" + ",".join(e.payloads) + "}") if e.protected else ",".join(e.payloads)
            out.append(("->" if e.sent else "<-", e.exchange, kind, body))
        elif isinstance(e, ev.ExtensionEvent) and e.kind not in (
                "secret-loaded", "secret-created"):
            out.append(("qcd", e.kind))
        elif isinstance(e, ev.IkeSaDown):
            out.append(("ike-down", e.reason))
        elif isinstance(e, ev.IkeSaUp):
            out.append(("ike-up",))
        elif isinstance(e, ev.ChildSaUp):
            out.append(("child-up",))
        elif isinstance(e, ev.ChildSaDown):
            out.append(("child-down", e.reason))
        elif isinstance(e, ev.LivenessCheck):
            out.append(("liveness", e.why))
    return out


def traces(node: Node, since: float = 0.0) -> list[ev.MessageTrace]:
    return [e for e in node.events if isinstance(e, ev.MessageTrace) and e.time >= since]


def qcd_on_wire(net: Net) -> int:
    """QCD notifies visible in unprotected datagrams plus those in protected ones (traced)."""
    count = 0
    for node in net.nodes.values():
        for t in traces(node):
            if t.sent:
                count += t.payloads.count("N(QUICK_CRASH_DETECTION)")
    return count


def auto_child(side: str, **kw: Any) -> ChildConfig:
    """A CHILD that the survivor re-creates at once (dpd_action/close_action restart)."""
    base = a_child if side == "a" else b_child
    return base(dpd_action=DpdAction.RESTART, close_action=CloseAction.START, **kw)


def with_qcd(cfg: QuickikeConfig, *, enable: bool = True,
             conn_qcd: bool | None = None, options: dict[str, str] | None = None
             ) -> QuickikeConfig:
    """The same configuration with QCD switched globally and/or per connection."""
    conns: dict[str, ConnectionConfig] = {}
    for name, c in cfg.connections.items():
        conns[name] = replace(c, qcd=c.qcd if conn_qcd is None else conn_qcd,
                              qcd_options=MappingProxyType(dict(options or {})))
    settings = replace(cfg.settings, qcd=QcdSettings(enable=enable))
    return replace(cfg, connections=MappingProxyType(conns), settings=settings)


def events_of(node: Node, kind: type[ev.Event]) -> list[Any]:
    return [e for e in node.events if isinstance(e, kind)]


def names(items: Iterable[Any]) -> list[str]:
    return [type(i).__name__ for i in items]


# --------------------------------------------------------------------------
# crafted packets (attackers, replays, forged hints)
# --------------------------------------------------------------------------

def unprotected(spi_i: bytes, spi_r: bytes, exchange: int, flags: int, message_id: int,
                payloads: list[Any]) -> bytes:
    from quickike.wire.enums import ExchangeType
    from quickike.wire.message import Message

    return Message(spi_i, spi_r, ExchangeType(exchange), flags, message_id, payloads).encode()


def token_reply_to(sa: IkeSa, tokens: list[bytes], *, message_id: int | None = None,
                   exchange: int = 37, invalid: str = "ike") -> bytes:
    """What a rebooted peer answers to a request on ``sa`` from the taker (or a forgery of it)."""
    from quickike.qcd.tokens import token_notify
    from quickike.wire.enums import FLAG_INITIATOR, FLAG_RESPONSE, NotifyType
    from quickike.wire.payloads import notify

    flags = FLAG_RESPONSE | (0 if sa.initiator else FLAG_INITIATOR)
    mid = message_id if message_id is not None else (sa.pending.message_id if sa.pending else 0)
    first = notify(NotifyType.INVALID_IKE_SPI)
    return unprotected(sa.spi_i, sa.spi_r, exchange, flags, mid,
                       [first, *(token_notify(t) for t in tokens)])


def invalid_spi(spi: bytes, tokens: list[bytes] = (), *,  # type: ignore[assignment]
                spis: tuple[bytes, bytes] = (b"\x11" * 8, b"\x00" * 8)) -> bytes:
    """An unprotected INFORMATIONAL N(INVALID_SPI)[, N(QCD_TOKEN)+] (RFC 7296 §1.5, RFC 6290 §8.2)."""
    from quickike.qcd.tokens import token_notify
    from quickike.wire.enums import FLAG_INITIATOR, NotifyType
    from quickike.wire.payloads import notify

    return unprotected(spis[0], spis[1], 37, FLAG_INITIATOR, 0,
                       [notify(NotifyType.INVALID_SPI, spi),
                        *(token_notify(t) for t in tokens)])


def protected_request(spi_i: bytes, spi_r: bytes, *, message_id: int = 5, exchange: int = 37,
                      initiator: bool = True, body: bytes = b"\x00" * 40) -> bytes:
    """A request with an SK payload nobody can read (what a spoofer can make from two SPIs)."""
    from quickike.wire.enums import FLAG_INITIATOR
    from quickike.wire.payloads import Encrypted

    return unprotected(spi_i, spi_r, exchange, FLAG_INITIATOR if initiator else 0, message_id,
                       [Encrypted(0, body)])


def deliver(g: Gateway, data: bytes, net: Net, src: tuple[str, int]) -> None:
    """``data`` arrives at ``g`` from ``src`` now; its answers go out on the next step."""
    assert g.node is not None
    g.node.engine.receive_datagram(data, (g.ip, 500), src, net.now)
    net.step()


def sent_by(net: Net, ip: str, since: float = 0.0) -> list[bytes]:
    return [d.data for t, d in net.wire if d.local[0] == ip and t >= since]


def peer_tokens(maker: Gateway, taker_sa: IkeSa) -> list[bytes]:
    """The tokens ``maker`` presents after a reboot for the taker's SA (one per generation)."""
    return maker.ext._tokens_for(taker_sa.spi_i, taker_sa.spi_r, taker_sa.local[0])
