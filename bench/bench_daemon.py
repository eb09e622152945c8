"""IKE SA setups per second and memory per SA, daemon to daemon, over real UDP.

    sudo python bench/bench_daemon.py [--count 11000] [--window 32] [--pin] [--no-qcd]
                                      [--json FILE] [--profile DIR] [--strongswan]

Two network namespaces joined by a veth pair (10.200.0.1 -- 10.200.0.2, standard ports
500/4500), as for the strongSwan load-tester run (``bench/bench_strongswan_loadtester.py``):

* responder: ``quickike run`` with its default settings (QCD on, VICI control socket, log
  level info to a file), no data plane (``dataplane = none``: CHILD SAs are negotiated and
  handed to a data plane that keeps nothing, as the load-tester's ``fake_kernel``);
* initiator: ``python -m quickike.daemon.loadgen``, the same daemon with a loop that keeps
  ``--window`` setups in flight (the load-tester's ``init_limit``) until ``--count`` are up.

PSK, ``aes128gcm16-prfsha256-x25519``, one CHILD (``aes128gcm16``) per IKE SA; both sides
with cookies off (``cookie_threshold = 0``, like charon's ``dos_protection = no`` in the
load test). ``--pin`` puts the initiator on CPU 0 and the responder on CPU 1.

Figures: setups/s between the 1,000th and 2,000th SA (about 1,000 held) and between the
10,000th and 11,000th (10,000 held), their ratio, and memory per IKE SA + CHILD on each
side as the RSS slope between the 1,000 and the ``--count`` marks (and the responder's RSS
growth from idle). Everything runs in a `quickike.lab.Lab`, which removes the namespaces
and processes on exit, also on failure or SIGTERM.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quickike.daemon.loadgen import rss_kb
from quickike.lab import Lab
from quickike.lab.netns import LabProcess, Namespace

PSK = "load-test pre-shared key of reasonable length"
PROPOSAL = "aes128gcm16-prfsha256-x25519"
ESP = "aes128gcm16"
IP_I, IP_R = "10.200.0.1", "10.200.0.2"


# ---------------------------------------------------------------------------- shared helpers


@dataclass
class Samples:
    """(time, value) series sampled by the benchmark, interpolated at milestones."""

    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)

    def add(self, t: float, v: float) -> None:
        self.t.append(t)
        self.v.append(v)

    def at(self, t: float) -> float:
        i = bisect.bisect_left(self.t, t)
        if i <= 0:
            return self.v[0]
        if i >= len(self.t):
            return self.v[-1]
        t0, t1, v0, v1 = self.t[i - 1], self.t[i], self.v[i - 1], self.v[i]
        return v0 if t1 == t0 else v0 + (v1 - v0) * (t - t0) / (t1 - t0)

    def when(self, value: float) -> float | None:
        """First time the (non-decreasing) series reaches ``value``, interpolated."""
        for i, v in enumerate(self.v):
            if v >= value:
                if i == 0:
                    return self.t[0]
                t0, t1, v0, v1 = self.t[i - 1], self.t[i], self.v[i - 1], v
                return t1 if v1 == v0 else t0 + (t1 - t0) * (value - v0) / (v1 - v0)
        return None


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) a process has used, in seconds; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


class Probe:
    """RSS and CPU time of one process, sampled by the benchmark loop."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.rss = Samples()
        self.cpu = Samples()

    def sample(self, now: float) -> None:
        self.rss.add(now, rss_kb(self.pid))
        self.cpu.add(now, cpu_s(self.pid))


