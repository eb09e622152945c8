"""Every exchange between two engines in memory, with a driven clock."""

from __future__ import annotations

from quickike.engine import events as ev
from quickike.engine.config import DaemonSettings, RetransmitPolicy
from quickike.engine.sa import IkeState
from quickike.wire.enums import ExchangeType, NotifyType

from .harness import Net, child, config, conn, pair


def up(net: Net, a, b) -> None:
    a.engine.initiate("gw", None, net.now)
    net.settle()
    assert a.of(ev.IkeSaUp) and b.of(ev.IkeSaUp), (a.events, b.events)


def sas(node):
    return [s for s in node.engine.ike_sas() if s.state != IkeState.DESTROYED]


def test_child_rekey_from_each_side():
    for side in ("a", "b"):
        net, a, b = pair()
        up(net, a, b)
        node = a if side == "a" else b
        (c,) = node.of(ev.ChildSaUp)
        assert node.engine.rekey_child(c.child_uid, net.now)
        net.settle()
        for n in (a, b):
            ups = n.of(ev.ChildSaUp)
            downs = n.of(ev.ChildSaDown)
            assert len(ups) == 2 and ups[1].rekeyed_from == ups[0].child_uid
            assert [d.reason for d in downs] == ["rekeyed"]
            assert len(n.dataplane.children) == 1
        new_a = a.of(ev.ChildSaUp)[1]
        new_b = b.of(ev.ChildSaUp)[1]
        assert new_a.spi_in == new_b.spi_out


def test_ike_rekey_from_each_side_keeps_children():
    for side in ("a", "b"):
        net, a, b = pair()
        up(net, a, b)
        node = a if side == "a" else b
        old_uid = node.of(ev.IkeSaUp)[0].ike_uid
        assert node.engine.rekey_ike(old_uid, net.now)
        net.settle()
        for n in (a, b):
            live = sas(n)
            assert len(live) == 1, live
            assert live[0].rekeyed_from is not None
            assert len(live[0].children) == 1
            assert [d.reason for d in n.of(ev.IkeSaDown)] == ["rekeyed"]
            assert not n.of(ev.ChildSaDown)
        # the new SA works: a liveness check both ways
        for n in (a, b):
            assert n.engine.liveness_check(sas(n)[0].uid, net.now)
            net.settle()
        assert a.engine.counters["liveness-answered"] == 1
        assert b.engine.counters["liveness-answered"] == 1


def test_delete_from_each_side():
    for side in ("a", "b"):
        net, a, b = pair()
        up(net, a, b)
        node = a if side == "a" else b
        node.engine.terminate_ike(node.of(ev.IkeSaUp)[0].ike_uid, net.now)
        net.settle()
        for n in (a, b):
            assert not sas(n)
            assert not n.dataplane.children
        assert node.of(ev.IkeSaDown)[0].reason == "deleted"
        other = b if node is a else a
        assert other.of(ev.IkeSaDown)[0].reason == "peer-deleted"


def test_child_delete_from_each_side():
    for side in ("a", "b"):
        net, a, b = pair()
        up(net, a, b)
        node = a if side == "a" else b
        node.engine.terminate_child(node.of(ev.ChildSaUp)[0].child_uid, net.now)
        net.settle()
        for n in (a, b):
            assert len(sas(n)) == 1 and not n.dataplane.children


def test_dead_peer_after_strongswan_schedule():
    net, a, b = pair(a_kw={"dpd_delay": 30.0})
    up(net, a, b)
    net.down.add(b.ip)
    net.advance(30.0 + 165.1)
    (dead,) = a.of(ev.PeerDead)
    # first liveness check at 30 s after the last inbound traffic, dead 165.06 s later
    assert 1000.0 + 30 + 165 <= dead.time <= 1000.0 + 30 + 165.1
    assert not sas(a)
    assert a.engine.counters["retransmits"] == 5


def test_cookie_when_half_open_threshold_reached():
    settings = DaemonSettings(cookie_threshold=1)
    net = Net()
    ca = conn("gw", "192.0.2.1", "192.0.2.2", "a.example", "b.example", children=(child(),))
    cb = conn("gw", "192.0.2.2", "192.0.2.1", "b.example", "a.example",
              children=(child(local="10.2.0.0/16", remote="10.1.0.0/16"),))
    a = net.add("A", "192.0.2.1", config(ca), 1)
    cc = conn("c", "192.0.2.2", "192.0.2.3", "b.example", "c.example")
    b = net.add("B", "192.0.2.2", config(cb, cc, settings=settings), 2)
    # one half-open SA from elsewhere reaches the threshold
    c = net.add("C", "192.0.2.3", config(conn("gw", "192.0.2.3", "192.0.2.2", "c.example", "b.example")), 3)
    net.filter = lambda d: d.local[0] != "192.0.2.2" or d.remote[0] != "192.0.2.3"
    c.engine.initiate("gw", None, net.now)
    net.settle()
    assert len(b.engine.half_open) == 1
    up(net, a, b)
    assert b.engine.counters["cookies-sent"] == 1
    assert a.engine.counters["cookie-retries"] == 1


