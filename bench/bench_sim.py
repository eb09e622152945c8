"""The 10,000-tunnel mass reboot: wall time, events per second, where the time goes.

    python bench/bench_sim.py [--tunnels N] [-p KEY=VALUE ...] [--profile] [--json]

Runs ``quickike sim run mass-reboot`` (its defaults: a hub with 10,000 peers,
limits sized for them, steady traffic both ways, crash 5 s after the last
peer is up, 20 s boot) in three timed phases: building the world (10,001
configurations), the run up to the crash (10,000 IKE SAs set up, steady
traffic) and the crash-and-recovery (10,000 QCD detections and new IKE SAs).
The target is 60 s of wall time on the project's 2-core machine.

``--profile`` runs the same under cProfile (about twice as slow) and sums
the time spent per layer (engine, crypto, wire, QCD, simulator, the
``cryptography`` package, the rest) plus the busiest functions.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from quickike.sim.metrics import summarize
from quickike.sim.params import Params
from quickike.sim.runner import few_collections, quiet
from quickike.sim.scenarios import SCENARIOS

LAYERS = (
    ("quickike/engine/", "engine"),
    ("quickike/crypto/", "crypto"),
    ("quickike/wire/", "wire"),
    ("quickike/qcd/", "qcd"),
    ("quickike/sim/", "simulator"),
    ("cryptography", "cryptography package (its Python side)"),
    ("heapq", "scheduler heap"),
    ("ipaddress", "ipaddress parsing"),
)


def layer_of(filename: str) -> str:
    for key, name in LAYERS:
        if key in filename:
            return name
    if filename.startswith("~") or filename == "<built-in>":
        return "built-ins (heap, dicts, OpenSSL calls such as X25519)"
    return "other"


def timed_run(tunnels: int, options: dict[str, str]) -> dict[str, Any]:
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    setup = SCENARIOS["mass-reboot"].build(Params(seed=1, tunnels=tunnels, options=options))
    world = setup.world
    crash_at = float(setup.notes["crash_at"])  # type: ignore[arg-type]
    t1, c1 = time.perf_counter(), time.process_time()
    with quiet(), few_collections():
        world.run(crash_at - 1e-6, settle=None)
        established = sum(1 for t in world.tunnels if t.established_at is not None)
        events_before = world.sched.executed
        t2, c2 = time.perf_counter(), time.process_time()
        world.run(setup.until, settle=setup.settle)
    t3, c3 = time.perf_counter(), time.process_time()
    m = summarize(world)
    events = world.sched.executed
    return {
        "tunnels": tunnels,
        "options": options,
        "established_before_crash": established,
        "restored": m["restored"],
        "detected_by": m["detect_reasons"],
        "detection": m["detection"],
        "outage": m["outage"],
        "virtual_seconds": m["virtual_time"],
        "events": events,
        "ike_messages": m["traffic"]["total"].get("ike_packets", 0),
        "esp_packets": m["traffic"]["total"].get("esp_packets", 0),
        "wall": {"build": round(t1 - t0, 2), "setup_and_steady_state": round(t2 - t1, 2),
                 "crash_and_recovery": round(t3 - t2, 2), "total": round(t3 - t0, 2)},
        "cpu": {"build": round(c1 - c0, 2), "setup_and_steady_state": round(c2 - c1, 2),
                "crash_and_recovery": round(c3 - c2, 2), "total": round(c3 - c0, 2)},
        "events_per_second": round(events / (t3 - t1)),
        "events_by_phase": {"until_crash": events_before, "after_crash": events - events_before},
    }


def profiled_run(tunnels: int, options: dict[str, str], top: int) -> dict[str, Any]:
    prof = cProfile.Profile()
    setup = SCENARIOS["mass-reboot"].build(Params(seed=1, tunnels=tunnels, options=options))
    with quiet(), few_collections():
        prof.enable()
        setup.world.run(setup.until, settle=setup.settle)
        prof.disable()
    stats = pstats.Stats(prof)
    per_layer: dict[str, float] = defaultdict(float)
    rows = []
    for (filename, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        per_layer[layer_of(filename)] += tottime
        rows.append((tottime, calls, cumtime, f"{Path(filename).name}:{line}({func})"))
    total = sum(per_layer.values())
    rows.sort(reverse=True)
    return {
        "profiled_seconds": round(total, 2),
        "share_by_layer": {k: f"{100 * v / total:.1f}%" for k, v in
                           sorted(per_layer.items(), key=lambda kv: -kv[1])},
        "top_functions": [{"tottime": round(t, 3), "calls": c, "cumtime": round(cu, 3),
                           "function": f} for t, c, cu, f in rows[:top]],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tunnels", type=int, default=10000)
    ap.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                    help="mass-reboot option, e.g. -p limits=default")
    ap.add_argument("--profile", action="store_true", help="also profile (slower run)")
    ap.add_argument("--top", type=int, default=25, help="functions listed by --profile")
    ap.add_argument("--json", action="store_true", help="print the results as JSON only")
    args = ap.parse_args()
    options = dict(item.split("=", 1) for item in args.param)
    result = timed_run(args.tunnels, options)
    if args.profile:
        result["profile"] = profiled_run(args.tunnels, options, args.top)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    w, c = result["wall"], result["cpu"]
    print(f"mass-reboot, {result['tunnels']:,} tunnels {options or ''}")
    print(f"  established before the crash {result['established_before_crash']:,}, restored "
          f"{result['restored']:,}, detected by {result['detected_by']}")
    d = result["detection"]
    print(f"  detection p50 {d['p50']} s, p90 {d['p90']} s, max {d['max']} s; "
          f"{result['virtual_seconds']} virtual seconds")
    print(f"  wall {w['total']} s (build {w['build']}, set-up + steady state "
          f"{w['setup_and_steady_state']}, crash + recovery {w['crash_and_recovery']}); "
          f"cpu {c['total']} s")
    print(f"  {result['events']:,} events, {result['events_per_second']:,}/s; "
          f"{result['ike_messages']:,} IKE messages, {result['esp_packets']:,} ESP packets")
    verdict = "OK" if w["total"] <= 60.0 else "OVER"
    print(f"  target 60 s wall: {verdict}")
    if "profile" in result:
        prof = result["profile"]
        print(f"\n  profile ({prof['profiled_seconds']} s under cProfile), own time by layer:")
        for layer, share in prof["share_by_layer"].items():
            print(f"    {share:>6}  {layer}")
        print("  busiest functions (own time):")
        for row in prof["top_functions"]:
            print(f"    {row['tottime']:8.3f} s {row['calls']:>9,}  {row['function']}")
    return 0 if verdict == "OK" else 1


if __name__ == "__main__":
    raise SystemExit(main())
