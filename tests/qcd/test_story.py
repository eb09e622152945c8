"""The seed slides' story, end to end, with a driven clock and a real one-way latency.

Staging (tokens both ways in IKE_AUTH), steady state, crash of one gateway,
reboot with the secret kept, ESP -> INVALID_SPI -> ``HDR, SK{}`` ->
``HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)`` -> silent deletion -> new
IKE_SA_INIT/IKE_AUTH with new tokens.  Once with the responder crashing and
once with the initiator crashing (seed issue 198).
"""

from __future__ import annotations

import pytest

from quickike.engine import events as ev
from quickike.engine.config import StartAction

from .helpers import (
    a_child,
    auto_child,
    b_child,
    bring_up,
    esp_from,
    events_of,
    gateways,
    live,
    only_sa,
    policy,
    qcd_events,
    story,
    traces,
)

LATENCY = 0.020  # one way: RTT 40 ms
RTT = 2 * LATENCY

STAGING_INITIATOR = [
    ("->", "IKE_SA_INIT", "req", "SA,KE,NONCE,N(IKEV2_FRAGMENTATION_SUPPORTED),"
     "N(SIGNATURE_HASH_ALGORITHMS),N(NAT_DETECTION_SOURCE_IP),N(NAT_DETECTION_DESTINATION_IP)"),
    ("<-", "IKE_SA_INIT", "resp", "SA,KE,NONCE,N(IKEV2_FRAGMENTATION_SUPPORTED),"
     "N(SIGNATURE_HASH_ALGORITHMS),N(NAT_DETECTION_SOURCE_IP),N(NAT_DETECTION_DESTINATION_IP)"),
    ("qcd", "token-given"),
    ("->", "IKE_AUTH", "req",
     "SK{IDi,N(INITIAL_CONTACT),IDr,AUTH,N(QUICK_CRASH_DETECTION),SA,TSi,TSr}"),
    ("<-", "IKE_AUTH", "resp", "SK{IDr,AUTH,N(QUICK_CRASH_DETECTION),SA,TSi,TSr}"),
    ("ike-up",),
    ("child-up",),
    ("qcd", "token-stored"),
]


def _tokens_held_both_ways(ga, gb) -> None:
    sa_a, sa_b = only_sa(ga), only_sa(gb)
    for sa in (sa_a, sa_b):
        st = sa.ext_get("qcd")
        assert st is not None and len(st.peer_digests) == 1 and st.given_generation == 1