def taskset(pin: bool, cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if pin else []


def wire(lab: Lab) -> tuple[Namespace, Namespace]:
    """Initiator and responder namespaces on one veth (no route out of the lab)."""
    ns_i = lab.add_namespace("ldi")
    ns_r = lab.add_namespace("ldr")
    lab.connect(ns_i, "wire", ns_r, "wire")
    ns_i.add_address("wire", f"{IP_I}/24")
    ns_r.add_address("wire", f"{IP_R}/24")
    return ns_i, ns_r


def summarise(name: str, established: Samples, init: Probe, resp: Probe,
              count: int, rss_r_idle: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rates around 1,000 and count-1,000 held SAs; memory and CPU per SA on both ends."""
    marks = {n: established.when(n) for n in (1000, 2000, 4000, count - 3000, count - 1000, count)}
    if any(v is None for v in marks.values()):
        raise RuntimeError(f"{name}: not all milestones reached: {marks}")
    t = {k: float(v) for k, v in marks.items() if v is not None}
    rate_1k = 1000 / (t[2000] - t[1000])
    rate_hold = 1000 / (t[count] - t[count - 1000])
    # windows of 3,000 SAs hold about one cycle of CPython's full garbage collection (it runs
    # when the tracked objects grew by 25 %), so its pauses weigh in both as they do on average
    rate_1k_3k = 3000 / (t[4000] - t[1000])
    rate_hold_3k = 3000 / (t[count] - t[count - 3000])
    n = count - 1000
    overall = n / (t[count] - t[1000])

    def per_sa(series: Samples, scale: float) -> float:
        return (series.at(t[count]) - series.at(t[1000])) * scale / n

    def cpu_between(p: Probe, a: int, b: int) -> float:
        return (p.cpu.at(t[b]) - p.cpu.at(t[a])) * 1e6 / (b - a)

    return {
        "name": name, "count": count,
        "rate_at_1k": round(rate_1k, 1), "rate_at_hold": round(rate_hold, 1),
        "hold_ratio": round(rate_hold / rate_1k, 3), "rate_overall": round(overall, 1),
        "rate_1k_to_4k": round(rate_1k_3k, 1), "rate_last_3k": round(rate_hold_3k, 1),
        "hold_ratio_3k": round(rate_hold_3k / rate_1k_3k, 3),
        "bytes_per_sa_initiator": round(per_sa(init.rss, 1024)),
        "bytes_per_sa_responder": round(per_sa(resp.rss, 1024)),
        "bytes_per_sa_responder_from_idle": round((resp.rss.at(t[count]) - rss_r_idle) * 1024 / count),
        "cpu_us_per_sa_initiator": round(per_sa(init.cpu, 1e6)),
        "cpu_us_per_sa_responder": round(per_sa(resp.cpu, 1e6)),
        "cpu_us_per_sa_at_1k": [round(cpu_between(init, 1000, 2000)), round(cpu_between(resp, 1000, 2000))],
        "cpu_us_per_sa_at_hold": [round(cpu_between(init, count - 1000, count)),
                                  round(cpu_between(resp, count - 1000, count))],
        "rss_kb_initiator_end": init.rss.at(t[count]), "rss_kb_responder_end": resp.rss.at(t[count]),
        **(extra or {}),
    }


def print_result(r: dict[str, Any]) -> None:
    print(f"{r['name']}: {r['rate_at_1k']:.0f} SAs/s at ~1,000 held, {r['rate_at_hold']:.0f} SAs/s "
          f"at ~{r['count'] - 1000:,} held (x{r['hold_ratio']:.2f}); 3,000-SA windows: "
          f"{r['rate_1k_to_4k']:.0f} -> {r['rate_last_3k']:.0f} (x{r['hold_ratio_3k']:.2f}); "
          f"{r['rate_overall']:.0f} SAs/s overall; memory per IKE+CHILD SA: initiator {r['bytes_per_sa_initiator'] / 1000:.1f} kB, "
          f"responder {r['bytes_per_sa_responder'] / 1000:.1f} kB "
          f"({r['bytes_per_sa_responder_from_idle'] / 1000:.1f} kB from idle); CPU per SA: "
          f"initiator {r['cpu_us_per_sa_initiator']} us, responder {r['cpu_us_per_sa_responder']} us "
          f"(at 1k {r['cpu_us_per_sa_at_1k']}, at hold {r['cpu_us_per_sa_at_hold']})")


# ---------------------------------------------------------------------------- quickike


def quickike_config(*, initiator: bool, state_dir: Path, qcd: bool, log_file: Path,
                    log_level: str) -> str:
    me, peer = (IP_I, IP_R) if initiator else (IP_R, IP_I)
    my_id, peer_id = ("cli.load.example", "srv.load.example") if initiator \
        else ("srv.load.example", "cli.load.example")
    my_net, peer_net = ("10.1.0.0/16", "10.2.0.0/16") if initiator else ("10.2.0.0/16", "10.1.0.0/16")
    return "\n".join([
        "quickike {",
        f"    state_dir = {state_dir}",
        f"    vici_socket = unix://{state_dir}/quickike.vici",
        "    cookie_threshold = 0",
        "    qcd {",
        f"        enable = {'yes' if qcd else 'no'}",
        "    }",
        "    log {",
        f"        level = {log_level}",
        f"        file = {log_file}",
        "    }",
        "}",
        "connections {",
        "    load {",
        f"        local_addrs = {me}",
        f"        remote_addrs = {peer}",
        f"        proposals = {PROPOSAL}",
        "        local {",
        "            auth = psk",
        f"            id = {my_id}",
        "        }",
        "        remote {",
        "            auth = psk",
        f"            id = {peer_id}",
        "        }",
        "        children {",
        "            load {",
        f"                local_ts = {my_net}",
        f"                remote_ts = {peer_net}",
        f"                esp_proposals = {ESP}",
        "            }",
        "        }",
        "    }",
        "}",
        "secrets {",
        "    ike-load {",
        f"        id-a = {my_id}",
        f"        id-b = {peer_id}",
        f'        secret = "{PSK}"',
        "    }",
        "}",
        "",
    ])


def _wait_for(pred: Any, timeout: float, what: str, procs: list[LabProcess]) -> None:
    end = time.monotonic() + timeout
    while not pred():
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{what}: {p.argv[:4]} exited {p.returncode}:\n{p.output()[-3000:]}")
        if time.monotonic() > end:
            raise RuntimeError(f"{what}: timed out after {timeout} s")
        time.sleep(0.01)


def run_quickike(count: int, window: int, *, pin: bool, qcd: bool = True, log_level: str = "info",
                 profile: Path | None = None, sample: float = 0.02, keep: bool = False) -> dict[str, Any]:
    with Lab(keep_workdir=keep) as lab:
        ns_i, ns_r = wire(lab)
        work = lab.workdir
        confs = {}
        for role, initiator in (("initiator", True), ("responder", False)):
            d = work / role
            d.mkdir()
            conf = d / "quickike.conf"
            conf.write_text(quickike_config(initiator=initiator, state_dir=d, qcd=qcd,
                                            log_file=d / "quickike.log", log_level=log_level))
            confs[role] = (d, conf)
        py = sys.executable
        resp_argv = [*taskset(pin, 1), py, "-m", "quickike", "run", "-c", str(confs["responder"][1])]
        resp = ns_r.spawn(resp_argv, label="responder")
        _wait_for(lambda: _udp_bound(ns_r, 4500), 30, "quickike responder start", [resp])
        resp_pid = _python_pid(resp)
        time.sleep(0.3)
        rss_idle = rss_kb(resp_pid)
        gen_argv = [*taskset(pin, 0), py, "-m", "quickike.daemon.loadgen", "-c", str(confs["initiator"][1]),
                    "--conn", "load", "--count", str(count), "--window", str(window),
                    "--report-every", "250", "--hold"]
        gen = ns_i.spawn(gen_argv, label="loadgen")
        spies = [] if profile is None else [
            py_spy(_python_pid(gen), profile / "initiator.collapsed"),
            py_spy(resp_pid, profile / "responder.collapsed")]
        try:
            established = Samples()
            p_i, p_r = Probe(_python_pid(gen)), Probe(resp_pid)
            _follow(gen, established, p_i, p_r, count, sample)
        finally:
            for spy in spies:  # py-spy writes its file on SIGINT
                spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
        p_i.sample(time.monotonic())
        p_r.sample(time.monotonic())
        result = summarise("quickike" + ("" if qcd else " (QCD off)"), established, p_i, p_r,
                           count, rss_idle, {"window": window, "pinned": pin, "qcd": qcd,
                                             "log_level": log_level})
        gen.stop(10.0)
        resp.stop(10.0)
        if profile is not None:
            for role in ("initiator", "responder"):
                text = profile_summary(profile / f"{role}.collapsed")
                (profile / f"{role}.summary.txt").write_text(text)
                print(f"--- profile of the {role} ({profile / role}.collapsed)\n{text}")
        return result


def _follow(gen: LabProcess, established: Samples, p_i: Probe, p_r: Probe, count: int,
            sample: float) -> None:
    """Sample both daemons until the load generator reports that it is done."""
    start = time.monotonic()
    deadline = start + max(120.0, count / 50)
    seen = 0
    while True:
        now = time.monotonic()
        p_i.sample(now)
        p_r.sample(now)
        lines = gen.stdout_path.read_text().splitlines()
        for line in lines[seen:]:
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            established.add(rec["t"], rec["established"])
            if rec.get("failed"):
                raise RuntimeError(f"quickike: {rec['failed']} setups failed")
            if rec.get("phase") == "done":
                return
        seen = len(lines)
        if not gen.alive():
            raise RuntimeError(f"loadgen exited {gen.returncode}:\n{gen.output()[-3000:]}")
        if now > deadline:
            raise RuntimeError(f"quickike: only {established.v[-1] if established.v else 0} "
                               f"of {count} SAs after {now - start:.0f} s")
        time.sleep(sample)


def py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    """Sample ``pid`` without pausing it (``--nonblocking``) until SIGINT; collapsed stacks."""
    return subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--rate", "200",
                             "--nonblocking", "--format", "raw", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


_CATEGORIES = (  # (category, test on "function (file:line)" of the innermost quickike frame)
    ("x25519 (key generation, shared secret)",
     lambda f, p: "x25519" in p or f in ("_XKeyPair.shared", "_x25519", "DhAlg.generate")),
    ("other crypto (prf+, keys, AUTH, NAT-D, AES-GCM, proposals)",
     lambda f, p: "quickike/crypto/" in p or "cryptography/" in p),
    ("wire codec", lambda f, p: "quickike/wire/" in p),
    ("QCD plug-in", lambda f, p: "quickike/qcd/" in p),
    ("logging", lambda f, p: "logging/" in p or "quickike/control/logs" in p),
    ("sockets", lambda f, p: "quickike/daemon/sockets" in p),
    ("VICI backend", lambda f, p: "vici" in p),
    ("engine and tasks", lambda f, p: "quickike/engine/" in p),
    ("idle", lambda f, p: f.startswith("EpollSelector.select")),
    ("event loop, daemon, other", lambda f, p: True),
)


def _frame(frame: str) -> tuple[str, str]:
    name, _, loc = frame.partition(" (")
    return name, loc.rpartition(":")[0]


def profile_summary(collapsed: Path, top: int = 25) -> str:
    """Where a daemon spent its CPU, from py-spy's collapsed stacks.

    Each sample counts for the innermost frame of quickike, logging or cryptography (standard
    library helpers count for their caller): by category, then by function.
    """
    cats: dict[str, int] = {}
    funcs: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = [_frame(f) for f in stack.split(";")]
        name, path = frames[-1]
        if not name.startswith("EpollSelector.select"):  # waiting for datagrams: idle
            for fn, fp in reversed(frames):
                if "quickike/" in fp or "logging/" in fp or "cryptography/" in fp:
                    name, path = fn, fp
                    break
        cat = next(c for c, test in _CATEGORIES if test(name, path))
        cats[cat] = cats.get(cat, 0) + count
        if cat != "idle":
            key = f"{name} ({path.rpartition('/')[2]})"
            funcs[key] = funcs.get(key, 0) + count
    busy = total - cats.pop("idle", 0)
    if not busy:
        return "no samples\n"
    lines = [f"{total} samples, {100 * busy / total:.0f} % busy; shares of the busy time:"]
    lines += [f"  {100 * c / busy:5.1f} %  {k}" for k, c in sorted(cats.items(), key=lambda kv: -kv[1])]
    lines.append("by innermost function:")
    lines += [f"  {100 * c / busy:5.1f} %  {k}" for k, c in
              sorted(funcs.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines) + "\n"


def _udp_bound(ns: Namespace, port: int) -> bool:
    """Something in ``ns`` listens on UDP ``port`` (the daemon binds 500, then 4500)."""
    return bool(ns.run("ss", "-Huln", f"sport = :{port}", check=False).stdout.strip())


def _python_pid(proc: LabProcess) -> int:
    """The PID whose RSS counts: the daemon itself, also when py-spy or taskset started it."""
    for _ in range(200):
        try:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        except OSError:
            kids = []
        exe = os.path.basename(os.readlink(f"/proc/{proc.pid}/exe")) if os.path.exists(f"/proc/{proc.pid}/exe") else ""
        if exe.startswith("python"):
            return proc.pid
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    return proc.pid


def _charon_level(level: str) -> int:
    """charon's filelog level closest to a quickike log level (info: charon's default 1)."""
    return {"debug": 2, "info": 1, "warning": -1, "error": -1}.get(level, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=11000, help="IKE SAs to set up (>= 7000)")
    ap.add_argument("--window", type=int, default=32, help="setups in flight")
    ap.add_argument("--pin", action="store_true", help="initiator on CPU 0, responder on CPU 1")
    ap.add_argument("--no-qcd", action="store_true", help="also run with QCD off (its cost)")
    ap.add_argument("--log-level", default="info", help="both daemons' log level (default info)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="py-spy both daemons (collapsed stacks and a summary) into DIR")
    ap.add_argument("--strongswan", action="store_true",
                    help="also run strongSwan's load-tester (bench_strongswan_loadtester.py)")
    ap.add_argument("--table-size", type=int, default=4096,
                    help="with --strongswan: charon's ikesa_table_size for the tuned run")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the lab's work directory")
    args = ap.parse_args()
    if args.count < 7000:
        ap.error("--count must be at least 7000")
    if os.geteuid() != 0:
        raise SystemExit("needs root (network namespaces)")
    if args.profile is not None:
        if shutil.which("py-spy") is None:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        args.profile.mkdir(parents=True, exist_ok=True)
    results = [run_quickike(args.count, args.window, pin=args.pin, log_level=args.log_level,
                            profile=args.profile, keep=args.keep)]
    print_result(results[-1])
    if args.no_qcd:
        results.append(run_quickike(args.count, args.window, pin=args.pin, qcd=False,
                                    log_level=args.log_level, keep=args.keep))
        print_result(results[-1])
    if args.strongswan:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_strongswan_loadtester import ensure_build, run_charon_pair

        prefix = ensure_build()
        q = results[0]
        for table in (None, args.table_size):
            ss = run_charon_pair(prefix, args.count, args.window, pin=args.pin, table_size=table,
                                 log_level=_charon_level(args.log_level))
            ss["name"] += f" (ikesa_table_size {table or 1})"
            results.append(ss)
            print_result(ss)
            print(f"quickike / {ss['name']}: rate {q['rate_at_1k'] / ss['rate_at_1k']:.2f}x at 1,000 "
                  f"held, {q['rate_at_hold'] / ss['rate_at_hold']:.2f}x at {args.count - 1000:,} held; "
                  f"memory {q['bytes_per_sa_responder'] / ss['bytes_per_sa_responder']:.2f}x "
                  f"(responder), {q['bytes_per_sa_initiator'] / ss['bytes_per_sa_initiator']:.2f}x "
                  f"(initiator)")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"),
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