def test_invalid_ke_retry():
    net, a, b = pair(proposals="aes128gcm16-prfsha256-x25519-ecp256", b_proposals="aes128gcm16-prfsha256-ecp256")
    up(net, a, b)
    assert a.engine.counters["invalid-ke-retries"] == 1
    assert "ecp256" in a.of(ev.IkeSaUp)[0].suite


def test_child_rekey_invalid_ke_retry():
    """The peer wants another PFS group: the rekey is sent again with it (§1.3, §1.2)."""
    a_child = child(esp="aes128gcm16-x25519-ecp256-esn")
    b_child = child(local="10.2.0.0/16", remote="10.1.0.0/16", esp="aes128gcm16-ecp256-esn")
    net, a, b = pair((a_child,), (b_child,))
    up(net, a, b)
    (c,) = a.of(ev.ChildSaUp)
    assert a.engine.rekey_child(c.child_uid, net.now)
    net.settle()
    answers = [e.payloads for e in a.events
               if isinstance(e, ev.MessageTrace) and not e.sent and e.exchange == "CREATE_CHILD_SA"]
    assert answers[0] == ("N(INVALID_KE_PAYLOAD)",) and "KE" in answers[1]
    for n in (a, b):
        ups = n.of(ev.ChildSaUp)
        assert len(ups) == 2 and ups[1].rekeyed_from == ups[0].child_uid
        assert [d.reason for d in n.of(ev.ChildSaDown)] == ["rekeyed"]
        assert len(n.dataplane.children) == 1


def test_a_child_rekey_asked_twice_while_another_exchange_runs_is_queued_once():
    """Manual rekey and soft expiry can ask for the same CHILD's rekey while the IKE SA is busy:
    one rekey task waits, not two."""
    net, a, b = pair()
    up(net, a, b)
    (c,) = a.of(ev.ChildSaUp)
    (ike,) = a.of(ev.IkeSaUp)
    assert a.engine.liveness_check(ike.ike_uid, net.now)  # keeps the window (size 1) busy
    assert a.engine.rekey_child(c.child_uid, net.now)
    assert a.engine.rekey_child(c.child_uid, net.now)
    (sa,) = a.engine.sas.values()
    assert [t.kind for t in sa.queued].count("child-rekey") == 1, [t.kind for t in sa.queued]
    net.settle()
    for n in (a, b):
        ups = n.of(ev.ChildSaUp)
        assert len(ups) == 2 and ups[1].rekeyed_from == ups[0].child_uid


def test_retransmission_and_cached_response():
    net, a, b = pair()
    dropped = []

    def drop_first_auth_response(d):
        if d.local[0] == b.ip and len(d.data) > 200 and not dropped:
            dropped.append(d)
            return False
        return True

    net.filter = drop_first_auth_response
    a.engine.initiate("gw", None, net.now)
    net.settle()
    assert not a.of(ev.IkeSaUp)
    net.advance(4.0)
    assert a.of(ev.IkeSaUp) and b.engine.counters["retransmitted-request"] == 1
    assert len(b.of(ev.IkeSaUp)) == 1


def test_encap_moves_to_nat_t_port():
    net, a, b = pair(a_kw={"encap": True})
    up(net, a, b)
    sa_a, sa_b = sas(a)[0], sas(b)[0]
    assert sa_a.local[1] == 4500 and sa_a.remote[1] == 4500
    assert sa_b.local[1] == 4500 and sa_b.remote[1] == 4500
    spec = next(iter(a.dataplane.children.values()))
    assert spec.encap


def test_fragmentation_of_large_messages():
    settings = DaemonSettings(fragment_size=200)
    net = Net()
    ca = conn("gw", "192.0.2.1", "192.0.2.2", "a.example", "b.example",
              children=tuple(child(f"c{i}", local=f"10.1.{i}.0/24") for i in range(1)))
    cb = conn("gw", "192.0.2.2", "192.0.2.1", "b.example", "a.example",
              children=(child(local="10.2.0.0/16", remote="10.1.0.0/16"),))
    a = net.add("A", "192.0.2.1", config(ca, settings=settings), 1)
    b = net.add("B", "192.0.2.2", config(cb, settings=settings), 2)
    up(net, a, b)
    assert a.engine.counters["fragmented-messages"] >= 1
    assert max(len(d.data) for _, d in net.wire if d.local[0] == a.ip and d.data[18] != 34) <= 200


