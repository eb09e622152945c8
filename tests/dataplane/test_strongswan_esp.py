"""ESP interop with strongSwan's kernel-libipsec: charon's ESP-in-UDP against ours, both ways.

Two charons build a CHILD SA between gateways A and B (no traffic yet).  Then charon B is
killed without a Delete, and a UserspaceDataPlane takes over B's half of the same CHILD SA
with the SPIs from VICI and the keys charon logs at ``chd = 4``.  host A pings host B:
every echo request is encrypted by strongSwan and decrypted by quickike, every reply the
other way round, and charon A's own counters show the replies arrived and authenticated.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from needs import require_tun, unavailable
from quickike.dataplane.threads import DataPlaneThreads
from quickike.dataplane.tun import TunDevice
from quickike.dataplane.userspace import UserspaceDataPlane
from quickike.engine.dataplane import ChildSaSpec
from quickike.lab import Charon, Lab, psk_gateway_configs
from quickike.lab.charon import CharonSettings
from quickike.lab.keylog import parse_hexdumps
from quickike.lab.netns import in_netns
from quickike.wire.enums import EncrId, IntegId

from .helpers import net

pytestmark = [pytest.mark.root, pytest.mark.strongswan, pytest.mark.timeout(120)]

PSK = "dataplane-interop-psk"
#: esp_proposals keyword -> (encr id, key bits, integ id, ESN).  kernel-libipsec has no ESN
#: (charon answers NO_PROPOSAL_CHOSEN to "-esn"); ESN interop is checked against scapy.
PROPOSALS = {
    "aes128gcm16": (EncrId.AES_GCM_16, 128, 0, False),
    "aes256gcm16": (EncrId.AES_GCM_16, 256, 0, False),
    "chacha20poly1305": (EncrId.CHACHA20_POLY1305, 256, 0, False),
    "aes128-sha256": (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, False),
}


def child_keys(charon: Charon) -> dict[str, bytes]:
    """The last CHILD SA keys charon logged: encryption/integrity, initiator/responder."""
    keys: dict[str, bytes] = {}
    for v in parse_hexdumps(charon.log_lines()):
        if v.group == "CHD" and v.label.endswith(("initiator key", "responder key")):
            keys[v.label] = v.data
    return keys


def packets_in(charon: Charon) -> int:
    return sum(int(c.get("packets-in", 0)) for sa in charon.list_sas() for c in sa.children)


@pytest.mark.parametrize("proposal", list(PROPOSALS))
def test_strongswan_libipsec_and_quickike_exchange_esp(
    lab: Lab, make_charon: Callable[..., Charon], proposal: str
) -> None:
    require_tun()
    if shutil.which("ping") is None:
        unavailable("`ping` not found (apt-get install -y iputils-ping)")
    eid, bits, iid, esn = PROPOSALS[proposal]
    pair = lab.gateway_pair(hosts=True, ipv6=False)
    assert pair.host_a is not None and pair.host_b is not None
    confs = []
    for local, remote, lid, rid, lts, rts in (
        (pair.wire_a, pair.wire_b, "a@lab.test", "b@lab.test", pair.lan_a, pair.lan_b),
        (pair.wire_b, pair.wire_a, "b@lab.test", "a@lab.test", pair.lan_b, pair.lan_a),
    ):
        confs.append(
            psk_gateway_configs(
                local_addr=local, remote_addr=remote, local_id=lid, remote_id=rid, psk=PSK,
                local_ts=lts, remote_ts=rts, esp_proposals=proposal,
            )
        )  # fmt: skip
    settings = CharonSettings.key_logging()
    a = make_charon(pair.gw_a, connections=confs[0][0], secrets=confs[0][1], settings=settings)
    b = make_charon(pair.gw_b, connections=confs[1][0], secrets=confs[1][1], settings=settings)
    a.initiate("net", ike="gw")
    sa_b = b.wait_established("gw", "net")
    child = sa_b.child("net")
    assert child is not None and child["encap"] == "yes"
    keys = child_keys(b)
    assert keys == child_keys(a)  # both derived the same KEYMAT
    spi_in, spi_out = bytes.fromhex(child["spi-in"]), bytes.fromhex(child["spi-out"])
    b.kill()  # gone without a Delete: A keeps its SAs, and port 4500 in B is free

    # B is the responder: inbound carries initiator -> responder keys
    spec = ChildSaSpec(
        ike_uid=1, child_uid=1, name="net", spi_in=spi_in, spi_out=spi_out,
        encr_id=eid, encr_key_bits=bits, integ_id=iid, esn=esn,
        encr_key_in=keys["encryption initiator key"],
        integ_key_in=keys.get("integrity initiator key", b""),
        encr_key_out=keys["encryption responder key"],
        integ_key_out=keys.get("integrity responder key", b""),
        local_ts=(net(pair.lan_b),), remote_ts=(net(pair.lan_a),),
        local_addr=(IPv4Address(pair.wire_b), 4500), remote_addr=(IPv4Address(pair.wire_a), 4500),
        encap=True,
    )  # fmt: skip
    with in_netns(pair.gw_b.name):
        tun = TunDevice.open("qktun0", netns=pair.gw_b.name)  # no address: it only forwards
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((pair.wire_b, 4500))
        sock.setblocking(False)
    try:
        dp = UserspaceDataPlane(tun, sock.sendto, now=time.monotonic, sock=sock,
                                install_routes=True)  # fmt: skip
        dp.install_child(spec)
        before = packets_in(a)
        with DataPlaneThreads(dp) as threads:
            ok = pair.host_a.ping(pair.host_b_addr, count=3, timeout=3)
        assert threads.error is None
        assert ok, (dp.stats, a.log_text()[-3000:])
        c = dp.counters(spi_in)
        assert c is not None and c.packets_in >= 3 and c.packets_out >= 3
        s = dp.stats
        assert s.auth_failed == s.replayed == s.malformed == s.policy_mismatch == 0
        a.wait_for(lambda sas: packets_in(a) >= before + 3, what="our ESP authenticated by A")
    finally:
        tun.close()
        sock.close()
