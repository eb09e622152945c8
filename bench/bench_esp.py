"""Throughput of the userspace ESP data plane.

Three measurements (``python bench/bench_esp.py --help``):

``esp``
    In-process ESP only: seal_into + open_into of 1400-octet packets with
    AES-GCM-128, ChaCha20-Poly1305 (and AES-CBC/HMAC-SHA256 for reference);
    packets per second and Mbit/s of inner packets.
``dataplane``
    The whole per-packet path of :class:`UserspaceDataPlane` in memory (SPD
    lookup, seal, "send"; SPI lookup, replay, open, selector check, "TUN
    write") without syscalls: the Python cost per packet.
``gil``
    Whether AES-GCM in ``cryptography`` releases the GIL (one vs two threads).
``iperf``
    TCP through a real tunnel in the interop lab (quickike.lab): host_a -- gw_a
    ==wire== gw_b -- host_b, iperf3 from host_a to host_b.  Each gateway is one
    ``peer`` process (TUN device, ESP-in-UDP on the veth wire); ``--modes``
    picks how it runs its data plane: ``asyncio`` (add_reader on both fds),
    ``poll`` (one thread, epoll), ``threads`` (one thread per direction), or
    ``strongswan`` for the same tunnel with charon and kernel-libipsec as the
    baseline.  Needs root, ip, iperf3, ss (and charon for the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import asdict
from ipaddress import IPv4Address, ip_network
from typing import Any

from quickike.dataplane.esp import (
    MAX_HEADROOM,
    MAX_TAILROOM,
    decryptor_for,
    encryptor_for,
)
from quickike.dataplane.threads import DataPlaneThreads
from quickike.dataplane.tun import TunDevice
from quickike.dataplane.userspace import UserspaceDataPlane
from quickike.engine.dataplane import ChildSaSpec, Selector
from quickike.wire.enums import EncrId, IntegId

SUITES: dict[str, tuple[int, int, int, int, int]] = {
    # name: (encr id, key bits, integ id, encr key octets, integ key octets)
    "aes128gcm16": (EncrId.AES_GCM_16, 128, 0, 20, 0),
    "chacha20poly1305": (EncrId.CHACHA20_POLY1305, 256, 0, 36, 0),
    "aes128-sha256": (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, 16, 32),
}
PKT = 1400


def _sel(cidr: str) -> Selector:
    n = ip_network(cidr)
    return Selector(n[0], n[-1])


def specs(
    suite: str,
    seed: int,
    outer_a: str = "192.0.2.1",
    outer_b: str = "192.0.2.2",
    lan_a: str = "10.201.0.0/24",
    lan_b: str = "10.201.1.0/24",
) -> tuple[ChildSaSpec, ChildSaSpec]:
    """Both ends of one CHILD SA with keys from ``seed`` (both peers compute the same)."""
    eid, bits, iid, ek, ik = SUITES[suite]
    rnd = random.Random(seed)
    keys = [rnd.randbytes(n) for n in (ek, ek, ik, ik)]
    common = dict(
        ike_uid=1,
        child_uid=1,
        name="bench",
        encr_id=eid,
        encr_key_bits=bits,
        integ_id=iid,
        esn=True,
        encap=True,
    )
    a = ChildSaSpec(
        spi_in=b"\xaa\0\0\1",
        spi_out=b"\xbb\0\0\1",
        encr_key_in=keys[1],
        integ_key_in=keys[3],
        encr_key_out=keys[0],
        integ_key_out=keys[2],
        local_ts=(_sel(lan_a),),
        remote_ts=(_sel(lan_b),),
        local_addr=(IPv4Address(outer_a), 4500),
        remote_addr=(IPv4Address(outer_b), 4500),
        **common,  # type: ignore[arg-type]
    )
    b = ChildSaSpec(
        spi_in=b"\xbb\0\0\1",
        spi_out=b"\xaa\0\0\1",
        encr_key_in=keys[0],
        integ_key_in=keys[2],
        encr_key_out=keys[1],
        integ_key_out=keys[3],
        local_ts=(_sel(lan_b),),
        remote_ts=(_sel(lan_a),),
        local_addr=(IPv4Address(outer_b), 4500),
        remote_addr=(IPv4Address(outer_a), 4500),
        **common,  # type: ignore[arg-type]
    )
    return a, b


def inner_packet(n: int = PKT) -> bytes:
    """An IPv4/UDP packet of n octets from 10.201.0.1 to 10.201.1.1."""
    hdr = bytes.fromhex("45000000000040004011000a") + bytes([10, 201, 0, 1, 10, 201, 1, 1])
    hdr = hdr[:2] + n.to_bytes(2, "big") + hdr[4:]
    udp = (
        (5000).to_bytes(2, "big")
        + (5001).to_bytes(2, "big")
        + (n - 20).to_bytes(2, "big")
        + b"\0\0"
    )
    return hdr + udp + os.urandom(n - 28)


def _rate(label: str, count: int, seconds: float) -> dict[str, float]:
    pps = count / seconds
    mbit = pps * PKT * 8 / 1e6
    print(f"  {label:<28} {pps:>12,.0f} pkt/s {mbit:>10,.0f} Mbit/s")
    return {"pps": pps, "mbit": mbit}


def bench_esp(seconds: float) -> dict[str, object]:
    print(f"ESP seal/open of {PKT}-octet packets (one core, in process, ESN on)")
    results: dict[str, object] = {}
    for suite in SUITES:
        a, b = specs(suite, 1)
        enc, dec = encryptor_for(a), decryptor_for(b)
        src = memoryview(bytearray(PKT + MAX_TAILROOM))
        src[:PKT] = inner_packet()
        out = memoryview(bytearray(PKT + MAX_HEADROOM + MAX_TAILROOM))
        plain = memoryview(bytearray(PKT + MAX_HEADROOM + MAX_TAILROOM))
        print(f" {suite}")
        # encrypt only
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds:
            for _ in range(1000):
                enc.seal_into(src, 0, PKT, 4, out, 0.0)
            n += 1000
        r_enc = _rate("seal", n, dt)
        # decrypt needs fresh sequence numbers: seal a batch first (not timed)
        pkts = []
        for _ in range(20000):
            end = enc.seal_into(src, 0, PKT, 4, out, 0.0)
            pkts.append(bytes(out[:end]))
        dec.window.update(enc.seq - 20000)
        views = [memoryview(p) for p in pkts]
        t0 = time.perf_counter()
        for v in views:
            dec.open_into(v, len(v), plain, 0.0)
        r_dec = _rate("open", len(pkts), time.perf_counter() - t0)
        # one packet through both
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds:
            for _ in range(1000):
                end = enc.seal_into(src, 0, PKT, 4, out, 0.0)
                dec.open_into(out, end, plain, 0.0)
            n += 1000
        r_both = _rate("seal + open", n, dt)
        results[suite] = {"seal": r_enc, "open": r_dec, "seal+open": r_both}
    return results


def bench_gil(seconds: float) -> dict[str, object]:
    """Does AES-GCM in ``cryptography`` release the GIL?  Same work on 1 and on 2 threads."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    print("AES-GCM-128 encrypt, same total work on 1 thread and split over 2 threads")
    aead = AESGCM(bytes(16))
    nonce = bytes(12)
    results: dict[str, object] = {}
    for size in (PKT, 65536):
        data = os.urandom(size)
        n = 1
        while True:  # calibrate: enough iterations for ~seconds on one thread
            t0 = time.perf_counter()
            for _ in range(n):
                aead.encrypt(nonce, data, None)
            dt = time.perf_counter() - t0
            if dt > seconds / 4:
                break
            n *= 2
        total = int(n * seconds / dt)

        def work(k: int, data: bytes = data) -> None:
            for _ in range(k):
                aead.encrypt(nonce, data, None)

        t0 = time.perf_counter()
        work(total)
        one = time.perf_counter() - t0
        ths = [threading.Thread(target=work, args=(total // 2,)) for _ in range(2)]
        c0, t0 = os.times(), time.perf_counter()
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        two = time.perf_counter() - t0
        c1 = os.times()
        # CPU seconds per wall second while both threads ran: ~1 if they took turns (GIL
        # held), up to 2 if they ran in parallel; unlike wall time, robust to other load
        par = (c1.user + c1.system - c0.user - c0.system) / two
        print(
            f"  {size:>6} octets x {total}: 1 thread {one:.2f} s, 2 threads {two:.2f} s,"
            f" CPU/wall with 2 threads {par:.2f} (2.0 = parallel, 1.0 = GIL held)"
        )
        results[str(size)] = {"one_thread_s": one, "two_threads_s": two, "cpu_per_wall": par}
    return results


class _MemTun:
    """Endless supply of one packet; discards writes (measures the Python path only)."""

    def __init__(self, pkt: bytes, count: int) -> None:
        self.pkt, self.left = pkt, count
        self.written = 0

    def fileno(self) -> int:
        return -1

    def readinto(self, buf: memoryview) -> int:
        if self.left <= 0:
            raise BlockingIOError
        self.left -= 1
        buf[: len(self.pkt)] = self.pkt
        return len(self.pkt)

    def write(self, packet: object) -> int:
        self.written += 1
        return 0

    def add_route(self, network: object) -> None: ...

    def del_route(self, network: object) -> None: ...


def bench_dataplane(seconds: float, profile: bool) -> dict[str, object]:
    print(f"UserspaceDataPlane, {PKT}-octet packets, in memory (no syscalls)")
    results: dict[str, object] = {}
    for suite in ("aes128gcm16", "chacha20poly1305"):
        a, b = specs(suite, 2)
        sent: deque[bytes] = deque()
        tun_a, tun_b = _MemTun(inner_packet(), 0), _MemTun(b"", 0)

        def keep(view: memoryview, addr: tuple[str, int], sent: deque[bytes] = sent) -> None:
            sent.append(bytes(view))

        def drop(view: memoryview, addr: tuple[str, int]) -> None:
            pass

        dp_a = UserspaceDataPlane(tun_a, keep, now=time.monotonic)
        dp_b = UserspaceDataPlane(tun_b, drop, now=time.monotonic)
        dp_a.install_child(a)
        dp_b.install_child(b)
        print(f" {suite}")
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds:
            tun_a.left = 64
            n += dp_a.tun_readable()
            if len(sent) > 200_000:
                sent.clear()
        r_out = _rate("outbound (tun_readable)", n, dt)
        src = ("192.0.2.1", 4500)
        pkts = list(sent)[-100_000:] if len(sent) >= 1000 else []
        prof = None
        if profile:
            from pyinstrument import Profiler

            prof = Profiler(interval=0.0002)
            prof.start()
        t0 = time.perf_counter()
        for p in pkts:
            dp_b.receive_esp(p, src)
        r_in = _rate("inbound (receive_esp)", len(pkts), time.perf_counter() - t0)
        if prof is not None:
            prof.stop()
            print(prof.output_text(unicode=False, color=False, show_all=False))
        assert tun_b.written == len(pkts), (tun_b.written, len(pkts), dp_b.stats)
        results[suite] = {"outbound": r_out, "inbound": r_in}
    return results


# --- real tunnel ----------------------------------------------------------------------------
#
# The lab's gateway pair: host_a -- gw_a ==wire== gw_b -- host_b, iperf3 from host_a to
# host_b, the gateways forward through the tunnel (what a VPN gateway does).  "quickike"
# runs one `peer` process per gateway; "strongswan" runs charon with kernel-libipsec.


def run_peer(args: argparse.Namespace) -> None:
    """One gateway: runs inside its namespace (started with ``ip netns exec``)."""
    spec_a, spec_b = specs(args.suite, args.seed, args.wire_a, args.wire_b, args.lan_a, args.lan_b)
    spec = spec_a if args.side == "a" else spec_b
    outer = args.wire_a if args.side == "a" else args.wire_b
    tun = TunDevice.open("qkbench0")  # no address: the gateway only forwards into it
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
    sock.bind((outer, 4500))
    sock.setblocking(False)
    dp = UserspaceDataPlane(tun, sock.sendto, now=time.monotonic, sock=sock, install_routes=True)
    dp.install_child(spec)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    if args.mode == "asyncio":

        async def main() -> None:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            dp.attach(loop)
            while not stop.is_set():
                await asyncio.sleep(0.1)

        asyncio.run(main())
    elif args.mode == "poll":
        ep = select.epoll()
        ep.register(tun.fileno(), select.EPOLLIN)
        ep.register(sock.fileno(), select.EPOLLIN)
        tfd = tun.fileno()
        while not stop.is_set():
            for fd, _ in ep.poll(0.1):
                if fd == tfd:
                    dp.tun_readable()
                else:
                    dp.udp_readable()
    else:  # threads: one per direction
        with DataPlaneThreads(dp) as threads:
            while not stop.is_set():
                stop.wait(0.1)
        if threads.error is not None:
            raise threads.error
    t = os.times()
    print(json.dumps({"stats": asdict(dp.stats), "cpu_s": t.user + t.system}), flush=True)


_STRONGSWAN_ESP = {
    "aes128gcm16": "aes128gcm16",
    "chacha20poly1305": "chacha20poly1305",
    "aes128-sha256": "aes128-sha256",
}


def _iperf(pair: Any, seconds: int) -> dict[str, Any]:
    server = subprocess.Popen(
        ["ip", "netns", "exec", pair.host_b.name, "iperf3", "-s", "-1", "-B", pair.host_b_addr],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(50):  # wait until the server listens (bounded)
            probe = subprocess.run(
                ["ip", "netns", "exec", pair.host_b.name, "ss", "-ltn", "sport", "= :5201"],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if "5201" in probe.stdout:
                break
            time.sleep(0.05)
        r = subprocess.run(
            ["ip", "netns", "exec", pair.host_a.name, "iperf3", "-c", pair.host_b_addr,
             "-t", str(seconds), "-J"],
            capture_output=True, text=True, timeout=seconds + 30, check=False,
        )  # fmt: skip
        data: dict[str, Any] = json.loads(r.stdout)
        if "error" in data:
            raise RuntimeError(data["error"])
        return data
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


def bench_iperf(args: argparse.Namespace) -> dict[str, object]:
    from quickike.lab import Charon, Lab, psk_gateway_configs
    from quickike.lab.charon import CharonSettings

    for tool in ("ip", "iperf3", "ss"):
        if shutil.which(tool) is None:
            sys.exit(f"iperf benchmark needs {tool!r} (scripts/install-lab-deps)")
    if os.geteuid() != 0:
        sys.exit("iperf benchmark needs root (namespaces, TUN)")
    results: dict[str, object] = {}
    print(f"TCP host_a -> host_b through two gateways, {args.seconds} s per run")
    with Lab() as lab:
        pair = lab.gateway_pair(hosts=True, ipv6=False)
        for mode in args.modes:
            for suite in args.suites:
                procs: list[subprocess.Popen[str]] = []
                charons: list[Any] = []
                stats: list[object] = []
                try:
                    if mode == "strongswan":
                        for gw, local, remote, lts, rts in (
                            (pair.gw_a, pair.wire_a, pair.wire_b, pair.lan_a, pair.lan_b),
                            (pair.gw_b, pair.wire_b, pair.wire_a, pair.lan_b, pair.lan_a),
                        ):
                            conns, secrets = psk_gateway_configs(
                                local_addr=local, remote_addr=remote, local_id=local,
                                remote_id=remote, psk="bench-psk", local_ts=lts, remote_ts=rts,
                                esp_proposals=_STRONGSWAN_ESP[suite],
                            )  # fmt: skip
                            charons.append(
                                Charon(gw, connections=conns, secrets=secrets,
                                       settings=CharonSettings()).start()
                            )  # fmt: skip
                        charons[0].initiate("net", ike="gw")
                    else:
                        for side, gw in (("a", pair.gw_a), ("b", pair.gw_b)):
                            p = subprocess.Popen(
                                ["ip", "netns", "exec", gw.name, sys.executable, __file__,
                                 "peer", "--side", side, "--suite", suite, "--mode", mode,
                                 "--wire-a", pair.wire_a, "--wire-b", pair.wire_b,
                                 "--lan-a", pair.lan_a, "--lan-b", pair.lan_b],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            )  # fmt: skip
                            procs.append(p)
                            assert p.stdout is not None
                            if p.stdout.readline().strip() != "ready":
                                raise RuntimeError(f"peer {side}: {p.communicate()[1]}")
                    data = _iperf(pair, args.seconds)
                finally:
                    for p in procs:
                        if p.poll() is None:
                            p.send_signal(signal.SIGTERM)
                        try:
                            out, err = p.communicate(timeout=10)
                        except subprocess.TimeoutExpired:
                            p.kill()
                            out, err = p.communicate()
                        lines = out.strip().splitlines()
                        stats.append(json.loads(lines[-1]) if lines else err)
                    for c in charons:
                        c.stop()
                end = data["end"]
                mbit = end["sum_received"]["bits_per_second"] / 1e6
                retr = end["sum_sent"].get("retransmits", 0)
                cpu = [st["cpu_s"] for st in stats if isinstance(st, dict)]
                cpu_txt = f", gateway CPU {cpu[0]:.1f} s + {cpu[1]:.1f} s" if len(cpu) == 2 else ""
                print(f"  {mode:<10} {suite:<18} {mbit:8.1f} Mbit/s  (retransmits {retr}{cpu_txt})")
                results[f"{mode}/{suite}"] = {"mbit": mbit, "retransmits": retr, "peers": stats}
    return results


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = ap.add_subparsers(dest="cmd")
    e = sub.add_parser("esp")
    e.add_argument("--seconds", type=float, default=1.0)
    g = sub.add_parser("gil")
    g.add_argument("--seconds", type=float, default=2.0)
    d = sub.add_parser("dataplane")
    d.add_argument("--seconds", type=float, default=1.0)
    d.add_argument("--profile", action="store_true", help="pyinstrument the inbound path")
    i = sub.add_parser("iperf")
    i.add_argument("--seconds", type=int, default=10)
    i.add_argument(
        "--modes",
        nargs="+",
        default=["asyncio", "poll", "threads", "strongswan"],
        choices=["asyncio", "poll", "threads", "strongswan"],
    )
    i.add_argument(
        "--suites", nargs="+", default=["aes128gcm16", "chacha20poly1305"], choices=list(SUITES)
    )
    p = sub.add_parser("peer")
    p.add_argument("--side", choices=["a", "b"], required=True)
    p.add_argument("--suite", choices=list(SUITES), required=True)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--mode", choices=["asyncio", "poll", "threads"], default="asyncio")
    for opt in ("--wire-a", "--wire-b", "--lan-a", "--lan-b"):
        p.add_argument(opt, required=True)
    for sp in (e, g, d, i):
        sp.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.cmd == "peer":
        run_peer(args)
        return
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    if args.cmd == "dataplane":
        res = bench_dataplane(args.seconds, args.profile)
    elif args.cmd == "iperf":
        res = bench_iperf(args)
    elif args.cmd == "gil":
        res = bench_gil(args.seconds)
    else:
        res = bench_esp(getattr(args, "seconds", 1.0))
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
