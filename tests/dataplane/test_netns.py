"""Real packets: two UserspaceDataPlanes with TUN devices in two namespaces, ping through.

The lab's gateway pair gives namespaces gw_a and gw_b joined by a veth "wire"
(10.200.0.1 <-> 10.200.0.2).  Gateway A owns 10.200.11.1 and fd00:200:11::1 on
its TUN device, gateway B 10.200.12.1 and fd00:200:12::1; the CHILD SA carries
10.200.11.0/24 <-> 10.200.12.0/24 (and the IPv6 pair) as ESP in UDP on port 4500.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from ipaddress import IPv4Address, ip_interface

import pytest

from needs import require_tun, unavailable
from quickike.dataplane.threads import DataPlaneThreads
from quickike.dataplane.tun import TunDevice
from quickike.dataplane.userspace import UserspaceDataPlane
from quickike.lab.netns import Lab, in_netns
from quickike.wire.enums import EncrId

from .helpers import net, spec_pair

pytestmark = [pytest.mark.root, pytest.mark.timeout(90)]

INNER_A = ("10.200.11.1", "fd00:200:11::1")
INNER_B = ("10.200.12.1", "fd00:200:12::1")


def open_gateway(ns: str, inner: tuple[str, str], outer: str) -> tuple[TunDevice, socket.socket]:
    with in_netns(ns):
        addrs = [ip_interface(f"{inner[0]}/24"), ip_interface(f"{inner[1]}/64")]
        tun = TunDevice.open("qktun0", addresses=addrs, netns=ns)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((outer, 4500))
        sock.setblocking(False)
    return tun, sock


async def run_cmd(*cmd: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.parametrize(
    ("suite", "driver"),
    [("aes128gcm16", "asyncio"), ("chacha20poly1305", "asyncio"), ("aes128gcm16", "threads")],
)
def test_ping_through_userspace_esp(lab: Lab, suite: str, driver: str) -> None:
    require_tun()
    if shutil.which("ping") is None:
        unavailable("`ping` not found (apt-get install -y iputils-ping)")
    pair = lab.gateway_pair(ipv6=False)
    ns_a, ns_b = pair.gw_a.name, pair.gw_b.name
    opened: list[TunDevice | socket.socket] = []
    try:
        tun_a, sock_a = open_gateway(ns_a, INNER_A, pair.wire_a)
        opened += [tun_a, sock_a]
        tun_b, sock_b = open_gateway(ns_b, INNER_B, pair.wire_b)
        opened += [tun_b, sock_b]
        eid, bits, ek = (
            (EncrId.AES_GCM_16, 128, 20)
            if suite == "aes128gcm16"
            else (EncrId.CHACHA20_POLY1305, 256, 36)
        )
        spec_a, spec_b = spec_pair(
            eid,
            bits,
            0,
            ek,
            esn=True,
            a_ts=(net("10.200.11.0/24"), net("fd00:200:11::/64")),
            b_ts=(net("10.200.12.0/24"), net("fd00:200:12::/64")),
            a_addr=(IPv4Address(pair.wire_a), 4500),
            b_addr=(IPv4Address(pair.wire_b), 4500),
        )
        dps = []
        for tun, sock, spec in ((tun_a, sock_a, spec_a), (tun_b, sock_b, spec_b)):
            dp = UserspaceDataPlane(
                tun, sock.sendto, now=time.monotonic, sock=sock, install_routes=True
            )
            dp.install_child(spec)  # routes the peer's inner networks into the TUN
            dps.append(dp)

        async def scenario() -> list[tuple[int, str]]:
            loop = asyncio.get_running_loop()
            threads = [DataPlaneThreads(dp) for dp in dps] if driver == "threads" else []
            for dp in dps:
                if not threads:
                    dp.attach(loop)
            for t in threads:
                t.start()
            try:
                return [
                    await run_cmd("ip", "netns", "exec", ns_a, "ping", "-n", "-c", "3", "-i",
                                  "0.2", "-W", "3", INNER_B[0]),
                    await run_cmd("ip", "netns", "exec", ns_b, "ping", "-n", "-6", "-c", "3",
                                  "-i", "0.2", "-W", "3", "-s", "1300", INNER_A[1]),
                ]  # fmt: skip
            finally:
                for dp in dps:
                    if not threads:
                        dp.detach(loop)
                for t in threads:
                    t.stop()
                    assert t.error is None

        results = asyncio.run(scenario())
        for rc, out in results:
            assert rc == 0, out
            assert " 0% packet loss" in out, out
        ca, cb = dps[0].counters(spec_a.spi_in), dps[1].counters(spec_b.spi_in)
        assert ca is not None and cb is not None
        # 3 echo requests + 3 replies each way, IPv4 from A, IPv6 (1300 octets) from B
        assert ca.packets_out >= 6 and ca.packets_in >= 6
        assert cb.packets_out >= 6 and cb.packets_in >= 6
        assert cb.bytes_in > 3 * 1300 and ca.bytes_in > 3 * 1300
        for dp in dps:
            s = dp.stats
            assert s.auth_failed == s.replayed == s.malformed == s.policy_mismatch == 0
    finally:
        for closable in opened:
            closable.close()
