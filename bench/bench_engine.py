"""Full IKE SA setups per second and memory per SA, two engines in one process.

    python bench/bench_engine.py [--count 11000] [--no-qcd] [--default-gc] [--profile]
                                 [--json FILE]

PSK, ``aes128gcm16-prfsha256-x25519``, one CHILD SA (``aes128gcm16-esn``) per IKE SA, the
configuration of the strongSwan load-tester comparison in docs/benchmarks.md. Both engines
run the QCD plug-in (as ``quickike run`` does by default; ``--no-qcd`` for its cost) with an
in-memory secret, the system random source and a data plane that keeps nothing; the
garbage collector is tuned as in ``quickike run`` (``quickike.daemon.daemon.tune_gc``;
``--default-gc`` for CPython's default). No sockets, no event loop, no logging: this is
the engine's own cost. Cookies are off (as in the daemon runs). Setups are driven in batches of 50 in flight (as a load generator
keeps many exchanges in flight) and timed with ``time.process_time``.

Figures: setups/s (both ends on one core) per 1,000 SAs as the number held grows, the
ratio of the rate with ~10,000 held to the rate with ~1,000 held, time spent in the
garbage collector, and tracemalloc's count of the bytes per established IKE SA + CHILD SA
(per end), measured over the last 2,000 setups. ``--profile`` prints a pyinstrument profile
of 2,000 setups.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tests.engine.harness import Net, Node, pair

from quickike.crypto.rng import SystemRandomSource
from quickike.daemon.daemon import tune_gc
from quickike.engine import events as ev
from quickike.engine.dataplane import NullDataPlane

_gc_time = [0.0, 0.0]


def _gc_clock(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_time[1] = time.perf_counter()
    else:
        _gc_time[0] += time.perf_counter() - _gc_time[1]


class _Sink(list):  # type: ignore[type-arg]
    """The harness's wire log, kept empty: 10,000 setups would hold every datagram."""

    def append(self, item: object) -> None:
        pass


def make_pair(qcd: bool) -> tuple[Net, Node, Node]:
    net, a, b = pair(a_kw={"rekey_time": 0.0}, b_kw={"rekey_time": 0.0})
    for n in (a, b):
        eng = n.engine
        eng.trace = False
        eng.rng = SystemRandomSource()
        eng.dataplane = NullDataPlane()
        # cookies off, as in the daemon-to-daemon runs (50 in flight would otherwise cross the
        # default threshold of 10 half-open SAs and add a COOKIE round trip to most setups)
        eng.policy.settings.cookie_threshold = 0
        if qcd:
            from quickike.qcd import QcdExtension
            from quickike.qcd.store import MemorySecretStore

            eng.add_extension(QcdExtension(None, MemorySecretStore()))
    net.wire = _Sink()
    return net, a, b


def setup_batch(net: Net, a: Node, b: Node, count: int, batch: int = 50) -> int:
    """Set up ``count`` IKE+CHILD SAs, ``batch`` in flight; returns how many came up."""
    up = 0
    done = 0
    while done < count:
        n = min(batch, count - done)
        for _ in range(n):
            a.engine.initiate("gw", None, net.now)
        net.settle(max_rounds=100000)
        done += n
        up += sum(type(e) is ev.ChildSaUp for e in a.events)
        a.events.clear()
        b.events.clear()
    return up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=11000, help="setups in all (>= 3000)")
    ap.add_argument("--no-qcd", action="store_true", help="without the QCD plug-in")
    ap.add_argument("--default-gc", action="store_true", help="CPython's GC thresholds")
    ap.add_argument("--profile", action="store_true", help="pyinstrument profile of 2,000 setups")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()
    if args.count < 3000:
        ap.error("--count must be at least 3000")
    qcd = not args.no_qcd
    if not args.default_gc:
        tune_gc()
    gc.callbacks.append(_gc_clock)
    net, a, b = make_pair(qcd)
    setup_batch(net, a, b, 200)  # warm-up: imports, OpenSSL's first use of each algorithm

    if args.profile:
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0005)
        prof.start()
        setup_batch(net, a, b, 2000)
        prof.stop()
        print(prof.output_text(unicode=True, color=False, show_all=False))
        return

    windows: list[dict[str, Any]] = []
    while len(a.engine.sas) < args.count - 2000:
        held = len(a.engine.sas)
        t0, g0 = time.process_time(), _gc_time[0]
        up = setup_batch(net, a, b, 1000)
        dt, dg = time.process_time() - t0, _gc_time[0] - g0
        if up != 1000:
            raise SystemExit(f"only {up} of 1000 setups came up")
        windows.append({"held": held, "rate": 1000 / dt, "us_per_sa": 1e6 * dt / 1000,
                        "gc_share": dg / dt})
        print(f"{held:6,} held: {1000 / dt:6.0f} SAs/s ({1e6 * dt / 1000:.0f} us per SA pair, "
              f"{100 * dg / dt:.0f} % in the garbage collector)", flush=True)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    held0 = len(a.engine.sas)
    setup_batch(net, a, b, 2000)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    added = len(a.engine.sas) - held0
    diff = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_end = diff / added / 2

    at_1k = next(w for w in windows if w["held"] >= 1000)
    at_hold = windows[-1]
    ratio = at_hold["rate"] / at_1k["rate"]
    print(f"rate with {at_hold['held']:,} held / rate with {at_1k['held']:,} held: {ratio:.2f}")
    print(f"memory (tracemalloc, Python objects only): {per_end:.0f} bytes per IKE+CHILD SA per "
          f"end, {len(a.engine.sas):,} SAs held; QCD {'on' if qcd else 'off'}, "
          f"GC {'default' if args.default_gc else 'tuned'}")
    if args.json:
        args.json.write_text(json.dumps({
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "qcd": qcd, "gc_tuned": not args.default_gc,
            "windows": windows, "hold_ratio": ratio, "bytes_per_sa_per_end": per_end}, indent=2))


if __name__ == "__main__":
    main()
