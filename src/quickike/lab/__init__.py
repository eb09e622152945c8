"""The interop lab: real network namespaces and real strongSwan peers for tests and benchmarks.

Imports only the standard library (and `vici`, lazily, when a charon is driven). Needs root;
`scripts/install-lab-deps` installs what it runs (strongSwan 5.9.8, iproute2, tcpdump, ...).

    with Lab() as lab:                        # removes everything, also on error/SIGTERM
        pair = lab.gateway_pair(hosts=True)   # host_a - gw_a == wire == gw_b - host_b
        conns, secrets = psk_gateway_configs(local_addr=pair.wire_a, remote_addr=pair.wire_b,
            local_id="a@lab", remote_id="b@lab", psk="...", local_ts=pair.lan_a,
            remote_ts=pair.lan_b)
        a = Charon(pair.gw_a, connections=conns, secrets=secrets).start()
        ...                                   # the same for B, then
        a.initiate("net", ike="gw")
        a.wait_established("gw", "net")
        assert pair.host_a.ping(pair.host_b_addr)

In tests use the fixtures `lab` and `make_charon` from tests/conftest.py instead.
"""

from quickike.lab.caps import (
    have_netns,
    have_root,
    have_strongswan,
    have_tun,
    missing_netns,
    missing_root,
    missing_strongswan,
    missing_tun,
)
from quickike.lab.capture import Capture, count_pcap_records
from quickike.lab.charon import (
    Charon,
    CharonError,
    CharonSettings,
    IkeSaView,
    psk_gateway_configs,
)
from quickike.lab.netns import (
    CommandError,
    GatewayPair,
    Lab,
    LabError,
    LabProcess,
    Namespace,
    list_namespaces,
    sweep_stale_namespaces,
)

__all__ = [
    "Capture",
    "Charon",
    "CharonError",
    "CharonSettings",
    "CommandError",
    "GatewayPair",
    "IkeSaView",
    "Lab",
    "LabError",
    "LabProcess",
    "Namespace",
    "count_pcap_records",
    "have_netns",
    "have_root",
    "have_strongswan",
    "have_tun",
    "list_namespaces",
    "missing_netns",
    "missing_root",
    "missing_strongswan",
    "missing_tun",
    "psk_gateway_configs",
    "sweep_stale_namespaces",
]
