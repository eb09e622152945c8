"""Tokens across IKE rekeys (RFC 6290 §4.3) and replacements for a live SA (§4.4)."""

from __future__ import annotations

import pytest

from quickike.engine.sa import IkeSa
from quickike.qcd.tokens import token_digest

from .helpers import (
    A_IP,
    B_IP,
    auto_child,
    bring_up,
    esp_from,
    gateways,
    live,
    only_sa,
    peer_tokens,
    qcd_events,
    traces,
)


def _held(sa: IkeSa) -> list[bytes]:
    st = sa.ext_get("qcd")
    return list(st.peer_digests) if st is not None else []


@pytest.mark.parametrize("side", ["a", "b"])
def test_ike_rekey_carries_tokens_for_the_new_spis(side: str) -> None:
    # neither side starts the tunnel by itself after a reboot: only QCD brings it back
    net, ga, gb = gateways(a_children=(auto_child("a"),), b_children=(auto_child("b"),))
    bring_up(net, ga, gb)
    rekeyer, other = (ga, gb) if side == "a" else (gb, ga)
    old = only_sa(rekeyer)
    since = net.now
    assert rekeyer.node.engine.rekey_ike(old.uid, net.now)  # type: ignore[union-attr]
    net.advance(1.0)
    new_r, new_o = only_sa(rekeyer), only_sa(other)
    assert new_r.rekeyed_from == old.uid and (new_r.spi_i, new_r.spi_r) == (new_o.spi_i, new_o.spi_r)
    # the rekey responder's token rides in the CREATE_CHILD_SA response ...
    (resp,) = [t for t in traces(other.node, since) if t.sent and t.exchange == "CREATE_CHILD_SA"]  # type: ignore[arg-type]
    assert resp.response and resp.payloads == ("SA", "NONCE", "KE", "N(QUICK_CRASH_DETECTION)")
    # ... the initiator's follows in an INFORMATIONAL on the new SA (§4.3 SHOULD)
    infos = [t for t in traces(rekeyer.node, since) if t.sent and t.exchange == "INFORMATIONAL"  # type: ignore[arg-type]
             and not t.response]
    token_info = [t for t in infos if t.payloads == ("N(QUICK_CRASH_DETECTION)",)]
    assert len(token_info) == 1 and (token_info[0].spi_i, token_info[0].spi_r) == (new_r.spi_i,
                                                                                  new_r.spi_r)
    # each side holds exactly the token the other makes for the NEW SPIs
    assert _held(new_r) == [token_digest(peer_tokens(other, new_r)[0])]
    assert _held(new_o) == [token_digest(peer_tokens(rekeyer, new_o)[0])]
    assert _held(new_r) != [token_digest(peer_tokens(other, old)[0])]
    # and QCD works on the new SA: crash the other side
    survivor, victim = (ga, gb) if side == "a" else (gb, ga)
    victim.crash_and_reboot(net)
    esp_from(survivor, victim, net)
    net.advance(1.0)
    (teardown,) = qcd_events(survivor.node, "teardown")  # type: ignore[arg-type]
    assert teardown.ike_uid == (new_r if survivor is rekeyer else new_o).uid
    assert len(live(survivor)) == 1 and live(survivor)[0].uid != teardown.ike_uid


def test_child_rekey_does_not_touch_tokens() -> None:
    net, ga, gb = gateways()
    bring_up(net, ga, gb)
    sa = only_sa(ga)
    before = _held(sa)
    assert ga.node.engine.rekey_child(sa.children[0].uid, net.now)  # type: ignore[union-attr]
    net.advance(1.0)
    assert _held(only_sa(ga)) == before and only_sa(ga) is sa
    assert not [t for t in traces(ga.node) if "N(QUICK_CRASH_DETECTION)" in t.payloads  # type: ignore[arg-type]
                and t.exchange == "CREATE_CHILD_SA"]


def test_address_change_replaces_an_address_bound_token() -> None:
    """§4.4 with §5.2: the taker moved behind its NAT; the maker sends a new token at once."""
    net, ga, gb = gateways(a_kw={"encap": True})  # NAT-T, so B follows A's address
    bring_up(net, ga, gb)
    sa_a, sa_b = only_sa(ga), only_sa(gb)
    old_digest = _held(sa_a)
    moved = "192.0.2.9"
    net.nodes[moved] = ga.node  # type: ignore[assignment]  # A's new public address

    def rewrite(d):  # A's packets now leave from the new address
        if d.local[0] == A_IP and d.remote[0] == B_IP:
            net.inject(d, (moved, d.local[1]), delay=0.0)
            return False
        return True

    net.filter = rewrite
    assert ga.node.engine.liveness_check(sa_a.uid, net.now)  # type: ignore[union-attr]
    net.advance(1.0)
    assert sa_b.remote[0] == moved
    updates = [t for t in traces(gb.node) if t.sent and t.exchange == "INFORMATIONAL"  # type: ignore[arg-type]
               and t.payloads == ("N(QUICK_CRASH_DETECTION)",)]
    assert len(updates) == 1 and updates[0].remote[0] == moved
    assert qcd_events(gb.node, "token-given")[-1].attrs["why"] == "address-change"  # type: ignore[arg-type]
    held = _held(sa_a)
    assert len(held) == 2 and held[1:] == old_digest  # the new one first, the old one kept (§5)
    # the rebooted B computes the token for the address it sees: the new one
    gb.crash_and_reboot(net)
    net.filter = rewrite
    gb.node.engine.unknown_esp_spi(sa_a.children[0].spi_out, (B_IP, 4500), (moved, 4500), net.now)  # type: ignore[union-attr]
    net.advance(1.0)
    assert qcd_events(ga.node, "teardown")  # type: ignore[arg-type]


def test_gratuitous_token_in_a_protected_informational_is_taken() -> None:
    """§4.4: a taker MUST accept a replacement carried under protection."""
    net, ga, gb = gateways()
    bring_up(net, ga, gb)
    sa_b = only_sa(gb)
    st = sa_b.ext_get("qcd")
    from quickike.qcd.tasks import QcdTokenUpdate

    gb.node.engine.queue_task(sa_b, QcdTokenUpdate(gb.node.engine, sa_b, gb.ext, "manual"))  # type: ignore[union-attr]
    net.settle()
    stored = qcd_events(ga.node, "token-stored")  # type: ignore[arg-type]
    assert stored[-1].attrs == {"exchange": "INFORMATIONAL", "count": 1, "replaced": True}
    assert st.given_generation == 1 and len(_held(only_sa(ga))) == 1  # the same token again
