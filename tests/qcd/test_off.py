"""QCD switched off (RFC 6290 §8.1 MUST) behaves as plain RFC 7296.

No token on the wire, and a rebooted peer's INVALID_IKE_SPI only ever
triggers a liveness check, which ends in strongSwan's dead-peer verdict.
"""

from __future__ import annotations

from typing import Any

import pytest

from quickike.engine import events as ev
from quickike.engine.config import StartAction
from quickike.qcd import QcdPolicy, parse_qcd_settings

from .helpers import (
    auto_child,
    bring_up,
    esp_from,
    events_of,
    gateways,
    live,
    only_sa,
    qcd_events,
    qcd_on_wire,
    traces,
    with_qcd,
)

GIVE_UP = 165.06  # charon's default retransmission schedule


def _crash_b(**kw: Any) -> tuple[Any, Any, Any, float]:
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),), **kw)
    bring_up(net, ga, gb)
    gb.crash_and_reboot(net)
    esp_from(ga, gb, net)
    crashed = net.now
    net.advance(10.0)
    return net, ga, gb, crashed


def _plain_rfc7296(net: Any, ga: Any, gb: Any, crashed: float) -> None:
    a = ga.node
    # the rebooted B answered the liveness check with a bare INVALID_IKE_SPI ...
    answers = [t for t in traces(gb.node) if t.sent and t.response and t.exchange == "INFORMATIONAL"]
    assert answers and all(t.payloads == ("N(INVALID_IKE_SPI)",) for t in answers)
    # ... which A took as a hint only: the SA is still there, its one check outstanding
    sa = only_sa(ga)
    assert sa.pending is not None and a.engine.counters["hint-invalid-ike-spi"] >= 1
    assert [c.why for c in events_of(a, ev.LivenessCheck)] == ["hint-invalid-spi"]
    assert not qcd_events(a, "teardown", "token-accepted")
    assert qcd_on_wire(net) == 0
    # only the exhausted retransmissions end it (RFC 7296 §2.4), then dpd_action restarts it
    check = events_of(a, ev.LivenessCheck)[0].time
    net.advance(GIVE_UP + 5.0)
    (dead,) = events_of(a, ev.PeerDead)
    assert dead.time == pytest.approx(check + GIVE_UP, abs=0.01)
    assert next(d.reason for d in events_of(a, ev.IkeSaDown)) == "dead-peer"
    assert live(ga)


def test_qcd_disabled_globally() -> None:
    off = QcdPolicy(enable=False)
    net, ga, gb, crashed = _crash_b(a_policy=off, b_policy=off)
    assert not any(e.kind.startswith("secret") for e in qcd_events(gb.node))  # no file touched
    _plain_rfc7296(net, ga, gb, crashed)


def test_disabled_extension_is_the_same_as_no_extension() -> None:
    runs = []
    for policy in (QcdPolicy(enable=False), None):
        _net, ga, gb, _crashed = _crash_b(a_policy=policy, b_policy=policy)
        runs.append([(t.sent, t.exchange, t.response, t.payloads, round(t.time, 6))
                     for n in (ga.node, gb.node) for t in traces(n)])
    assert runs[0] == runs[1]


def test_enable_no_in_the_configuration() -> None:
    _net, ga, _gb = gateways()
    policy = parse_qcd_settings(with_qcd(ga.cfg, enable=False).settings.qcd)
    assert not policy.enable
    net2, ga2, gb2, crashed = _crash_b(a_policy=policy, b_policy=policy)
    _plain_rfc7296(net2, ga2, gb2, crashed)


def test_qcd_off_for_the_survivors_connection() -> None:
    """A (the survivor) has ``qcd = no``: it neither gives nor takes tokens on that connection."""
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),),
                           a_kw={"qcd": False})
    bring_up(net, ga, gb)
    a_auth = [t for t in traces(ga.node) if t.exchange == "IKE_AUTH"]
    assert "N(QUICK_CRASH_DETECTION)" not in a_auth[0].payloads  # A gives none
    assert "N(QUICK_CRASH_DETECTION)" in a_auth[1].payloads  # B (QCD on) still gives its own
    assert only_sa(ga).ext_get("qcd") is None  # ... which A does not keep
    assert only_sa(gb).ext_get("qcd").peer_digests == []
    gb.crash_and_reboot(net)
    esp_from(ga, gb, net)
    net.advance(10.0)
    answers = [t for t in traces(gb.node) if t.sent and t.response and t.exchange == "INFORMATIONAL"]
    assert answers[0].payloads == ("N(INVALID_IKE_SPI)", "N(QUICK_CRASH_DETECTION)")
    assert {e.attrs["reason"] for e in qcd_events(ga.node, "token-rejected")} == {"qcd-off"}
    assert not qcd_events(ga.node, "teardown")
    assert only_sa(ga).pending is not None  # the liveness check goes on, RFC 7296 style


def test_qcd_off_for_the_responders_connection() -> None:
    net, ga, gb = gateways(b_kw={"qcd": False})
    bring_up(net, ga, gb)
    b_sent = [t for t in traces(gb.node) if t.sent and t.exchange == "IKE_AUTH"]
    assert "N(QUICK_CRASH_DETECTION)" not in b_sent[0].payloads
    assert only_sa(gb).ext_get("qcd") is None and only_sa(ga).ext_get("qcd").peer_digests == []


def test_per_connection_options_reach_the_taker() -> None:
    from types import MappingProxyType

    options = MappingProxyType({"require_pending": "no", "accept_delay": "0",
                                "rekey_before_delete": "no"})
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),),
                           a_kw={"qcd_options": options})
    bring_up(net, ga, gb)
    cp = ga.ext.conn_policy(only_sa(ga).conn)  # type: ignore[arg-type]
    assert not cp.require_pending and cp.accept_delay == 0 and not cp.rekey_before_delete


def test_bad_connection_options_stop_the_start_and_switch_qcd_off_after_a_reload() -> None:
    from dataclasses import replace
    from types import MappingProxyType

    from engine.harness import Net
    from quickike.qcd import MemorySecretStore, QcdConfigError, QcdExtension

    net, ga, gb = gateways()
    bad = replace(ga.cfg.connections["gw"], qcd_options=MappingProxyType({"dampening": "often"}))
    bad_cfg = replace(ga.cfg, connections=MappingProxyType({"gw": bad}))
    with pytest.raises(QcdConfigError) as e:
        Net().add("X", "192.0.2.9", bad_cfg, 1,
                  extensions=[QcdExtension(QcdPolicy(), MemorySecretStore())])
    assert e.value.key == "connections.gw.qcd_options.dampening"
    # the running gateway takes the same configuration on a reload: QCD off for it, loudly
    ga.node.engine.load_config(bad_cfg, net.now)
    bring_up(net, ga, gb)
    assert ga.node.engine.counters["qcd:config-errors"] == 1
    assert "N(QUICK_CRASH_DETECTION)" not in traces(ga.node)[2].payloads  # A's IKE_AUTH
