"""TCP through a quickike tunnel and through a strongSwan tunnel, in the same run.

    sudo python bench/bench_throughput.py                  # 10 s per measurement, 3 each
    sudo python bench/bench_throughput.py --pin            # each gateway on its own core

host_a -- gw_a ==wire== gw_b -- host_b in network namespaces; iperf3 sends one TCP stream from
host_a to host_b, so every segment is encrypted by one gateway and decrypted by the other
(the ACKs the other way round).  The gateways are:

* ``quickike``: two ``quickike run`` daemons with ``dataplane = userspace`` (ESP-in-UDP over
  a TUN device, everything in the daemon's one event loop), tunnel set up by IKE as always;
* ``charon``: two charon-systemd with kernel-libipsec (strongSwan's userspace ESP over TUN;
  the kernel here has no ESP), ``encap = yes``.

Both negotiate ``aes128gcm16`` for ESP (``--esp`` to change).  ``--pin`` runs gateway A's daemon
on CPU 0 and gateway B's on CPU 1 (``taskset``), the "one core per end" figure.  The result is
the median of ``--repeat`` iperf3 runs per gateway kind, and their ratio.

Needs root, iproute2, iperf3, TUN and strongSwan (scripts/install-lab-deps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from quickike.daemon.demo import GatewayProcess, gateway_config
from quickike.lab import Charon, GatewayPair, Lab, psk_gateway_configs
from quickike.lab.charon import CharonSettings

PSK = "bench throughput psk, long enough"


def iperf(pair: GatewayPair, seconds: int) -> dict[str, Any]:
    """One iperf3 TCP run host_a -> host_b; the server runs once (-1) in host_b."""
    assert pair.host_a is not None and pair.host_b is not None
    server = subprocess.Popen(
        ["ip", "netns", "exec", pair.host_b.name, "iperf3", "-s", "-1", "-B", pair.host_b_addr],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # until it listens
            probe = pair.host_b.run("ss", "-ltn", "sport", "= :5201", check=False)
            if "5201" in probe.stdout:
                break
            time.sleep(0.05)
        done = pair.host_a.run("iperf3", "-c", pair.host_b_addr, "-t", str(seconds), "-J",
                               check=False, timeout=seconds + 60)  # fmt: skip
        data: dict[str, Any] = json.loads(done.stdout)
        if "error" in data:
            raise RuntimeError(f"iperf3: {data['error']}")
        return data
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def mbit(data: dict[str, Any]) -> float:
    return float(data["end"]["sum_received"]["bits_per_second"]) / 1e6


def _taskset(cpu: int | None) -> list[str]:
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def quickike_tunnel(lab: Lab, pair: GatewayPair, esp: str, pin: bool) -> list[GatewayProcess]:
    gws = []
    for side, (gw, me, peer, net, peer_net) in enumerate((
        (pair.gw_a, pair.wire_a, pair.wire_b, pair.lan_a, pair.lan_b),
        (pair.gw_b, pair.wire_b, pair.wire_a, pair.lan_b, pair.lan_a),
    )):  # fmt: skip
        label = "ab"[side]
        directory = lab.workdir / f"quickike-{label}"
        text = gateway_config(me=me, peer=peer, my_net=net, peer_net=peer_net,
                              my_id=f"{label}.bench", peer_id=f"{'ba'[side]}.bench",
                              state_dir=str(directory / "state"), initiator=side == 0,
                              esp_proposals=esp)  # fmt: skip
        gws.append(GatewayProcess(gw, directory, text, label, log_level="info",
                                  prefix=_taskset(side if pin else None)))  # fmt: skip
    gws[1].start()
    gws[0].start()
    gws[0].wait(lambda r: r.get("event") == "child-up", 15, "tunnel")
    return gws


def charon_tunnel(lab: Lab, pair: GatewayPair, esp: str, pin: bool) -> list[Charon]:
    charons = []
    for side, (gw, me, peer, net, peer_net) in enumerate((
        (pair.gw_a, pair.wire_a, pair.wire_b, pair.lan_a, pair.lan_b),
        (pair.gw_b, pair.wire_b, pair.wire_a, pair.lan_b, pair.lan_a),
    )):  # fmt: skip
        conns, secrets = psk_gateway_configs(
            local_addr=me, remote_addr=peer, local_id=me, remote_id=peer, psk=PSK,
            local_ts=net, remote_ts=peer_net, esp_proposals=esp, extra={"mobike": False},
        )  # fmt: skip
        c = Charon(gw, connections=conns, secrets=secrets, settings=CharonSettings(),
                   label="ab"[side]).start()  # fmt: skip
        if pin:
            subprocess.run(["taskset", "-a", "-p", "-c", str(side), str(c.pid)],
                           check=True, capture_output=True)  # fmt: skip
        charons.append(c)
    charons[0].initiate("net", ike="gw")
    charons[0].wait_established("gw", "net")
    return charons


def bench_inbound(count: int = 40_000) -> dict[str, float]:
    """Microseconds per ESP datagram through ``udp_readable``, by how the socket is read.

    ``recvfrom_into`` is what the data plane does alone; ``recvmsg_into`` (with IP_PKTINFO) is
    what it does in the daemon (``on_ike_to``), which must know our address of IKE datagrams
    on a wildcard socket.  In memory otherwise: no TUN (writes are discarded).
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_esp import _MemTun, inner_packet, specs

    from quickike.dataplane.userspace import UserspaceDataPlane

    a, b = specs("aes128gcm16", 3, outer_a="127.0.0.1", outer_b="127.0.0.1")
    sealed: list[bytes] = []
    dp_a = UserspaceDataPlane(_MemTun(inner_packet(), count), lambda v, _: sealed.append(bytes(v)),
                              now=time.monotonic)  # fmt: skip
    dp_a.install_child(a)
    while dp_a.tun_readable():
        pass
    out: dict[str, float] = {}
    for mode in ("recvfrom_into", "recvmsg_into"):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_PKTINFO", 8), 1)
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        hooks: dict[str, Any] = ({"on_ike_to": lambda *x: None} if mode == "recvmsg_into"
                                 else {"on_ike_datagram": lambda *x: None})  # fmt: skip
        tun = _MemTun(b"", 0)
        dp_b = UserspaceDataPlane(tun, lambda v, _: None, now=time.monotonic, sock=rx, **hooks)
        dp_b.install_child(b)
        spent = 0.0
        for i in range(0, len(sealed), 500):
            for pkt in sealed[i:i + 500]:
                tx.sendto(pkt, rx.getsockname())
            t0 = time.perf_counter()
            while dp_b.udp_readable():
                pass
            spent += time.perf_counter() - t0
        assert tun.written == len(sealed), (tun.written, dp_b.stats)
        out[mode] = spent / len(sealed) * 1e6
        rx.close()
        tx.close()
        print(f"  inbound via {mode:<14} {out[mode]:6.2f} us per 1400-octet ESP datagram")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10, help="length of one iperf3 run")
    ap.add_argument("--repeat", type=int, default=3, help="iperf3 runs per gateway kind")
    ap.add_argument("--esp", default="aes128gcm16", help="ESP proposal of both tunnels")
    ap.add_argument("--pin", action="store_true", help="gateway A on CPU 0, gateway B on CPU 1")
    ap.add_argument("--only", choices=["quickike", "charon"], help="measure one kind only")
    ap.add_argument("--inbound", action="store_true",
                    help="only the per-datagram cost of reading ESP (no root needed)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.inbound:
        print(f"python {platform.python_version()} on {platform.machine()}")
        res = bench_inbound()
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return
    if os.geteuid() != 0:
        sys.exit("bench_throughput needs root (namespaces, TUN)")
    for tool in ("ip", "iperf3", "ss") + (("taskset",) if args.pin else ()):
        if shutil.which(tool) is None:
            sys.exit(f"bench_throughput needs {tool!r} (scripts/install-lab-deps)")
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(" ".join(sys.argv))
    results: dict[str, Any] = {"seconds": args.seconds, "esp": args.esp, "pin": args.pin}
    kinds = [args.only] if args.only else ["quickike", "charon"]
    with Lab() as lab:
        pair = lab.gateway_pair(hosts=True, ipv6=False)
        for kind in kinds:
            runs: list[float] = []
            retransmits: list[int] = []
            if kind == "quickike":
                gws = quickike_tunnel(lab, pair, args.esp, args.pin)
            else:
                charons = charon_tunnel(lab, pair, args.esp, args.pin)
            try:
                for i in range(args.repeat):
                    data = iperf(pair, args.seconds)
                    runs.append(mbit(data))
                    retransmits.append(int(data["end"]["sum_sent"].get("retransmits", 0)))
                    print(f"  {kind:<9} run {i + 1}/{args.repeat}: {runs[-1]:7.1f} Mbit/s "
                          f"(TCP retransmits {retransmits[-1]})", flush=True)  # fmt: skip
            finally:
                if kind == "quickike":
                    for g in gws:
                        g.stop()
                else:
                    for c in charons:
                        c.stop()
            results[kind] = {"mbit": runs, "median_mbit": statistics.median(runs),
                             "retransmits": retransmits}  # fmt: skip
    for kind in kinds:
        print(f"{kind:<9} median {results[kind]['median_mbit']:7.1f} Mbit/s")
    if len(kinds) == 2:
        ratio = results["quickike"]["median_mbit"] / results["charon"]["median_mbit"]
        results["ratio"] = ratio
        print(f"quickike / charon = {ratio:.2f} (goal: at least 1)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
