"""``quickike demo``: the seed slides' story, told with real packets.

Gateway A (the survivor, which initiates) and gateway B (the responder) run a tunnel between
host A's and host B's networks; host A pings host B every 10 ms.  B is killed without a word
and restarted with the same state directory (so the same QCD secret).  Only A can restore the
tunnel, and the story is how fast it learns that it must: tunnel up, crash, reboot, B answers
A's ESP with INVALID_SPI, A runs a liveness check, B answers it with INVALID_IKE_SPI and its QCD
token, A deletes the old tunnel and builds a new one.  Then the same without QCD, where A only
gives up after its retransmissions.

Two stages, the same story:

* **namespaces** (root, TUN available): ``host A - gateway A == wire == gateway B - host B`` in
  network namespaces (:mod:`quickike.lab`), two ``quickike run`` processes with the userspace
  data plane over TUN devices, real ICMP echo from host A's namespace, SIGKILL for the crash;
* **loopback** (anyone): both daemons in this process on 127.0.0.1 and 127.0.0.2 with real IKE
  and ESP-in-UDP over loopback; where the TUN devices would be, a socket pair leads to an
  emulated host (host B answers echo requests, host A sends them).  The crash closes B's
  sockets without Deletes.

The pieces are public because the tunnel tests and ``bench/bench_recovery.py`` run the same
scenes: :func:`gateway_config`, :class:`GatewayProcess`, :class:`IcmpProber`,
:func:`namespace_story`, :func:`loopback_story`, :class:`StoryRun`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..lab.charon import render_tree
from ..lab.netns import netns_socket
from ..tools.sequence import Arrow, render

if TYPE_CHECKING:
    from ..engine import events as ev
    from ..lab.netns import GatewayPair, Lab, LabProcess, Namespace
    from .daemon import Daemon

PROBE_INTERVAL = 0.010
#: the retransmission settings of the story without QCD: give up after 3.02 s
SHORT_RETRANSMIT = {"retransmit_timeout": "0.5", "retransmit_tries": "2"}
PSK = "quickike demo: a pre-shared key long enough for the lab"

Record = dict[str, Any]

# ============================================================================ packets


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def icmp_echo(ident: int, seq: int, payload: bytes = b"quickike", *, reply: bool = False) -> bytes:
    """An ICMP echo request (or reply) message, without the IP header."""
    head = struct.pack("!BBHHH", 0 if reply else 8, 0, 0, ident, seq)
    csum = _checksum(head + payload)
    return struct.pack("!BBHHH", 0 if reply else 8, 0, csum, ident, seq) + payload


def ipv4_packet(src: str, dst: str, protocol: int, payload: bytes, ttl: int = 64) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, ttl, protocol, 0,
                       socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
    csum = _checksum(head)
    return head[:10] + struct.pack("!H", csum) + head[12:] + payload


def parse_echo(packet: bytes) -> tuple[str, str, int, int, int] | None:
    """(source, destination, ICMP type, identifier, sequence) of an IPv4 echo, else None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if len(packet) < ihl + 8 or packet[ihl] not in (0, 8):
        return None
    kind, _code, _csum, ident, seq = struct.unpack_from("!BBHHH", packet, ihl)
    return socket.inet_ntoa(packet[12:16]), socket.inet_ntoa(packet[16:20]), kind, ident, seq


# ============================================================================ probes


@dataclass(slots=True)
class Probes:
    """Echo requests by sequence number: when each left, when its answer came back."""

    sent: dict[int, float] = field(default_factory=dict)
    answered: dict[int, float] = field(default_factory=dict)

    def first_answer_after(self, t: float) -> float | None:
        """When the first answer received at or after ``t`` arrived."""
        later = [r for r in self.answered.values() if r >= t]
        return min(later) if later else None

    def answers_since(self, t: float) -> int:
        return sum(1 for r in self.answered.values() if r >= t)

    def lost(self, since: float, until: float) -> int:
        """Requests sent in [since, until) that were never answered."""
        return sum(1 for s, t in self.sent.items() if since <= t < until and s not in self.answered)


