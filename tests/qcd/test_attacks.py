"""Seed issue 202 and RFC 6290 §8-§9: spoofed, replayed, forged and flooded tokens.

The attacker knows the IKE SPIs of the A-B tunnel, can send to a hot-standby
C that shares B's secret (§6), can capture C's answer and can inject packets
to A.  Without the defences A tears its tunnel down; with each defence A
keeps it and says so.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.harness import Net
from quickike.engine import Datagram
from quickike.engine import events as ev
from quickike.engine.config import StartAction
from quickike.engine.sa import IkeSa
from quickike.qcd import MemorySecretStore, QcdPolicy, TokenMethod
from quickike.qcd.settings import OverLimit
from quickike.wire.enums import FLAG_INITIATOR
from quickike.wire.message import decode_message

from .helpers import (
    A_IP,
    B_IP,
    Gateway,
    auto_child,
    bring_up,
    deliver,
    events_of,
    gateways,
    invalid_spi,
    live,
    only_sa,
    peer_tokens,
    policy,
    protected_request,
    qcd_events,
    sent_by,
    token_reply_to,
)

C_IP = "192.0.2.3"
ATTACKER = "203.0.113.66"

NO_DEFENCE = dict(require_pending=False, accept_delay=0.0, accept_rtt_factor=0.0,
                  accept_delay_max=0.0, rekey_before_delete=False, dampening=0.0)


def _setup(taker: QcdPolicy, *, method: TokenMethod = TokenMethod.SPI, latency: float = 0.005,
           maker_limits: dict[str, float] | None = None) -> tuple[Net, Gateway, Gateway, Gateway]:
    maker = replace(QcdPolicy(token_method=method), **(maker_limits or {}))
    net, ga, gb = gateways(a_policy=replace(taker, token_method=method), b_policy=maker,
                           a_children=(auto_child("a", start_action=StartAction.START),),
                           latency=latency)
    bring_up(net, ga, gb)
    # the hot standby: B's configuration and a copy of B's secret file, no SAs
    gc = Gateway("C", C_IP, gb.cfg, maker, MemorySecretStore(gb.store.data), seed=3)  # type: ignore[attr-defined]
    gc.boot(net)
    return net, ga, gb, gc


def _harvest(net: Net, sa: IkeSa, *, message_id: int, src: str = ATTACKER) -> bytes | None:
    """Spoof a request with the tunnel's SPIs to the standby; capture what it answers."""
    req = protected_request(sa.spi_i, sa.spi_r, message_id=message_id, initiator=sa.initiator)
    since = net.now
    net.inject(Datagram(req, (src, 500), (C_IP, 500)), (src, 500), delay=0.0)
    net.settle()
    answers = [d.data for t, d in net.wire if t >= since and d.local[0] == C_IP and d.remote[0] == src]
    return answers[0] if answers else None


def _attack(net: Net, ga: Gateway, *, message_id: int | None = None) -> IkeSa:
    sa = only_sa(ga)
    mid = message_id if message_id is not None else sa.msg_id_out
    stolen = _harvest(net, sa, message_id=mid)
    assert stolen is not None and b"\x40\x23" in stolen  # notify type 16419 on the wire
    deliver(ga, stolen, net, (B_IP, 500))  # replayed to A as if from B
    return sa


def _teardowns(g: Gateway) -> int:
    assert g.node is not None
    return g.node.engine.counters["qcd:teardowns"]


def test_without_defences_a_harvested_token_tears_the_tunnel_down() -> None:
    net, ga, _gb, _gc = _setup(policy(**NO_DEFENCE))
    sa = _attack(net, ga)
    net.advance(1.0)
    assert _teardowns(ga) == 1
    assert sa.state.value == "DESTROYED"
    assert [d.reason for d in events_of(ga.node, ev.IkeSaDown)] == ["qcd"]
    # the spoofed teardown cost A a tunnel outage: its CHILD SA was gone before the new one
    log = [k for k, _ in ga.node.dataplane.log if k in ("install", "remove")]
    assert log[:3] == ["install", "remove", "install"]


