"""The engine changes QCD relies on, and the edges of the maker/taker logic.

Make-before-break now ends (reauth: Delete; QCD: silently), CHILD install and
removal reach extensions, a retransmission updates ``Pending.last_sent``, an
IKE rekey collision tells extensions the winner, requests for unknown SPIs
are traced.
"""

from __future__ import annotations

import pytest

from engine.harness import pair
from quickike.engine import events as ev
from quickike.engine.config import StartAction
from quickike.engine.extension import Extension
from quickike.engine.sa import ChildSa, IkeSa
from quickike.qcd import MemoryChildSpiMap, QcdPolicy
from quickike.qcd.state import Dampening
from quickike.wire.enums import FLAG_INITIATOR
from quickike.wire.payloads import EncryptedFragment

from .helpers import (
    A_IP,
    B_IP,
    auto_child,
    bring_up,
    deliver,
    esp_from,
    events_of,
    gateways,
    live,
    only_sa,
    policy,
    protected_request,
    qcd_events,
    sent_by,
    story,
    unprotected,
)


class Recorder(Extension):
    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[str, object]] = []

    def child_installed(self, child: ChildSa) -> None:
        self.seen.append(("installed", child.spi_in))

    def child_removed(self, child: ChildSa, reason: str) -> None:
        self.seen.append(("removed", reason))

    def ike_rekeyed(self, old: IkeSa, new: IkeSa, initiator: bool) -> None:
        self.seen.append(("rekeyed", new.uid))


def test_child_hooks_reach_extensions() -> None:
    rec = Recorder()
    net, a, _b = pair(engine_kw={"extensions": [rec]})
    # pair() shares the kwargs: both engines got the same recorder
    a.engine.initiate("gw", None, net.now)
    net.settle()
    (child_a,) = [c for s in a.engine.ike_sas() for c in s.children]
    assert ("installed", child_a.spi_in) in rec.seen
    a.engine.terminate_child(child_a.uid, net.now)
    net.settle()
    assert sorted(r for r in rec.seen if r[0] == "removed") == [("removed", "deleted"),
                                                                ("removed", "peer-deleted")]


def test_retransmission_updates_last_sent() -> None:
    net, a, b = pair()
    a.engine.initiate("gw", None, net.now)
    net.settle()
    sa = next(iter(a.engine.ike_sas()))
    net.down.add(b.ip)
    a.engine.liveness_check(sa.uid, net.now)
    net.settle()
    assert sa.pending is not None and sa.pending.last_sent == sa.pending.sent_at
    net.advance(4.5)
    assert sa.pending.attempt == 1 and sa.pending.last_sent == pytest.approx(sa.pending.sent_at + 4.0)


def test_reauth_make_before_break_deletes_the_old_sa() -> None:
    net, a, b = pair(a_kw={"reauth_time": 100.0, "rand_time": 0.0})
    a.engine.initiate("gw", None, net.now)
    net.settle()
    old = next(iter(a.engine.ike_sas())).uid
    net.advance(101.0)
    sas_a = [s for s in a.engine.ike_sas() if s.auth_done]
    assert len(sas_a) == 1 and sas_a[0].uid != old
    downs = [(d.ike_uid, d.reason) for d in a.of(ev.IkeSaDown)]
    assert downs == [(old, "deleted")]
    assert [d.reason for d in b.of(ev.IkeSaDown)] == ["peer-deleted"]
    assert len([s for s in b.engine.ike_sas() if s.auth_done]) == 1


def test_unknown_spi_requests_are_traced() -> None:
    net, a, b = pair()
    a.engine.initiate("gw", None, net.now)
    net.settle()
    b.engine.receive_datagram(protected_request(b"\x01" * 8, b"\x02" * 8), (b.ip, 500),
                              ("198.51.100.4", 500), net.now)
    net.settle()
    t = [e for e in b.events if isinstance(e, ev.MessageTrace) and not e.sent][-1]
    assert (t.exchange, t.payloads, t.protected, t.spi_i) == ("INFORMATIONAL", (), True, b"\x01" * 8)