class IcmpProber:
    """Pings ``dst`` every ``interval`` from a raw ICMP socket, on a thread, with timestamps.

    The socket is opened inside a network namespace (see :func:`netns_socket`), so host A's
    kernel routes the requests to its gateway and host B's kernel answers them: the probes
    cross the real tunnel both ways.  Timestamps are ``time.monotonic``, the clock of the
    daemons' engines (the ``time`` of their log records: CLOCK_MONOTONIC is one clock for all
    processes of the machine, whatever their namespace).
    """

    def __init__(self, sock: socket.socket, dst: str, interval: float = PROBE_INTERVAL) -> None:
        self.sock = sock
        self.dst = dst
        self.interval = interval
        self.ident = os.getpid() & 0xFFFF
        self.probes = Probes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="icmp-prober", daemon=True)

    def start(self) -> IcmpProber:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.sock.close()

    def _run(self) -> None:
        sock, probes = self.sock, self.probes
        sock.setblocking(False)
        seq = 0
        next_send = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_send:
                seq = (seq + 1) & 0xFFFF
                with contextlib.suppress(OSError):
                    sock.sendto(icmp_echo(self.ident, seq), (self.dst, 0))
                    probes.sent[seq] = now
                next_send += self.interval
                if next_send < now:  # we were late: do not send a burst
                    next_send = now + self.interval
            ready, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
            while ready:
                try:
                    data = sock.recv(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                got = time.monotonic()
                echo = parse_echo(data)
                if echo is not None and echo[2] == 0 and echo[3] == self.ident:
                    probes.answered.setdefault(echo[4], got)


# ============================================================================ configuration


def gateway_config(
    *,
    me: str,
    peer: str,
    my_net: str,
    peer_net: str,
    my_id: str,
    peer_id: str,
    state_dir: str,
    initiator: bool,
    qcd: bool = True,
    start_action: str | None = None,
    port: int = 500,
    port_nat_t: int = 4500,
    peer_port: int = 500,
    settings: Mapping[str, str] | None = None,
    tun: Mapping[str, str] | None = None,
    conn: Mapping[str, str] | None = None,
    child: Mapping[str, str] | None = None,
    esp_proposals: str = "aes128gcm16",
) -> str:
    """One gateway's quickike.conf for a site-to-site tunnel with the userspace data plane.

    The initiator starts the tunnel (``start_action = start`` unless given) and rebuilds it
    when it loses it (``dpd_action = restart``); the responder only answers.
    """
    action = start_action if start_action is not None else ("start" if initiator else "none")
    daemon = {"port": str(port), "port_nat_t": str(port_nat_t), "state_dir": state_dir,
              "dataplane": "userspace", **(settings or {})}  # fmt: skip
    conn_keys = {"local_addrs": me, "remote_addrs": peer, "remote_port": str(peer_port),
                 "proposals": "aes128gcm16-prfsha256-x25519", "qcd": "yes" if qcd else "no",
                 **(conn or {})}  # fmt: skip
    child_keys = {"local_ts": my_net, "remote_ts": peer_net, "esp_proposals": esp_proposals,
                  "start_action": action, "dpd_action": "restart" if initiator else "clear",
                  **(child or {})}  # fmt: skip
    quickike: dict[str, object] = {**daemon, "qcd": {"enable": qcd}}
    if tun:
        quickike["tun"] = dict(tun)
    tree = {
        "quickike": quickike,
        "connections": {"site": {
            **conn_keys,
            "local": {"auth": "psk", "id": my_id},
            "remote": {"auth": "psk", "id": peer_id},
            "children": {"net": child_keys},
        }},
        "secrets": {"ike-site": {"id-a": my_id, "id-b": peer_id, "secret": PSK}},
    }  # fmt: skip
    return render_tree(tree) + "\n"


# ============================================================================ the story's result


@dataclass(frozen=True, slots=True)
class Mark:
    """One moment of the story; ``t`` in seconds on the story's clock."""

    t: float
    who: str
    what: str


@dataclass(slots=True)
class StoryRun:
    """What one crash-and-restart showed."""

    qcd: bool
    stage: str  # "namespaces" or "loopback"
    crash: float
    ready: float
    first_answer: float | None
    probes: Probes
    marks: list[Mark] = field(default_factory=list)
    arrows: list[Arrow] = field(default_factory=list)

    @property
    def outage(self) -> float | None:
        """From the restarted gateway being ready to the first answered probe (seconds)."""
        return None if self.first_answer is None else self.first_answer - self.ready

    def as_json(self) -> dict[str, object]:
        return {
            "qcd": self.qcd, "stage": self.stage,
            "outage_s": self.outage, "restart_s": self.ready - self.crash,
            "lost_probes": self.probes.lost(self.crash, self.first_answer or self.crash),
            "timeline": [{"t_ms": round((m.t - self.ready) * 1000, 3), "who": m.who,
                          "what": m.what} for m in self.marks],
        }  # fmt: skip


def story_marks(a: Sequence[Record], b: Sequence[Record], run: StoryRun, t: str) -> None:
    """Fill ``run.marks`` and ``run.arrows`` from both gateways' event records.

    Records are shaped like the daemon's JSON log lines (:func:`control.logs.event_fields`);
    ``t`` names their time field: "time", the engine's clock.
    """
    a = [r for r in a if t in r]  # engine events; plain log lines have no engine time
    b = [r for r in b if t in r]
    marks = [Mark(run.crash, "B", "crash (no Delete sent)"), Mark(run.ready, "B", "restarted, ready")]
    up = next((r for r in a if r.get("event") == "child-up" and r[t] < run.crash), None)
    if up is not None:
        marks.append(Mark(up[t], "A", "tunnel up"))
    after = [r for r in a if r[t] >= run.crash]
    seen: set[str] = set()

    def once(key: str, r: Record, who: str, what: str) -> None:
        if key not in seen:
            seen.add(key)
            marks.append(Mark(r[t], who, what))

    for r in b:
        if r[t] >= run.crash and _is_msg(r, sent=True, response=False, has="N(INVALID_SPI)"):
            once("invalid-spi", r, "B", "ESP for an unknown SPI: INVALID_SPI sent")
    for r in after:
        name = r.get("event")
        if name == "liveness":
            once("liveness", r, "A", f"liveness check ({r.get('why')})")
        elif _is_msg(r, sent=False, response=True, has="N(INVALID_IKE_SPI)"):
            token = "N(QUICK_CRASH_DETECTION)" in (r.get("payloads") or ())
            once("invalid-ike-spi", r, "A",
                 "INVALID_IKE_SPI + QCD token received" if token else "INVALID_IKE_SPI (no token)")
        elif name == "qcd-token-accepted":
            once("token", r, "A", "token matches: B rebooted")
        elif name == "qcd-teardown":
            once("teardown", r, "A", "old tunnel deleted (QCD)")
        elif name == "retransmit":
            marks.append(Mark(r[t], "A", f"liveness check retransmitted ({r.get('attempt')})"))
        elif name == "dead-peer":
            once("dead", r, "A", "peer declared dead")
        elif name == "child-up":
            once("new", r, "A", "new tunnel up")
    if run.first_answer is not None:
        marks.append(Mark(run.first_answer, "A", "first ping answered"))
    run.marks = sorted(marks, key=lambda m: m.t)
    for r in after:
        if r.get("event") == "message" and r[t] <= (run.first_answer or r[t]) + 0.001:
            kind = "response" if r.get("response") else "request"
            label = f"{r.get('exchange')} {kind} [ {' '.join(r.get('payloads') or ())} ]"
            run.arrows.append(Arrow(r[t], bool(r.get("sent")), label))


def _is_msg(r: Record, *, sent: bool, response: bool, has: str) -> bool:
    return (r.get("event") == "message" and bool(r.get("sent")) == sent
            and bool(r.get("response")) == response and has in (r.get("payloads") or ()))


# ============================================================================ loopback stage


class SocketTun:
    """A TUN device stand-in: one end of a datagram socket pair, one IP packet per datagram."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.routes: list[object] = []

    def fileno(self) -> int:
        return self.sock.fileno()

    def readinto(self, buf: memoryview) -> int:
        return self.sock.recv_into(buf)

    def write(self, packet: bytes | bytearray | memoryview) -> int:
        return self.sock.send(packet)

    def add_route(self, network: object) -> None:
        self.routes.append(network)

    def del_route(self, network: object) -> None:
        with contextlib.suppress(ValueError):
            self.routes.remove(network)


class EmulatedHost:
    """The host behind a gateway in the loopback stage: pings, or answers pings."""

    def __init__(self, sock: socket.socket, address: str, clock: Callable[[], float]) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.address = address
        self.clock = clock
        self.probes = Probes()
        self.ident = 0x5143

    def readable(self) -> None:
        while True:
            try:
                packet = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            echo = parse_echo(packet)
            if echo is None or echo[1] != self.address:
                continue
            src, dst, kind, ident, seq = echo
            if kind == 8:  # answer, as host B's kernel would
                payload = packet[(packet[0] & 0x0F) * 4 + 8:]
                reply = ipv4_packet(dst, src, 1, icmp_echo(ident, seq, payload, reply=True))
                with contextlib.suppress(OSError):
                    self.sock.send(reply)
            elif ident == self.ident:
                self.probes.answered.setdefault(seq, self.clock())

    def ping(self, dst: str, seq: int) -> None:
        packet = ipv4_packet(self.address, dst, 1, icmp_echo(self.ident, seq & 0xFFFF))
        self.probes.sent[seq & 0xFFFF] = self.clock()
        with contextlib.suppress(OSError):
            self.sock.send(packet)


@dataclass(slots=True)
class _LoopbackGateway:
    name: str
    host: str
    port: int
    nat_t: int
    net: str
    tun_end: socket.socket
    state: str
    daemon: Daemon | None = None
    records: list[Record] = field(default_factory=list)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise TimeoutError(f"quickike demo: {what} did not happen within {timeout:.0f} s")
        await asyncio.sleep(0.002)


async def loopback_story(workdir: str, *, qcd: bool, interval: float = PROBE_INTERVAL,
                         retransmit: Mapping[str, str] | None = None) -> StoryRun:
    """The crash story in this process; see the module docstring.  Times are loop.time()."""
    from ..control.config import load_config_text
    from ..control.logs import event_fields
    from .daemon import Daemon, qcd_extensions

    loop = asyncio.get_running_loop()
    clock = loop.time
    a_tun, a_host_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    b_tun, b_host_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a = _LoopbackGateway("A", "127.0.0.1", _free_port("127.0.0.1"), _free_port("127.0.0.1"),
                         "10.201.1.0/24", a_tun, f"{workdir}/a")  # fmt: skip
    b = _LoopbackGateway("B", "127.0.0.2", _free_port("127.0.0.2"), _free_port("127.0.0.2"),
                         "10.201.2.0/24", b_tun, f"{workdir}/b")  # fmt: skip
    host_a = EmulatedHost(a_host_end, "10.201.1.10", clock)
    host_b = EmulatedHost(b_host_end, "10.201.2.10", clock)
    tuns = {a.name: SocketTun(a_tun), b.name: SocketTun(b_tun)}

    async def start(gw: _LoopbackGateway, peer: _LoopbackGateway) -> Daemon:
        text = gateway_config(
            me=gw.host, peer=peer.host, my_net=gw.net, peer_net=peer.net,
            my_id=f"gw-{gw.name.lower()}.demo", peer_id=f"gw-{peer.name.lower()}.demo",
            state_dir=gw.state, initiator=gw is a, qcd=qcd, port=gw.port, port_nat_t=gw.nat_t,
            peer_port=peer.nat_t, settings=retransmit if gw is a else None,
        )  # fmt: skip
        cfg, _ = load_config_text(text, f"<demo gateway {gw.name}>")
        d = Daemon(cfg, trace=True, host=gw.host, ipv6=False, tun=tuns[gw.name],
                   extensions=qcd_extensions(cfg, gw.state))  # fmt: skip

        def record(e: ev.Event) -> None:
            gw.records.append(event_fields(e))

        d.observers = [record]
        await d.start()
        gw.daemon = d
        return d

    loop.add_reader(a_host_end.fileno(), host_a.readable)
    loop.add_reader(b_host_end.fileno(), host_b.readable)
    stop_probes = asyncio.Event()

    async def probe() -> None:
        seq = 0
        while not stop_probes.is_set():
            seq += 1
            host_a.ping(host_b.address, seq)
            await asyncio.sleep(interval)

    prober: asyncio.Task[None] | None = None
    try:
        await start(b, a)
        await start(a, b)
        await _until(lambda: any(r.get("event") == "child-up" for r in a.records), 10,
                     "the tunnel")  # fmt: skip
        prober = asyncio.create_task(probe())
        await _until(lambda: len(host_a.probes.answered) >= 10, 10, "pings through the tunnel")
        # -- the crash: B's sockets close, no Delete leaves; its host stays
        crash = clock()
        assert b.daemon is not None
        b.daemon.close()
        b.daemon = None
        await asyncio.sleep(0.05)  # a few probes into the void
        await start(b, a)
        ready = clock()
        limit = 10.0 if qcd else 30.0
        await _until(lambda: host_a.probes.first_answer_after(ready) is not None, limit,
                     "the first ping after the restart")  # fmt: skip
        await asyncio.sleep(0.05)
    finally:
        stop_probes.set()
        if prober is not None:
            await prober
        loop.remove_reader(a_host_end.fileno())
        loop.remove_reader(b_host_end.fileno())
        for gw in (a, b):
            if gw.daemon is not None:
                gw.daemon.close()
        for s in (a_tun, a_host_end, b_tun, b_host_end):
            s.close()
    run = StoryRun(qcd, "loopback", crash, ready, host_a.probes.first_answer_after(ready),
                   host_a.probes)  # fmt: skip
    story_marks(a.records, b.records, run, "time")
    return run


# ============================================================================ namespace stage


class GatewayProcess:
    """``quickike run`` in a lab namespace: JSON debug log, ready when its sockets are open.

    Every start is a new process (the lab tracks and cleans it up by PID); the records of all
    of them stay readable, in order, so a story can span a crash.
    """

    def __init__(self, namespace: Namespace, directory: Path, config_text: str, label: str,
                 *, log_level: str = "debug", prefix: Sequence[str] = ()) -> None:  # fmt: skip
        """``prefix`` goes before the command (``taskset -c 0``, say)."""
        self.namespace = namespace
        self.log_level = log_level
        self.prefix = list(prefix)
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "quickike.conf"
        self.conf.write_text(config_text)
        self.label = label
        self.process: LabProcess | None = None
        self.generations: list[LabProcess] = []
        self._cache: dict[int, tuple[int, list[Record]]] = {}

    def start(self, timeout: float = 20.0) -> float:
        """Start and wait until it listens; returns when it logged that (``time.monotonic``)."""
        argv = [*self.prefix, sys.executable, "-m", "quickike", "run", "-c", str(self.conf),
                "--log-format", "json", "--log-level", self.log_level]  # fmt: skip
        proc = self.namespace.spawn(argv, label=f"quickike-{self.label}")
        self.process = proc
        self.generations.append(proc)
        index = len(self.generations) - 1
        end = time.monotonic() + timeout
        while True:
            for r in self.records(index):
                if str(r.get("msg", "")).startswith("listening on"):
                    return float(r["ts"]) - (time.time() - time.monotonic())
            if not proc.alive():
                raise RuntimeError(f"quickike {self.label} exited:\n{proc.output()[-3000:]}")
            if time.monotonic() > end:
                raise RuntimeError(f"quickike {self.label} not ready in {timeout} s:\n"
                                   f"{proc.output()[-3000:]}")  # fmt: skip
            time.sleep(0.002)

    def kill(self) -> float:
        """SIGKILL (a crash: no Delete); returns when it was sent (``time.monotonic``)."""
        assert self.process is not None
        t = time.monotonic()
        self.process.signal(signal.SIGKILL)
        self.process.wait(10.0)
        return t

    def stop(self) -> None:
        if self.process is not None and self.process.alive():
            self.process.stop(5.0)

    def records(self, generation: int | None = None) -> list[Record]:
        """Log records of one start (default: all of them, in order)."""
        if generation is None:
            return [r for g in range(len(self.generations)) for r in self.records(g)]
        path = self.generations[generation].stderr_path
        size = path.stat().st_size if path.exists() else 0
        cached = self._cache.get(generation)
        if cached is not None and cached[0] == size:
            return cached[1]
        out: list[Record] = []
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    r = json.loads(line)
                    if isinstance(r, dict) and "ts" in r:
                        out.append(r)
        self._cache[generation] = (size, out)
        return out

    def wait(self, pred: Callable[[Record], bool], timeout: float, what: str,
             generation: int | None = None) -> Record:  # fmt: skip
        end = time.monotonic() + timeout
        while True:
            for r in self.records(generation):
                if pred(r):
                    return r
            if time.monotonic() > end:
                tail = self.process.output()[-2000:] if self.process else ""
                raise RuntimeError(f"quickike {self.label}: no {what} within {timeout} s\n{tail}")
            time.sleep(0.01)


def pair_configs(pair: GatewayPair, workdir: Path, *, qcd: bool,
                 retransmit: Mapping[str, str] | None = None,
                 a_start: str | None = None, b_start: str | None = None,
                 b_initiator: bool = False) -> tuple[str, str]:  # fmt: skip
    """quickike.conf for gateway A (initiator, survivor) and gateway B (responder)."""
    common: dict[str, Any] = {"qcd": qcd}
    conf_a = gateway_config(me=pair.wire_a, peer=pair.wire_b, my_net=pair.lan_a,
                            peer_net=pair.lan_b, my_id="gw-a.lab", peer_id="gw-b.lab",
                            state_dir=str(workdir / "a" / "state"), initiator=True,
                            start_action=a_start, settings=retransmit, **common)  # fmt: skip
    conf_b = gateway_config(me=pair.wire_b, peer=pair.wire_a, my_net=pair.lan_b,
                            peer_net=pair.lan_a, my_id="gw-b.lab", peer_id="gw-a.lab",
                            state_dir=str(workdir / "b" / "state"), initiator=b_initiator,
                            start_action=b_start, settings=retransmit, **common)  # fmt: skip
    return conf_a, conf_b


def namespace_story(lab: Lab, pair: GatewayPair, workdir: Path, *, qcd: bool,
                    retransmit: Mapping[str, str] | None = None,
                    interval: float = PROBE_INTERVAL, timeout: float | None = None,
                    tag: str = "") -> StoryRun:  # fmt: skip
    """The crash story with two ``quickike run`` processes in ``pair``'s namespaces.

    Both daemons are fresh (QCD dampens a second teardown for the same peer), and are
    stopped again at the end.  Times are ``time.monotonic``, the engines' clock.
    """
    assert pair.host_a is not None and pair.host_b is not None
    workdir = workdir / f"story-{'qcd' if qcd else 'noqcd'}{tag}"
    conf_a, conf_b = pair_configs(pair, workdir, qcd=qcd, retransmit=retransmit)
    gw_a = GatewayProcess(pair.gw_a, workdir / "a", conf_a, "a")
    gw_b = GatewayProcess(pair.gw_b, workdir / "b", conf_b, "b")
    prober: IcmpProber | None = None
    try:
        gw_b.start()
        gw_a.start()
        gw_a.wait(lambda r: r.get("event") == "child-up", 15, "tunnel")
        sock = netns_socket(pair.host_a.name, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        prober = IcmpProber(sock, pair.host_b_addr, interval).start()
        end = time.monotonic() + 10
        while len(prober.probes.answered) < 10:
            if time.monotonic() > end:
                raise RuntimeError("no pings through the tunnel\n" + lab.describe())
            time.sleep(0.01)
        crash = gw_b.kill()
        ready = gw_b.start()
        limit = timeout if timeout is not None else (5.0 if qcd else 200.0)
        end = time.monotonic() + limit
        while prober.probes.first_answer_after(ready) is None and time.monotonic() < end:
            time.sleep(0.005)
        first = prober.probes.first_answer_after(ready)
        end = time.monotonic() + 2.0  # the tunnel keeps answering: a few pings to show it
        while first is not None and prober.probes.answers_since(first) < 3:
            if time.monotonic() > end:
                break
            time.sleep(0.005)
    finally:
        if prober is not None:
            prober.stop()
        for gw in (gw_a, gw_b):
            gw.stop()
    assert prober is not None
    first = prober.probes.first_answer_after(ready)
    run = StoryRun(qcd, "namespaces", crash, ready, first, prober.probes)
    story_marks(gw_a.records(), gw_b.records(), run, "time")
    return run


# ============================================================================ telling it


def render_run(run: StoryRun) -> str:
    head = "with QCD" if run.qcd else "without QCD (retransmit_timeout 0.5 s, 2 tries)"
    out = [f"--- {head} " + "-" * max(0, 70 - len(head))]
    for m in run.marks:
        ms = (m.t - run.ready) * 1000.0
        out.append(f"  {ms:+10.1f} ms  {'gateway ' + m.who:<10} {m.what}")
    if run.arrows:
        out.append("")
        out.append(render("gateway A (survivor)", "gateway B (restarted)",
                          sorted(run.arrows, key=lambda x: x.time), width=96, t0=run.ready))
    lost = run.probes.lost(run.crash, run.first_answer or run.crash)
    if run.outage is None:
        out.append("\n  the tunnel did not come back in time")
    else:
        out.append(f"\n  outage after the restart: {run.outage * 1000:.1f} ms "
                   f"({lost} pings lost in all, {(run.ready - run.crash) * 1000:.0f} ms of them "
                   "while B was down)")  # fmt: skip
    return "\n".join(out)


def write_png(runs: Sequence[StoryRun], path: Path) -> bool:
    """The timelines as one PNG, from B's restart to the first answered ping; False (and
    nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 3.8 * len(runs)), squeeze=False,
                             layout="constrained")  # fmt: skip
    for ax, run in zip((row[0] for row in axes), runs, strict=True):
        t0 = run.ready
        end = (run.first_answer or run.ready + 1.0) - t0
        pad = max(0.003, end * 0.08)
        lo, hi = -pad, end + pad
        scale, unit = (1000.0, "ms") if end < 2.0 else (1.0, "s")
        sent = run.probes.sent.items()
        ok = [(t - t0) * scale for q, t in sent if q in run.probes.answered and lo <= t - t0 <= hi]
        lost = [(t - t0) * scale for q, t in sent
                if q not in run.probes.answered and lo <= t - t0 <= hi]  # fmt: skip
        ax.scatter(ok, [0.0] * len(ok), marker="|", s=80, color="tab:green",
                   label="ping sent, answered")  # fmt: skip
        ax.scatter(lost, [0.0] * len(lost), marker="x", s=14, color="tab:red",
                   label="ping sent, lost")  # fmt: skip
        shown = [m for m in run.marks if lo <= m.t - t0 <= hi]
        for i, m in enumerate(shown):
            x = (m.t - t0) * scale
            y = 0.95 - 0.8 * i / max(1, len(shown) - 1)
            color = "tab:blue" if m.who == "A" else "tab:orange"
            ax.axvline(x, color=color, lw=0.8, alpha=0.6)
            right = x > (lo + 0.6 * (hi - lo)) * scale
            ax.annotate(f"{(m.t - t0) * 1000:.1f} ms  {m.who}: {m.what}", (x, y), fontsize=7.5,
                        color=color, ha="right" if right else "left",
                        xytext=(-4 if right else 4, 0), textcoords="offset points")  # fmt: skip
        ax.set_ylim(-0.15, 1.05)
        ax.set_yticks([])
        ax.set_xlim(lo * scale, hi * scale)
        ax.set_xlabel(f"{unit} since gateway B was ready again (it had been down "
                      f"{(run.ready - run.crash) * 1000:.0f} ms)")  # fmt: skip
        title = "with QCD" if run.qcd else "without QCD (retransmit_timeout 0.5 s, 2 tries)"
        out = "no recovery" if run.outage is None else f"outage {run.outage * 1000:.0f} ms"
        ax.set_title(f"{title}, {run.stage}: {out}", fontsize=10)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    fig.suptitle("quickike demo: gateway B killed and restarted, host A pinging host B "
                 "every 10 ms", fontsize=11)  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def can_use_namespaces() -> str | None:
    """Why the namespace stage cannot run here, or None."""
    from ..lab import caps

    return caps.missing_netns() or caps.missing_tun()