def test_pending_request_defence_keeps_the_sa() -> None:
    net, ga, _gb, _gc = _setup(policy(**{**NO_DEFENCE, "require_pending": True}))
    sa = _attack(net, ga)
    net.advance(1.0)
    assert _teardowns(ga) == 0 and live(ga) == [sa]
    (rej,) = qcd_events(ga.node, "token-rejected")
    assert rej.attrs["reason"] == "unsolicited" and rej.attrs["valid"] is True
    # the hint led to a liveness check, which the live B answered
    assert ga.node.engine.counters["liveness-answered"] == 1


def test_acceptance_delay_catches_the_genuine_answer() -> None:
    """The attacker answers A's outstanding request before B does; B's real answer follows."""
    cp = {**NO_DEFENCE, "accept_delay": 0.010, "accept_rtt_factor": 1.5, "accept_delay_max": 2.0}
    net, ga, _gb, _gc = _setup(policy(**cp), latency=0.010)
    sa = only_sa(ga)
    assert ga.node.engine.liveness_check(sa.uid, net.now)
    net.step()
    pending = sa.pending
    assert pending is not None
    _attack(net, ga, message_id=pending.message_id)  # arrives at once, B's answer in 20 ms
    net.advance(1.0)
    assert _teardowns(ga) == 0 and live(ga) == [sa] and sa.usable
    (acc,) = qcd_events(ga.node, "token-accepted")
    (spoof,) = qcd_events(ga.node, "spoof-suspected")
    assert spoof.attrs["evidence"] == "protected IKE message"
    assert spoof.time - acc.time == pytest.approx(0.020)  # B's answer: one RTT after the request
    assert ga.node.engine.counters["qcd:spoof-suspected"] == 1


def test_acceptance_delay_probes_when_nothing_is_outstanding() -> None:
    net, ga, _gb, _gc = _setup(policy(**{**NO_DEFENCE, "accept_delay": 0.010,
                                      "accept_rtt_factor": 1.5, "accept_delay_max": 2.0}),
                             latency=0.010)
    sa = _attack(net, ga)
    net.advance(1.0)
    assert live(ga) == [sa] and _teardowns(ga) == 0
    assert [c.why for c in events_of(ga.node, ev.LivenessCheck)] == ["qcd-verify"]
    assert qcd_events(ga.node, "spoof-suspected")


def test_inbound_esp_during_the_wait_is_proof_of_life() -> None:
    net, ga, _gb, _gc = _setup(policy(**{**NO_DEFENCE, "accept_delay": 0.5, "accept_delay_max": 1.0}))
    net.down.add(B_IP)  # B's IKE answers are lost, but its ESP still arrives
    sa = _attack(net, ga)
    ga.node.dataplane.traffic(sa.children[0].spi_in, net.now + 0.1, inbound=5)
    net.advance(1.0)
    assert live(ga) == [sa]
    assert qcd_events(ga.node, "spoof-suspected")[0].attrs["evidence"] == "inbound ESP"


def test_rekey_before_delete_keeps_the_tunnel_up() -> None:
    net, ga, gb, _gc = _setup(policy(**{**NO_DEFENCE, "rekey_before_delete": True}))
    sa = _attack(net, ga)
    # while A builds the replacement, the live B happens to check on the old SA
    assert gb.node.engine.liveness_check(only_sa(gb).uid, net.now)
    net.advance(1.0)
    (spoof,) = qcd_events(ga.node, "spoof-suspected")
    assert spoof.attrs["evidence"] == "protected IKE message during replacement"
    (teardown,) = qcd_events(ga.node, "teardown")
    assert teardown.attrs["mode"] == "make-before-break"
    # A always had a CHILD SA for the traffic: the new pair came before the old went
    installed = 0
    for kind, _ in ga.node.dataplane.log:
        installed += {"install": 1, "remove": -1}.get(kind, 0)
        if kind == "remove":
            assert installed >= 1
    assert len(live(ga)) == 1 and only_sa(ga) is not sa


