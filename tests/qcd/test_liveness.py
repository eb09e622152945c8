"""Liveness checks and hints with QCD on (seed issue 200, RFC 7296 §2.4 and §2.21).

Outgoing-only traffic starts a liveness check after dpd_delay; a hint
(INVALID_SPI / INVALID_IKE_SPI) without a valid token only ever starts the
engine's rate-limited liveness check and never stacks a second one.
"""

from __future__ import annotations

import pytest

from quickike.engine import events as ev
from quickike.engine.config import StartAction
from quickike.qcd import MemorySecretStore

from .helpers import (
    A_IP,
    B_IP,
    auto_child,
    bring_up,
    deliver,
    events_of,
    gateways,
    invalid_spi,
    live,
    only_sa,
    qcd_events,
    token_reply_to,
    traces,
)

DPD = 30.0


def _outbound_every_second(ga, net, seconds: float) -> None:
    sa = only_sa(ga)
    spi_in = sa.children[0].spi_in
    for _ in range(int(seconds)):
        ga.node.dataplane.traffic(spi_in, net.now, outbound=10)
        net.advance(1.0)


def test_outgoing_only_traffic_leads_to_liveness_check_token_and_teardown() -> None:
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),),
                           a_kw={"dpd_delay": DPD}, latency=0.005)
    bring_up(net, ga, gb)
    up_at = events_of(ga.node, ev.IkeSaUp)[0].time
    gb.crash_and_reboot(net)  # B lost its SAs; its data plane drops A's ESP without a word
    _outbound_every_second(ga, net, 40)
    (check,) = events_of(ga.node, ev.LivenessCheck)
    assert check.why == "dpd"
    # last authenticated inbound traffic was the IKE_AUTH answer: the check follows dpd_delay later
    assert check.time == pytest.approx(up_at + DPD, abs=1e-6)
    (teardown,) = qcd_events(ga.node, "teardown")
    # RTT 10 ms, then the acceptance wait: max(10 ms floor, until 1.5 RTT after the check left)
    assert teardown.time - check.time == pytest.approx(0.020)
    assert teardown.attrs["detection_time"] == pytest.approx(0.020)
    assert only_sa(ga).uid != events_of(ga.node, ev.IkeSaUp)[0].ike_uid


def test_inbound_traffic_postpones_the_liveness_check() -> None:
    net, ga, gb = gateways(a_kw={"dpd_delay": DPD})
    bring_up(net, ga, gb)
    spi_in = only_sa(ga).children[0].spi_in
    for _ in range(90):
        ga.node.dataplane.traffic(spi_in, net.now, inbound=1, outbound=1)
        net.advance(1.0)
    assert not events_of(ga.node, ev.LivenessCheck)


def test_hint_without_valid_token_only_starts_a_liveness_check() -> None:
    """A rebooted peer that lost its secret: its tokens do not verify, RFC 7296 takes over."""
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),))
    bring_up(net, ga, gb)
    gb.store = MemorySecretStore()  # the secret is gone with the disk
    gb.crash_and_reboot(net)
    sa = only_sa(ga)
    deliver(ga, invalid_spi(sa.children[0].spi_out), net, (B_IP, 500))
    net.advance(0.5)
    rejected = qcd_events(ga.node, "token-rejected")
    assert [r.attrs["reason"] for r in rejected] == ["mismatch"]
    assert not qcd_events(ga.node, "token-accepted", "teardown")
    assert only_sa(ga) is sa and sa.usable
    assert ga.node.engine.counters["liveness-checks"] == 1
    # ... and after strongSwan's retransmission schedule the peer is declared dead as usual
    net.advance(170.0)
    assert [d.reason for d in events_of(ga.node, ev.IkeSaDown)][:1] == ["dead-peer"]


def test_forged_hints_against_a_live_peer_change_nothing() -> None:
    net, ga, gb = gateways()
    bring_up(net, ga, gb)
    sa = only_sa(ga)
    forged = b"\x42" * 32
    deliver(ga, invalid_spi(sa.children[0].spi_out, [forged]), net, ("198.51.100.9", 500))
    net.advance(0.5)
    deliver(ga, token_reply_to(sa, [forged], message_id=sa.msg_id_out), net, ("198.51.100.9", 500))
    net.advance(5.0)
    assert only_sa(ga) is sa and sa.usable and len(sa.children) == 1
    assert not qcd_events(ga.node, "token-accepted", "teardown")
    assert {r.attrs["reason"] for r in qcd_events(ga.node, "token-rejected")} == {"mismatch"}
    # the one liveness check was answered by the live peer
    assert ga.node.engine.counters["liveness-answered"] >= 1
    # and neither unprotected message got an answer (RFC 7296 §2.21.4, RFC 6290 §4.5)
    assert not [t for t in traces(ga.node) if t.sent and not t.protected and t.response]


def test_hint_while_a_request_is_outstanding_does_not_stack_another_check() -> None:
    net, ga, gb = gateways(a_kw={"dpd_delay": DPD})
    bring_up(net, ga, gb)
    net.down.add(B_IP)  # B is silent: the first check stays outstanding
    sa = only_sa(ga)
    assert ga.node.engine.liveness_check(sa.uid, net.now)
    for _i in range(10):
        net.advance(0.3)
        deliver(ga, invalid_spi(sa.children[0].spi_out), net, (B_IP, 500))
        deliver(ga, token_reply_to(sa, [], message_id=sa.msg_id_out), net, (B_IP, 500))
    assert len(events_of(ga.node, ev.LivenessCheck)) == 1
    assert ga.node.engine.counters["liveness-checks"] == 1
    assert sa.pending is not None and sa.pending.exchange == 37


def test_hints_are_rate_limited() -> None:
    net, ga, gb = gateways()
    bring_up(net, ga, gb)
    sa = only_sa(ga)
    for _ in range(50):
        deliver(ga, invalid_spi(sa.children[0].spi_out), net, ("203.0.113.5", 500))
        net.settle()  # the live peer answers each check at once
    checks = ga.node.engine.counters["liveness-checks"]
    assert 1 <= checks <= 3  # the engine's hint bucket: burst 3 per SA
    assert ga.node.engine.counters["hint-rate-limited"] == 50 - checks
    assert live(ga) == [sa]


def test_first_hint_starts_the_detection_clock() -> None:
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),),
                           latency=0.01)
    bring_up(net, ga, gb)
    gb.crash_and_reboot(net)
    sa = only_sa(ga)
    hint_at = net.now
    deliver(ga, invalid_spi(sa.children[0].spi_out), net, (B_IP, 500))
    net.advance(1.0)
    (teardown,) = qcd_events(ga.node, "teardown")
    assert teardown.attrs["detection_time"] == pytest.approx(teardown.time - hint_at)
    assert A_IP in {d.local[0] for _, d in net.wire}