def test_auth_failure_with_wrong_psk():
    net = Net()
    ca = conn("gw", "192.0.2.1", "192.0.2.2", "a.example", "b.example", children=(child(),))
    cb = conn("gw", "192.0.2.2", "192.0.2.1", "b.example", "a.example",
              children=(child(local="10.2.0.0/16", remote="10.1.0.0/16"),))
    a = net.add("A", "192.0.2.1", config(ca), 1)
    b = net.add("B", "192.0.2.2", config(cb, secret=b"another secret that is long enough"), 2)
    a.engine.initiate("gw", None, net.now)
    net.settle()
    assert not a.of(ev.IkeSaUp) and not b.of(ev.IkeSaUp)
    assert b.of(ev.IkeSetupFailed)[0].notify == NotifyType.AUTHENTICATION_FAILED
    assert a.of(ev.IkeSetupFailed)[0].notify == NotifyType.AUTHENTICATION_FAILED
    assert not sas(a) and not sas(b)


def test_child_failure_leaves_ike_up():
    net, a, b = pair(b_children=(child(local="10.9.0.0/16", remote="10.8.0.0/16"),))
    a.engine.initiate("gw", None, net.now)
    net.settle()
    assert a.of(ev.IkeSaUp) and b.of(ev.IkeSaUp)
    assert not a.of(ev.ChildSaUp)
    assert a.of(ev.ChildSetupFailed)[0].notify == NotifyType.TS_UNACCEPTABLE
    assert len(sas(a)) == 1 and len(sas(b)) == 1


def test_second_child_with_create_child_sa_and_pfs():
    children = (child("one"), child("two", local="10.3.0.0/16", remote="10.4.0.0/16",
                                    esp="aes256gcm16-x25519-esn"))
    net, a, _b = pair(children)
    a.engine.initiate("gw", "one", net.now)
    net.settle()
    a.engine.initiate("gw", "two", net.now)
    net.settle()
    assert len(sas(a)) == 1
    assert [c.name for c in a.of(ev.ChildSaUp)] == ["one", "two"]
    assert "x25519" in a.of(ev.ChildSaUp)[1].suite
    traces = [e for e in a.events if isinstance(e, ev.MessageTrace) and e.sent]
    assert [t.exchange for t in traces].count(str(ExchangeType.CREATE_CHILD_SA)) == 1


def test_retransmit_policy_total_is_strongswans():
    assert RetransmitPolicy().give_up_after() == 165.06


def test_invalid_spi_hint_resends_an_outstanding_request_at_once():
    """A check sent while the peer was rebooting is lost; the peer's INVALID_SPI brings it back."""
    from quickike.wire.enums import ProtocolId
    from quickike.wire.message import Message
    from quickike.wire.payloads import notify

    net, a, b = pair(a_kw={"dpd_delay": 10.0})
    up(net, a, b)
    net.down.add(b.ip)
    net.advance(10.5)  # the liveness check went out and was lost
    sa = sas(a)[0]
    assert sa.pending is not None and sa.pending.attempt == 0
    sent_before = len(net.wire)
    request = sa.pending.datagrams[0]
    child = sa.children[0]
    hint = Message(b"\x01" * 8, b"\x00" * 8, ExchangeType.INFORMATIONAL, 0x08, 0,
                   [notify(NotifyType.INVALID_SPI, child.spi_out, protocol=ProtocolId.NONE)])
    net.down.clear()
    a.engine.receive_datagram(hint.encode(), ("192.0.2.1", 500), ("192.0.2.2", 500), net.now)
    net.step()
    assert a.engine.counters["hint-retransmits"] == 1
    resent = [d for _, d in net.wire[sent_before:] if d.local[0] == a.ip]
    assert [d.data for d in resent] == [request]
    assert a.engine.counters["liveness-answered"] == 1  # the live peer answered at once
    assert a.engine.counters["retransmits"] == 0  # the backoff schedule was not touched


def test_keyingtries_retries_an_unanswered_setup():
    """strongSwan's keyingtries: N attempts in all; 0 (%forever) never gives up."""
    for tries, expected in ((3, 3), (1, 1)):
        net, a, b = pair(a_kw={"keyingtries": tries})
        net.down.add(b.ip)
        a.engine.initiate("gw", None, net.now)
        net.advance(4 * 166.0)
        fails = a.of(ev.IkeSetupFailed)
        assert len(fails) == expected, fails
        assert a.engine.counters["keyingtries"] == expected - 1
    net, a, b = pair(a_kw={"keyingtries": 0})
    net.down.add(b.ip)
    a.engine.initiate("gw", None, net.now)
    net.advance(5 * 166.0)
    assert len(a.of(ev.IkeSetupFailed)) == 5
    net.down.clear()  # the peer comes back: the next attempt succeeds
    net.advance(166.0)
    assert a.of(ev.ChildSaUp) and b.of(ev.ChildSaUp)