def test_dampening_delays_a_second_teardown_until_the_live_peer_shows_up() -> None:
    cp = {**NO_DEFENCE, "dampening": 2.0, "dampening_max": 60.0}
    net, ga, gb, _gc = _setup(policy(**cp))
    # a genuine crash of B first: one QCD teardown, tunnel rebuilt with new SPIs
    gb.crash_and_reboot(net)
    esp_sa = only_sa(ga)
    gb.node.engine.unknown_esp_spi(esp_sa.children[0].spi_out, (B_IP, 500), (A_IP, 500), net.now)
    net.advance(0.5)
    assert _teardowns(ga) == 1
    # moments later the attacker harvests the *new* SA's token from the standby
    sa = _attack(net, ga)
    (damp,) = qcd_events(ga.node, "dampened")
    assert damp.attrs["until"] > net.now
    net.advance(5.0)
    assert _teardowns(ga) == 1 and live(ga) == [sa]
    assert qcd_events(ga.node, "spoof-suspected")


def test_address_bound_tokens_are_useless_from_another_address() -> None:
    """§5.2: the standby binds the token to the requester's address (the attacker's)."""
    net, ga, _gb, _gc = _setup(policy(**NO_DEFENCE), method=TokenMethod.SPI_ADDRESS)
    sa = _attack(net, ga)
    assert _teardowns(ga) == 0 and live(ga) == [sa]
    assert qcd_events(ga.node, "token-rejected")[0].attrs["reason"] == "mismatch"


def test_address_bound_tokens_reflected_at_the_taker_need_the_other_defences() -> None:
    """§9.2: spoofing the taker's address makes the standby send a valid token to the taker."""
    for defended in (False, True):
        cp = NO_DEFENCE if not defended else {**NO_DEFENCE, "require_pending": True}
        net, ga, _gb, _gc = _setup(policy(**cp), method=TokenMethod.SPI_ADDRESS)
        sa = only_sa(ga)
        _harvest(net, sa, message_id=sa.msg_id_out, src=A_IP)  # C answers A directly
        net.advance(1.0)
        assert (_teardowns(ga) == 0) is defended
        if defended:
            assert live(ga) == [sa]


def test_replayed_and_forged_tokens_never_count() -> None:
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),))
    bring_up(net, ga, gb)
    gb.crash_and_reboot(net)
    old = only_sa(ga)
    since = net.now
    gb.node.engine.unknown_esp_spi(old.children[0].spi_out, (B_IP, 500), (A_IP, 500), net.now)
    net.advance(1.0)
    assert _teardowns(ga) == 1
    genuine = next(d for d in sent_by(net, B_IP, since) if decode_message(d).is_response)
    new = only_sa(ga)
    stored_tokens = peer_tokens(gb, new)
    # the old answer again, a forged token, the old token under the new SPIs, bad lengths
    replays = [
        genuine,
        token_reply_to(new, [b"\x01" * 32]),
        token_reply_to(new, [peer_tokens(gb, old)[0]]),
        token_reply_to(new, [stored_tokens[0][:15], stored_tokens[0] + b"\x00" * 100]),
        token_reply_to(new, [b"\x02" * 32] * 4 + stored_tokens),  # the real one is fifth
    ]
    for data in replays:
        deliver(ga, data, net, (B_IP, 500))
        net.advance(0.2)
    assert _teardowns(ga) == 1 and live(ga) == [new]
    reasons = [e.attrs["reason"] for e in qcd_events(ga.node, "token-rejected")]
    assert reasons == ["no-sa", "mismatch", "mismatch", "bad-length", "mismatch"]
    assert ga.node.engine.counters["qcd:tokens-accepted"] == 1


