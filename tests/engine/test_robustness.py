"""Hostile and broken input never raises and never harms established SAs."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quickike.engine import events as ev
from quickike.engine.sa import IkeState

from .harness import pair


def established():
    net, a, b = pair()
    a.engine.initiate("gw", None, net.now)
    net.settle()
    assert a.of(ev.IkeSaUp) and b.of(ev.IkeSaUp)
    return net, a, b


def recorded(net, a, b):
    """Every datagram of the setup, to replay, reorder, truncate and mutate."""
    return [d.data for _, d in net.wire]


NET, A, B = established()
SETUP = recorded(NET, A, B)
SA_B = next(iter(B.engine.ike_sas()))


def fuzz_inputs():
    base = st.sampled_from(SETUP)
    mutated = st.tuples(base, st.integers(0, 2000), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % (len(t[0]) + 1)] + bytes([t[2]]) + t[0][t[1] % (len(t[0]) + 1) + 1 :]
    )
    truncated = st.tuples(base, st.integers(0, 2000)).map(lambda t: t[0][: t[1] % (len(t[0]) + 1)])
    with_our_spis = st.binary(min_size=0, max_size=300).map(
        lambda b: SA_B.spi_i + SA_B.spi_r + b
    )
    return st.lists(st.one_of(base, mutated, truncated, with_our_spis, st.binary(max_size=400)),
                    max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_inputs())
def test_random_datagrams_never_raise_and_sas_stay_up(datagrams):
    eng = B.engine
    before = eng.counters["internal-error"]
    for d in datagrams:
        eng.receive_datagram(d, ("192.0.2.2", 500), ("192.0.2.1", 500), NET.now)
        eng.receive_datagram(d, ("192.0.2.2", 500), ("198.51.100.7", 500), NET.now)
    eng.datagrams_to_send()
    list(eng.events())
    assert eng.counters["internal-error"] == before
    live = [s for s in eng.ike_sas() if s.state != IkeState.DESTROYED and s.auth_done]
    assert len(live) == 1 and live[0] is SA_B and SA_B.usable
    assert len(SA_B.children) == 1


def test_replayed_setup_is_harmless():
    net, a, b = established()
    for data in recorded(net, a, b):
        b.engine.receive_datagram(data[4:] if data[:4] == b"\0\0\0\0" else data,
                                  ("192.0.2.2", 500), ("192.0.2.1", 500), net.now)
        a.engine.receive_datagram(data, ("192.0.2.1", 500), ("192.0.2.2", 500), net.now)
    net.settle()
    for n in (a, b):
        assert n.engine.counters["internal-error"] == 0
        assert len([s for s in n.engine.ike_sas() if s.usable]) == 1


def test_wrong_message_ids_are_dropped():
    net, a, b = established()
    sa = next(iter(a.engine.ike_sas()))
    assert sa.protector is not None
    for mid in (0, 1, 5, 2**31):
        data = sa.protector.protect(sa.spi_i, sa.spi_r, 37, 0x08, mid, 0, b"")
        b.engine.receive_datagram(data, ("192.0.2.2", 500), ("192.0.2.1", 500), net.now)
    # 1 is the IKE_AUTH request's id: answered from the cache (even with another body)
    assert b.engine.counters["retransmitted-request"] == 1
    assert b.engine.counters["drop:bad-message-id"] == 3
    assert next(iter(b.engine.ike_sas())).msg_id_in == 2