def test_responder_crash_seed_story() -> None:
    net, ga, gb = gateways(latency=LATENCY, a_children=(auto_child("a", start_action=StartAction.START),))
    a = ga.node
    assert a is not None
    # -- staging: tokens both ways in IKE_AUTH, each stored by the other side
    bring_up(net, ga, gb)
    assert story(a) == STAGING_INITIATOR
    b_story = story(gb.node)  # type: ignore[arg-type]
    assert ("qcd", "token-stored") in b_story and ("qcd", "token-given") in b_story
    assert b_story.index(("qcd", "token-stored")) < b_story.index(("qcd", "token-given"))
    _tokens_held_both_ways(ga, gb)
    # the token sits after AUTH and before the CHILD payloads, in both directions
    auth_req = next(t for t in traces(a) if t.exchange == "IKE_AUTH" and t.sent)
    assert auth_req.payloads.index("N(QUICK_CRASH_DETECTION)") == auth_req.payloads.index("AUTH") + 1
    # -- steady state: traffic both ways, nothing QCD happens
    net.advance(10.0)
    old_uid = only_sa(ga).uid
    # -- gateway 2 crashes and reboots with its secret
    crash_at = net.now
    b2 = gb.crash_and_reboot(net)
    assert not live(gb)
    assert qcd_events(b2, "secret-loaded")[0].attrs["generation"] == 1
    # -- the survivor's next ESP packet reaches the rebooted gateway
    esp_from(ga, gb, net)
    answer_sent = net.now + LATENCY + LATENCY  # INVALID_SPI out, liveness check back in
    net.advance(1.0)
    assert story(a, since=crash_at) == [
        ("<-", "INFORMATIONAL", "req", "N(INVALID_SPI)"),
        ("liveness", "hint-invalid-spi"),
        ("->", "INFORMATIONAL", "req", "SK{}"),
        ("<-", "INFORMATIONAL", "resp", "N(INVALID_IKE_SPI),N(QUICK_CRASH_DETECTION)"),
        ("qcd", "token-accepted"),
        ("qcd", "teardown"),
        ("->", "IKE_SA_INIT", "req", STAGING_INITIATOR[0][3]),
        ("<-", "IKE_SA_INIT", "resp", STAGING_INITIATOR[1][3]),
        ("qcd", "token-given"),
        # no INITIAL_CONTACT: the old SA still exists (rekey before delete)
        ("->", "IKE_AUTH", "req", "SK{IDi,IDr,AUTH,N(QUICK_CRASH_DETECTION),SA,TSi,TSr}"),
        ("<-", "IKE_AUTH", "resp", "SK{IDr,AUTH,N(QUICK_CRASH_DETECTION),SA,TSi,TSr}"),
        ("ike-up",),
        ("qcd", "reestablished"),
        ("child-up",),
        ("qcd", "token-stored"),
        # make-before-break: the old SA goes (silently) once the new one carries the traffic
        ("child-down", "qcd"),
        ("ike-down", "qcd"),
    ]
    assert story(b2, since=crash_at) == [
        ("->", "INFORMATIONAL", "req", "N(INVALID_SPI)"),
        ("<-", "INFORMATIONAL", "req", "SK{}"),
        ("->", "INFORMATIONAL", "resp", "N(INVALID_IKE_SPI),N(QUICK_CRASH_DETECTION)"),
        ("qcd", "token-sent"),
        ("<-", "IKE_SA_INIT", "req", STAGING_INITIATOR[0][3]),
        ("->", "IKE_SA_INIT", "resp", STAGING_INITIATOR[1][3]),
        ("<-", "IKE_AUTH", "req", "SK{IDi,IDr,AUTH,N(QUICK_CRASH_DETECTION),SA,TSi,TSr}"),
        ("ike-up",),
        ("child-up",),
        ("qcd", "token-stored"),
        ("qcd", "token-given"),
        ("->", "IKE_AUTH", "resp", "SK{IDr,AUTH,N(QUICK_CRASH_DETECTION),SA,TSi,TSr}"),
    ]
    # -- time: the survivor decides within one round trip of the rebooted side's answer
    (teardown,) = qcd_events(a, "teardown")
    answer = next(t for t in traces(b2) if t.sent and t.response and t.exchange == "INFORMATIONAL")
    assert answer.time == pytest.approx(answer_sent)
    assert teardown.time - answer.time <= RTT + 1e-9
    assert teardown.attrs["detection_time"] == pytest.approx(teardown.time - (answer.time - LATENCY))
    (rebuilt,) = qcd_events(a, "reestablished")
    assert rebuilt.attrs["reestablish_time"] == pytest.approx(2 * RTT)  # IKE_SA_INIT + IKE_AUTH
    # the silent deletion: not one Delete payload went out from the survivor
    assert not any("D" in t.payloads or "DELETE" in t.payloads for t in traces(a) if t.sent)
    (down,) = [d for d in events_of(a, ev.IkeSaDown) if d.ike_uid == old_uid]
    assert down.reason == "qcd"
    # new tokens both ways on the new SA
    _tokens_held_both_ways(ga, gb)
    assert only_sa(ga).uid != old_uid