def test_simultaneous_ike_rekey_leaves_tokens_on_the_winner() -> None:
    mb = MemoryChildSpiMap()
    net, ga, gb = gateways(b_children=(auto_child("b"),))
    gb.spi_map = mb
    gb.crash_and_reboot(net)
    bring_up(net, ga, gb)
    sa_a, sa_b = only_sa(ga), only_sa(gb)
    ga.node.engine.rekey_ike(sa_a.uid, net.now)  # type: ignore[union-attr]
    gb.node.engine.rekey_ike(sa_b.uid, net.now)  # type: ignore[union-attr]
    net.advance(2.0)
    win_a, win_b = only_sa(ga), only_sa(gb)
    assert (win_a.spi_i, win_a.spi_r) == (win_b.spi_i, win_b.spi_r)
    assert ga.node.engine.counters["ike-rekey-collisions"] >= 1  # type: ignore[union-attr]
    for sa in (win_a, win_b):
        assert sa.ext_get("qcd").peer_digests, sa
    (row,) = mb.entries.values()
    assert (row.spi_i, row.spi_r) == (win_b.spi_i, win_b.spi_r)
    # and the crash of either side is still detected through the winner's tokens
    gb.crash_and_reboot(net)
    esp_from(ga, gb, net)
    net.advance(1.0)
    assert qcd_events(ga.node, "teardown")  # type: ignore[arg-type]


def test_replacement_that_fails_takes_the_condemned_sa_along() -> None:
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),))
    bring_up(net, ga, gb)
    old = only_sa(ga)
    gb.crash_and_reboot(net)
    esp_from(ga, gb, net)
    net.settle()  # B answers the liveness check with its token; A waits out the 10 ms ...
    assert qcd_events(ga.node, "token-accepted") and not qcd_events(ga.node, "teardown")  # type: ignore[arg-type]
    net.down.add(B_IP)  # ... and B vanishes again before the replacement can be built
    net.advance(10.0)
    (teardown,) = qcd_events(ga.node, "teardown")  # type: ignore[arg-type]
    assert teardown.attrs["mode"] == "make-before-break"
    assert qcd_events(ga.node, "replace-timeout")  # type: ignore[arg-type]
    downs = [d for d in events_of(ga.node, ev.IkeSaDown) if d.ike_uid == old.uid]  # type: ignore[arg-type]
    assert [d.reason for d in downs] == ["qcd"]
    assert downs[0].time == pytest.approx(teardown.time + 5.0)


@pytest.mark.parametrize("qcd", [True, False], ids=["qcd", "plain"])
def test_only_the_first_fragment_of_an_unknown_request_is_answered(qcd: bool) -> None:
    """With QCD the answer carries tokens, without it it is a bare INVALID_IKE_SPI: either way
    one answer per fragmented request, not one per fragment."""
    net, ga, gb = gateways(b_policy=QcdPolicy(enable=qcd))
    bring_up(net, ga, gb)
    since = net.now
    for number in (2, 3, 1):
        frag = EncryptedFragment(0 if number > 1 else 37, number, 3, b"\x00" * 40)
        data = unprotected(b"\x05" * 8, b"\x06" * 8, 37, FLAG_INITIATOR, 7, [frag])
        deliver(gb, data, net, ("198.51.100.4", 500))
        assert len(sent_by(net, B_IP, since)) == (1 if number == 1 else 0)
    counters = gb.node.engine.counters  # type: ignore[union-attr]
    assert counters["qcd:tokens-sent"] == (1 if qcd else 0)
    assert counters["invalid-ike-spi-sent"] == (0 if qcd else 1)


def test_reply_window_after_boot() -> None:
    net, _ga, gb = gateways(b_policy=policy(reply_window=60.0))
    gb.crash_and_reboot(net)
    deliver(gb, protected_request(b"\x05" * 8, b"\x06" * 8), net, (A_IP, 500))
    net.advance(61.0)
    deliver(gb, protected_request(b"\x05" * 8, b"\x07" * 8), net, (A_IP, 500))
    assert gb.node.engine.counters["qcd:tokens-sent"] == 1  # type: ignore[union-attr]
    assert gb.node.engine.counters["qcd:tokens-withheld-window"] == 1  # type: ignore[union-attr]
    assert gb.node.engine.counters["invalid-ike-spi-sent"] == 1  # type: ignore[union-attr]  # plain


