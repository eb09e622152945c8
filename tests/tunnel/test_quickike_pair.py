"""quickike <-> quickike in namespaces: a trap tunnel that the first ping brings up."""

from __future__ import annotations

import pytest

from quickike.lab.netns import Lab, run

from .netns_world import events, need_ping, quickike_on

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def test_first_ping_brings_the_tunnel_up_and_both_sides_ping(lab: Lab) -> None:
    need_ping()
    pair = lab.gateway_pair(hosts=True, ipv6=True)
    assert pair.host_a is not None and pair.host_b is not None
    a = quickike_on(lab, pair, "a", initiator=False, start_action="trap", ipv6=True)
    b = quickike_on(lab, pair, "b", initiator=False, start_action="trap", ipv6=True)
    b.start()
    a.start()
    # the data plane's TUN device is there, with the default MTU, and nothing is up yet
    link = pair.gw_a.ip("link", "show", "quickike0").stdout
    assert "mtu 1400" in link and ",UP" in link
    assert not events(a, "ike-up") and not events(b, "ike-up")
    # one echo request, answered: it waited for the tunnel it triggered
    assert pair.host_a.ping(pair.host_b_addr, count=1, timeout=5), lab.describe()
    (up,) = events(a, "ike-up")
    assert up["initiator"] is True
    # both directions, IPv4 and IPv6 (inner) over the IPv4 wire, a large packet too
    assert pair.host_b.ping(pair.host_a_addr, count=3, timeout=3)
    done = pair.host_b.run("ping", "-6", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "3",
                           "-s", "1300", pair.host_a_addr6, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(events(a, "ike-up")) == 1 and len(events(b, "ike-up")) == 1
    assert len(events(b, "child-up")) == 1
    # a clean stop takes the device (and its routes) with it
    a.stop()
    gone = run(["ip", "-n", pair.gw_a.name, "link", "show", "quickike0"], check=False)
    assert gone.returncode != 0


def test_ike_and_esp_over_ipv6(lab: Lab) -> None:
    """The IPv6 NAT-T socket is read by the daemon, which hands ESP to the data plane."""
    need_ping()
    pair = lab.gateway_pair(hosts=True, ipv6=True)
    assert pair.host_a is not None and pair.host_b is not None
    a = quickike_on(lab, pair, "a", initiator=True, ipv6=True, wire6=True)
    b = quickike_on(lab, pair, "b", initiator=False, ipv6=True, wire6=True)
    b.start()
    a.start()
    a.wait(lambda r: r.get("event") == "child-up", 10, "tunnel")
    (up,) = events(a, "ike-up")
    assert up["remote"] == f"{pair.wire6_b}[4500]"  # moved to the NAT-T port: encapsulated
    assert pair.host_a.ping(pair.host_b_addr, count=3, timeout=3), lab.describe()
    done = pair.host_b.run("ping", "-6", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "3",
                           pair.host_a_addr6, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
