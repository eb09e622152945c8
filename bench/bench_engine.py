"""Full IKE SA setups per second and memory per SA, two engines in one process.

    python bench/bench_engine.py [--count N] [--hold N] [--profile]

PSK, aes128gcm16-prfsha256-x25519, one CHILD SA (aes128gcm16-esn) per IKE SA, the
same configuration as strongSwan's load-tester comparison in docs/benchmarks.md.
Setups are driven in batches (as a load generator would keep many exchanges in
flight) and timed with time.perf_counter; memory is what tracemalloc attributes to
the two engines per established IKE SA + CHILD SA (both ends together, and per end).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.engine.harness import pair  # noqa: E402

from quickike.engine import events as ev  # noqa: E402


def setup_batch(net, a, count: int, batch: int = 50) -> float:
    t0 = time.perf_counter()
    done = 0
    while done < count:
        n = min(batch, count - done)
        for _ in range(n):
            a.engine.initiate("gw", None, net.now)
        net.settle(max_rounds=100000)
        done += n
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000, help="setups to time")
    ap.add_argument("--hold", type=int, default=10000, help="SAs to hold for the scaling figure")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    net, a, b = pair(a_kw={"rekey_time": 0.0}, b_kw={"rekey_time": 0.0})
    for n in (a, b):
        n.engine.trace = False
    # keep event lists from growing without bound: count instead
    setup_batch(net, a, 200)  # warm-up
    for n in (a, b):
        n.events.clear()
    net.wire.clear()
    net.wire = _Sink()  # type: ignore[assignment]

    if args.profile:
        from pyinstrument import Profiler

        prof = Profiler()
        prof.start()
    dt = setup_batch(net, a, args.count)
    if args.profile:
        prof.stop()
        print(prof.output_text(unicode=True, color=False, show_all=False))
    ups = sum(isinstance(e, ev.ChildSaUp) for e in a.events)
    assert ups == args.count, ups
    rate_small = args.count / dt
    print(f"in-process setups: {args.count} in {dt:.2f} s = {rate_small:.0f} IKE+CHILD SAs/s "
          f"(both ends on one core, {1e6 * dt / args.count:.0f} us per SA pair)")

    # memory and rate with many SAs held
    for n in (a, b):
        n.events.clear()
    gc.collect()
    tracemalloc.start()
    snap0 = tracemalloc.take_snapshot()
    held_before = len(a.engine.sas)
    setup_batch(net, a, args.hold - held_before)
    for n in (a, b):
        n.events.clear()
        n.dataplane.log.clear()
    gc.collect()
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    added = args.hold - held_before
    diff = sum(s.size_diff for s in snap1.compare_to(snap0, "filename"))
    print(f"memory: {diff / added:.0f} bytes per IKE+CHILD SA for both ends "
          f"({diff / added / 2:.0f} per end), {len(a.engine.sas)} SAs held")
    dt = setup_batch(net, a, args.count)
    print(f"setups with {len(a.engine.sas)} SAs held: {args.count / dt:.0f} SAs/s "
          f"({args.count / dt / rate_small:.2f} x the rate at {held_before})")


class _Sink(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:
        pass


if __name__ == "__main__":
    main()