def test_responder_crash_break_before_make() -> None:
    """rekey_before_delete = no: delete first (INITIAL_CONTACT then clears the peer's state)."""
    net, ga, gb = gateways(latency=LATENCY, a_policy=policy(rekey_before_delete=False),
                           a_children=(auto_child("a", start_action=StartAction.START),))
    a = ga.node
    assert a is not None
    bring_up(net, ga, gb)
    gb.crash_and_reboot(net)
    crash_at = net.now
    esp_from(ga, gb, net)
    net.advance(1.0)
    tail = story(a, since=crash_at)
    i = tail.index(("qcd", "teardown"))
    assert tail[i + 1:i + 4] == [("child-down", "qcd"), ("ike-down", "qcd"),
                                ("->", "IKE_SA_INIT", "req", STAGING_INITIATOR[0][3])]
    auth = next(t for t in traces(a, since=crash_at) if t.exchange == "IKE_AUTH" and t.sent)
    assert "N(INITIAL_CONTACT)" in auth.payloads
    assert live(ga) and live(gb)


def test_initiator_crash_trap_connection_comes_back_on_next_packet() -> None:
    """Seed issue 198: the survivor is the responder; its trap connection waits for traffic."""
    net, ga, gb = gateways(latency=LATENCY,
                           a_children=(a_child(start_action=StartAction.TRAP),),
                           b_children=(b_child(start_action=StartAction.TRAP),))
    b = gb.node
    assert b is not None and ga.node is not None
    ga.node.engine.start(net.now)
    b.engine.start(net.now)
    ga.node.engine.acquire("gw", "net", net.now)  # first packet from A's side
    net.advance(1.0)
    assert only_sa(gb).initiator is False
    a2 = ga.crash_and_reboot(net)
    crash_at = net.now
    esp_from(gb, ga, net)
    net.advance(1.0)
    tail = story(b, since=crash_at)
    assert tail == [
        ("<-", "INFORMATIONAL", "req", "N(INVALID_SPI)"),
        ("liveness", "hint-invalid-spi"),
        ("->", "INFORMATIONAL", "req", "SK{}"),
        ("<-", "INFORMATIONAL", "resp", "N(INVALID_IKE_SPI),N(QUICK_CRASH_DETECTION)"),
        ("qcd", "token-accepted"),
        ("qcd", "teardown"),
        ("child-down", "qcd"),
        ("ike-down", "qcd"),
    ]
    (teardown,) = qcd_events(b, "teardown")
    assert teardown.attrs["mode"] == "wait-for-traffic"
    assert not live(gb) and ("gw", "net") in b.dataplane.traps  # the trap stays
    # the next packet hits the trap: B (the former responder) initiates with new tokens
    net.advance(5.0)
    packet_at = net.now
    b.engine.acquire("gw", "net", net.now)
    net.advance(1.0)
    sa_b = only_sa(gb)
    assert sa_b.initiator and len(sa_b.children) == 1
    took = qcd_events(b, "reestablished")[0].attrs["reestablish_time"]
    assert took == pytest.approx(packet_at - teardown.time + 2 * RTT)
    _tokens_held_both_ways(ga, gb)
    assert qcd_events(a2, "token-sent")[0].attrs["via"] == "invalid-ike-spi"


def test_initiator_crash_restart_connection_comes_back_at_once() -> None:
    """Seed issue 201: a responder with dpd_action = restart rebuilds without waiting for traffic."""
    net, ga, gb = gateways(latency=LATENCY, a_children=(a_child(),),
                           b_children=(auto_child("b"),))
    a, b = ga.node, gb.node
    assert a is not None and b is not None
    a.engine.initiate("gw", None, net.now)  # A starts by hand, so after its reboot it stays quiet
    net.advance(1.0)
    assert not only_sa(gb).initiator
    ga.crash_and_reboot(net)
    crash_at = net.now
    esp_from(gb, ga, net)
    net.advance(1.0)
    (teardown,) = qcd_events(b, "teardown")
    assert teardown.attrs["mode"] == "make-before-break"
    # INVALID_SPI (1/2 RTT), liveness check and its answer (1 RTT), then the acceptance wait
    assert teardown.time - crash_at == pytest.approx(LATENCY + RTT + RTT / 2)
    sa_b = only_sa(gb)
    assert sa_b.initiator and len(sa_b.children) == 1
    assert [d.reason for d in events_of(b, ev.IkeSaDown)] == ["qcd"]
    assert qcd_events(b, "reestablished")[0].attrs["reestablish_time"] == pytest.approx(2 * RTT)