def test_protocol_id_zero_tokens_are_accepted() -> None:
    """Erratum 3449: the Protocol ID of a received QCD notify is ignored."""
    from quickike.wire.enums import FLAG_RESPONSE, NotifyType, ProtocolId
    from quickike.wire.payloads import notify

    from .helpers import unprotected

    net, ga, gb = gateways(a_policy=policy(**NO_DEFENCE))
    bring_up(net, ga, gb)
    sa = only_sa(ga)
    token = gb.ext._tokens_for(sa.spi_i, sa.spi_r, A_IP)[0]
    data = unprotected(sa.spi_i, sa.spi_r, 37, FLAG_RESPONSE, 0,
                       [notify(NotifyType.INVALID_IKE_SPI),
                        notify(NotifyType.QUICK_CRASH_DETECTION, token, protocol=ProtocolId.NONE)])
    deliver(ga, data, net, ("198.51.100.1", 4500))  # from any address and port (§3)
    assert _teardowns(ga) == 1


#: small limits so that the flood tests stay small; the defaults are 50/s per source, 2000/s
#: overall (docs/qcd.md: sized for a gateway whose 10,000 peers all ask at once)
SMALL_LIMITS = {
    "reply_rate": 10.0, "reply_burst": 20.0, "reply_rate_global": 100.0, "reply_burst_global": 200.0,
    "verify_rate": 5.0, "verify_burst": 10.0, "verify_rate_global": 50.0, "verify_burst_global": 100.0,
}


def test_default_rate_limits_are_sized_for_big_gateways() -> None:
    p = QcdPolicy()
    assert (p.reply_rate, p.reply_burst, p.reply_rate_global, p.reply_burst_global) == (50, 100, 2000, 4000)
    assert (p.verify_rate, p.verify_burst, p.verify_rate_global, p.verify_burst_global) == (50, 100, 2000, 4000)


def test_maker_floods_are_rate_limited() -> None:
    net, ga, _gb, gc = _setup(QcdPolicy(), maker_limits=SMALL_LIMITS)
    sa = only_sa(ga)
    c = gc.node
    assert c is not None
    # one source, 1000 spoofed requests within one second
    for i in range(1000):
        req = protected_request(sa.spi_i, sa.spi_r, message_id=i)
        c.engine.receive_datagram(req, (C_IP, 500), (ATTACKER, 500), net.now + i / 1000)
    sent = c.engine.datagrams_to_send()
    tokens = [d for d in sent if b"\x40\x23" in d.data]
    plain = [d for d in sent if b"\x40\x23" not in d.data]
    assert len(tokens) <= 20 + 10 * 1.0 + 1  # reply_burst + reply_rate * 1 s
    assert c.engine.counters["qcd:tokens-rate-limited"] == 1000 - len(tokens)
    assert len(plain) <= 20 + 10  # the engine's own limit on plain INVALID_IKE_SPI
    # many sources: the global bucket holds
    c.engine.counters.clear()
    for i in range(3000):
        req = protected_request(sa.spi_i, sa.spi_r, message_id=i)
        src = f"198.18.{i // 250}.{i % 250 + 1}"
        c.engine.receive_datagram(req, (C_IP, 500), (src, 500), net.now + 2 + i / 3000)
    tokens = [d for d in c.engine.datagrams_to_send() if b"\x40\x23" in d.data]
    assert len(tokens) <= 200 + 100 * 1.0 + 1


def test_maker_over_limit_can_stay_silent() -> None:
    net, ga, _gb, gc = _setup(QcdPolicy())
    gc.node.engine.extensions.clear()
    from quickike.qcd import QcdExtension

    ext = QcdExtension(QcdPolicy(over_limit=OverLimit.SILENT, reply_burst=1, reply_rate=0.0),
                       gc.store)
    gc.node.engine.add_extension(ext)
    sa = only_sa(ga)
    for i in range(10):
        gc.node.engine.receive_datagram(protected_request(sa.spi_i, sa.spi_r, message_id=i),
                                        (C_IP, 500), (ATTACKER, 500), net.now)
    assert len(gc.node.engine.datagrams_to_send()) == 1