def _namespace_runs(keep: bool) -> list[StoryRun]:
    from ..lab.netns import Lab

    with Lab(keep_workdir=keep) as lab:
        pair = lab.gateway_pair(hosts=True, ipv6=False)
        return [namespace_story(lab, pair, lab.workdir, qcd=True),
                namespace_story(lab, pair, lab.workdir, qcd=False, retransmit=SHORT_RETRANSMIT)]


async def _loopback_runs() -> list[StoryRun]:
    import logging

    # the daemons' log lines would interleave with the story: the story prints what matters
    root = logging.getLogger("quickike")
    saved = root.handlers[:], root.propagate
    root.handlers[:] = [logging.NullHandler()]
    root.propagate = False
    try:
        with tempfile.TemporaryDirectory(prefix="quickike-demo-") as tmp:
            return [await loopback_story(f"{tmp}/qcd", qcd=True),
                    await loopback_story(f"{tmp}/noqcd", qcd=False, retransmit=SHORT_RETRANSMIT)]
    finally:
        root.handlers[:], root.propagate = saved


def run_demo(json_output: bool = False, png: str | None = "out/quickike-demo.png",
             loopback: bool = False) -> int:
    why = "--loopback given" if loopback else can_use_namespaces()
    runs: list[StoryRun] = []
    if why is None:
        stage = "network namespaces, two `quickike run` daemons, userspace ESP over TUN"
        from ..lab.netns import LabError

        try:
            runs = _namespace_runs(keep=False)
        except (OSError, RuntimeError, LabError) as e:  # the lab is gone again (Lab cleans up)
            why = f"the namespace version failed: {str(e).splitlines()[0]}"
    if why is not None:
        stage = f"loopback in this process ({why}), real IKE and ESP-in-UDP"
        runs = asyncio.run(_loopback_runs())
    png_note = ""
    if png:
        path = Path(png)
        if write_png(runs, path):
            png_note = f"timeline written to {path}"
        else:
            png_note = f"no PNG: matplotlib is missing (pip install matplotlib); it would be {path}"
    if json_output:
        print(json.dumps({"stage": stage, "runs": [r.as_json() for r in runs],
                          "png": png_note}, indent=2))  # fmt: skip
        return 0 if all(r.outage is not None for r in runs) else 1
    print(f"quickike demo: {stage}")
    print("gateway A initiates a tunnel to gateway B; host A pings host B every 10 ms;")
    print("B is killed without a Delete and restarted with the same state directory.\n")
    for run in runs:
        print(render_run(run))
        print()
    qcd, plain = runs[0].outage, runs[1].outage
    if qcd is not None and plain is not None:
        print(f"QCD brought the tunnel back {plain / qcd:.0f} times sooner "
              f"({qcd * 1000:.0f} ms against {plain:.2f} s; with strongSwan's default "
              "retransmissions the wait without QCD is about 165 s).")  # fmt: skip
    if png_note:
        print(png_note)
    return 0 if all(r.outage is not None for r in runs) else 1


__all__ = [
    "GatewayProcess",
    "IcmpProber",
    "Mark",
    "Probes",
    "StoryRun",
    "gateway_config",
    "loopback_story",
    "namespace_story",
    "netns_socket",
    "pair_configs",
    "run_demo",
]
