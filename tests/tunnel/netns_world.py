"""Gateways in the lab's namespaces: ``quickike run`` with the userspace data plane, charon.

``host_a -- gw_a ==wire== gw_b -- host_b`` (quickike.lab.GatewayPair with hosts).  Every
process is started through the lab, which stops it by PID and deletes the namespaces when the
test ends, also when it fails.
"""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from typing import Any

from needs import require_tun, unavailable
from quickike.daemon.demo import PSK, GatewayProcess, IcmpProber, gateway_config
from quickike.lab.charon import Charon, CharonSettings, decode_vici, psk_gateway_configs
from quickike.lab.netns import GatewayPair, Lab, netns_socket

IDS = {"a": "gw-a.lab", "b": "gw-b.lab"}


def need_ping() -> None:
    require_tun()
    if shutil.which("ping") is None:
        unavailable("`ping` not found (apt-get install -y iputils-ping)")


def quickike_on(lab: Lab, pair: GatewayPair, side: str, *, initiator: bool, ipv6: bool = False,
                wire6: bool = False, **kw: Any) -> GatewayProcess:  # fmt: skip
    """``quickike run`` on gateway ``side`` ("a" or "b"), configured, not started.

    ``ipv6`` adds the IPv6 LANs to the tunnel, ``wire6`` runs IKE and ESP over IPv6.
    """
    a = side == "a"
    gw = pair.gw_a if a else pair.gw_b
    me, peer = (pair.wire_a, pair.wire_b) if a else (pair.wire_b, pair.wire_a)
    if wire6:
        me, peer = (pair.wire6_a, pair.wire6_b) if a else (pair.wire6_b, pair.wire6_a)
    nets = (pair.lan_a, pair.lan_b) if a else (pair.lan_b, pair.lan_a)
    if ipv6:
        nets = (f"{nets[0]},{pair.lan6_a if a else pair.lan6_b}",
                f"{nets[1]},{pair.lan6_b if a else pair.lan6_a}")  # fmt: skip
    directory = lab.workdir / f"quickike-{side}"
    text = gateway_config(me=me, peer=peer, my_net=nets[0], peer_net=nets[1],
                          my_id=IDS[side], peer_id=IDS["b" if a else "a"],
                          state_dir=str(directory / "state"), initiator=initiator, **kw)  # fmt: skip
    proc = GatewayProcess(gw, directory, text, side)
    lab.add_log(f"quickike {side}", lambda: proc.process.output() if proc.process else "")
    return proc


def charon_on_b(lab: Lab, pair: GatewayPair, *, child: dict[str, Any] | None = None,
                settings: CharonSettings | None = None) -> Charon:  # fmt: skip
    """charon with kernel-libipsec on gateway B, the peer of quickike on A; started."""
    conns, secrets = psk_gateway_configs(
        local_addr=pair.wire_b, remote_addr=pair.wire_a, local_id=IDS["b"], remote_id=IDS["a"],
        psk=PSK, local_ts=pair.lan_b, remote_ts=pair.lan_a,
        extra={"mobike": False, "children": {"net": child or {}}},
    )  # fmt: skip
    return Charon(pair.gw_b, connections=conns, secrets=secrets, settings=settings,
                  label="b").start()  # fmt: skip


def vici_rekey(gw: GatewayProcess, **request: str) -> int:
    """VICI ``rekey`` on quickike's control socket (the `vici` package, as swanctl does)."""
    import vici

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(str(gw.dir / "state" / "quickike.vici"))
    try:
        answer = decode_vici(vici.Session(sock).rekey(request))  # type: ignore[attr-defined]
    finally:
        sock.close()
    return int(answer.get("matches", 0))


def prober(pair: GatewayPair, interval: float) -> IcmpProber:
    """Host A pings host B every ``interval`` (raw ICMP in host A's namespace)."""
    assert pair.host_a is not None
    sock = netns_socket(pair.host_a.name, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    return IcmpProber(sock, pair.host_b_addr, interval).start()


def wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.01)


def events(gw: GatewayProcess, name: str, **match: Any) -> list[dict[str, Any]]:
    return [r for r in gw.records() if r.get("event") == name
            and all(r.get(k) == v for k, v in match.items())]  # fmt: skip
