"""quickike (userspace ESP) <-> strongSwan charon (kernel-libipsec, ``encap = yes``).

quickike on gateway A, charon on gateway B; hosts behind both.  Each side initiates once;
then IKE and CHILD rekeys, started by either side, while host A pings every 20 ms.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from needs import require_strongswan
from quickike.lab.netns import Lab

from .netns_world import charon_on_b, events, need_ping, prober, quickike_on, vici_rekey, wait

pytestmark = [pytest.mark.root, pytest.mark.strongswan, pytest.mark.timeout(120)]


def _ready(lab: Lab) -> None:
    need_ping()
    require_strongswan()


def test_quickike_initiates_and_both_hosts_ping(lab: Lab) -> None:
    _ready(lab)
    pair = lab.gateway_pair(hosts=True, ipv6=False)
    assert pair.host_a is not None and pair.host_b is not None
    charon = charon_on_b(lab, pair)
    qi = quickike_on(lab, pair, "a", initiator=True)
    qi.start()
    sa = charon.wait_established("gw", "net")
    child = sa.child("net")
    assert child is not None and child["encap"] == "yes"
    assert pair.host_a.ping(pair.host_b_addr, count=3, timeout=3), lab.describe()
    assert pair.host_b.ping(pair.host_a_addr, count=3, timeout=3), lab.describe()
    (up,) = events(qi, "child-up")
    assert up["spi_out"] == child["spi-in"] and up["spi_in"] == child["spi-out"]
    sa = charon.list_sas()[0]
    live = sa.child("net")
    assert live is not None and int(live["packets-in"]) >= 6 and int(live["packets-out"]) >= 6


def test_charon_initiates_and_both_hosts_ping(lab: Lab) -> None:
    _ready(lab)
    pair = lab.gateway_pair(hosts=True, ipv6=False)
    assert pair.host_a is not None and pair.host_b is not None
    qi = quickike_on(lab, pair, "a", initiator=False)
    qi.start()
    charon = charon_on_b(lab, pair)
    charon.initiate("net", ike="gw")
    wait(lambda: bool(events(qi, "child-up")), 10, "quickike's CHILD SA")
    (up,) = events(qi, "ike-up")
    assert up["initiator"] is False
    assert pair.host_b.ping(pair.host_a_addr, count=3, timeout=3), lab.describe()
    assert pair.host_a.ping(pair.host_b_addr, count=3, timeout=3), lab.describe()


def test_rekeys_under_traffic_lose_at_most_a_packet_or_two(lab: Lab) -> None:
    _ready(lab)
    pair = lab.gateway_pair(hosts=True, ipv6=False)
    charon = charon_on_b(lab, pair)
    qi = quickike_on(lab, pair, "a", initiator=True)
    qi.start()
    charon.wait_established("gw", "net")
    ping = prober(pair, 0.02)
    try:
        wait(lambda: len(ping.probes.answered) >= 10, 10, "pings through the tunnel")
        start = max(ping.probes.sent.values())

        def charon_rekey(**request: str) -> Callable[[], object]:
            return lambda: charon.session().rekey(request)

        steps: list[tuple[str, Callable[[], object], str, int]] = [
            ("quickike CHILD rekey", lambda: vici_rekey(qi, child="net"), "child-up", 2),
            ("charon CHILD rekey", charon_rekey(child="net"), "child-up", 3),
            ("quickike IKE rekey", lambda: vici_rekey(qi, ike="site"), "ike-up", 2),
            ("charon IKE rekey", charon_rekey(ike="gw"), "ike-up", 3),
        ]
        for what, action, event, count in steps:
            action()
            wait(lambda e=event, c=count: len(events(qi, e)) >= c, 10, what)  # type: ignore[misc]
            seen = len(ping.probes.answered)
            wait(lambda s=seen: len(ping.probes.answered) >= s + 15, 10,  # type: ignore[misc]
                 f"pings after the {what}")  # fmt: skip
        end = max(ping.probes.sent.values()) - 0.5  # the last requests may still be in flight
        lost = ping.probes.lost(start, end)
    finally:
        ping.stop()
    rekeyed = [r for r in events(qi, "child-up") if r.get("rekeyed_from") is not None]
    assert len(rekeyed) == 2
    assert len([r for r in events(qi, "ike-up") if r.get("rekeyed_from") is not None]) == 2
    # the two rekeyed IKE SAs, nothing torn down (the last goes when charon's Delete arrives)
    wait(lambda: len(events(qi, "ike-down")) >= 2, 10, "the old IKE SAs deleted")
    assert len(events(qi, "ike-down")) == 2
    print(f"{lost} pings lost during four rekeys")
    assert lost <= 2, f"{lost} pings lost during four rekeys"