def test_taker_verification_floods_are_rate_limited() -> None:
    net, ga, gb = gateways(a_policy=replace(QcdPolicy(), **SMALL_LIMITS))
    bring_up(net, ga, gb)
    sa = only_sa(ga)
    for i in range(500):
        ga.node.engine.receive_datagram(token_reply_to(sa, [bytes([i % 256]) * 32]),
                                        (A_IP, 500), ("198.51.100.7", 500), net.now)
    c = ga.node.engine.counters
    assert c["qcd:tokens-rejected"] <= 10 + 1  # verify_burst (+ the refill of a few µs)
    assert c["qcd:verify-rate-limited"] == 500 - c["qcd:tokens-rejected"]
    assert c["liveness-checks"] <= 3 and live(ga) == [sa]


def test_never_a_token_for_an_sa_that_exists() -> None:
    """§9.2: a flipped I flag or reserved SPIs make the engine miss the SA; QCD does not."""
    net, ga, gb = gateways()
    bring_up(net, ga, gb)
    sa = only_sa(gb)
    since = net.now
    # the SA's own SPIs with the wrong I flag (A initiated: its requests carry I=1): the
    # engine's lookup misses, but the SA exists
    assert not sa.initiator
    deliver(gb, protected_request(sa.spi_i, sa.spi_r, initiator=False), net, (ATTACKER, 500))
    # an SPI reserved for a rekey in flight
    gb.node.engine.reserve_ike_spi(b"\x77" * 8)
    deliver(gb, protected_request(b"\x66" * 8, b"\x77" * 8), net, (ATTACKER, 500))
    # a half-open SA (IKE_SA_INIT answered, IKE_AUTH lost)
    assert not gb.node.engine.half_open
    ga.node.engine.initiate("gw", None, net.now)
    net.filter = lambda d: not (d.local[0] == A_IP and d.data[18] == 35)  # drop IKE_AUTH
    net.advance(0.1)
    (half,) = gb.node.engine.half_open.values()
    deliver(gb, protected_request(half.spi_i, half.spi_r, initiator=False), net, (ATTACKER, 500))
    answers = sent_by(net, B_IP, since)
    assert answers and not any(b"\x40\x23" in d for d in answers)
    assert gb.node.engine.counters["qcd:tokens-withheld-known-sa"] == 3
    assert not qcd_events(gb.node, "token-sent")


def test_invalid_token_with_invalid_spi_is_not_an_attack() -> None:
    """§8.2: a stale SPI map can send an outdated token; that is no evidence of anything."""
    net, ga, gb = gateways(a_policy=policy(require_pending=False))
    bring_up(net, ga, gb)
    sa = only_sa(ga)
    deliver(ga, invalid_spi(sa.children[0].spi_out, [b"\x09" * 32]), net, (B_IP, 500))
    net.advance(1.0)
    assert live(ga) == [sa]
    assert [e.attrs["reason"] for e in qcd_events(ga.node, "token-rejected")] == ["mismatch"]
    assert not qcd_events(ga.node, "spoof-suspected")
    assert ga.node.engine.counters["liveness-checks"] == 1


def test_flags_in_the_harvest_request_matter_to_the_reply() -> None:
    # the standby copies SPIs, exchange and message ID and answers with R=1 and the inverse I
    net, ga, _gb, _gc = _setup(QcdPolicy())
    sa = only_sa(ga)
    reply = _harvest(net, sa, message_id=9)
    assert reply is not None
    msg = decode_message(reply)
    assert (msg.spi_i, msg.spi_r, msg.message_id, int(msg.exchange)) == (sa.spi_i, sa.spi_r, 9, 37)
    assert msg.is_response and not (msg.flags & FLAG_INITIATOR)