def test_dampening_grows_with_repetition_and_resets() -> None:
    d = Dampening()
    peer = ("gw", "b")
    assert d.not_before(peer, 2.0, 60.0, 100.0) == 100.0  # first teardown: at once
    assert d.record(peer, 2.0, 60.0, 100.0) == 1
    assert d.not_before(peer, 2.0, 60.0, 100.5) == 102.0
    d.record(peer, 2.0, 60.0, 102.0)
    assert d.not_before(peer, 2.0, 60.0, 102.1) == 106.0
    d.record(peer, 2.0, 60.0, 106.0)
    assert d.not_before(peer, 2.0, 60.0, 106.0) == 114.0
    for t in (114.0, 130.0, 162.0):
        d.record(peer, 2.0, 60.0, t)
    assert d.not_before(peer, 2.0, 60.0, 162.0) == 222.0  # capped at 60 s
    assert d.not_before(peer, 2.0, 60.0, 223.0) == 223.0  # quiet for longer than the cap: reset
    assert d.not_before(("gw", "other"), 2.0, 60.0, 162.0) == 162.0
    assert d.not_before(peer, 0.0, 60.0, 162.5) == 162.5  # dampening off


def test_repeated_genuine_reboots_are_dampened_not_ignored() -> None:
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),))
    bring_up(net, ga, gb)
    for _ in range(2):
        gb.crash_and_reboot(net)
        esp_from(ga, gb, net)
        net.advance(0.5)
    teardowns = qcd_events(ga.node, "teardown")  # type: ignore[arg-type]
    assert len(teardowns) == 1 and qcd_events(ga.node, "dampened")  # type: ignore[arg-type]
    net.advance(5.0)
    teardowns = qcd_events(ga.node, "teardown")  # type: ignore[arg-type]
    assert len(teardowns) == 2 and teardowns[1].attrs["repeat"] == 2
    assert teardowns[1].time - teardowns[0].time == pytest.approx(2.0)
    assert len(live(ga)) == 1 and story(ga.node)[-1] == ("ike-down", "qcd")  # type: ignore[arg-type]


def test_responses_and_init_like_requests_never_get_tokens() -> None:
    """RFC 7296 §2.21.4: never answer a response; SPIr = 0 is not a request for an SA."""
    from quickike.wire.enums import FLAG_RESPONSE
    from quickike.wire.payloads import Encrypted

    net, _ga, gb = gateways()
    gb.crash_and_reboot(net)
    since = net.now
    response = unprotected(b"\x05" * 8, b"\x06" * 8, 37, FLAG_RESPONSE, 3, [Encrypted(0, b"\0" * 40)])
    deliver(gb, response, net, (A_IP, 500))
    deliver(gb, protected_request(b"\x05" * 8, b"\x00" * 8), net, (A_IP, 500))
    assert not any(b"\x40\x23" in d for d in sent_by(net, B_IP, since))
    assert gb.node.engine.counters["qcd:tokens-sent"] == 0  # type: ignore[union-attr]


def test_a_valid_token_under_foreign_spis_is_refused() -> None:
    """§3: the token must match the one stored for the IKE SA the header's SPIs name."""
    from .helpers import peer_tokens, token_reply_to

    net, ga, gb = gateways(a_policy=policy(require_pending=False))
    bring_up(net, ga, gb)
    sa = only_sa(ga)
    token = peer_tokens(gb, sa)[0]
    sa.spi_r, real = b"\x99" * 8, sa.spi_r  # forge the header: our SPI, someone else's peer SPI
    forged = token_reply_to(sa, [token])
    sa.spi_r = real
    deliver(ga, forged, net, (B_IP, 500))
    assert [e.attrs["reason"] for e in qcd_events(ga.node, "token-rejected")] == ["spi-mismatch"]  # type: ignore[arg-type]
    assert live(ga) == [sa]
