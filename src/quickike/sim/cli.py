"""``quickike sim``: list, run and report simulation scenarios.

``quickike sim list`` names the scenarios; ``quickike sim run NAME`` runs one
and prints its metrics (``--json``), its sequence diagram and, with
``--out DIR``, writes metrics.json, diagram.txt, the trace and two plots;
``quickike sim report --out docs`` reruns everything behind
docs/simulation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

from .params import ParamError, Params
from .trace import TraceMode


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "sim", help="deterministic simulation of gateways, crashes and attackers",
        description="Discrete-event simulation running the real engine on a virtual network.")
    sub = sim.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    sim.set_defaults(func=lambda args: _usage(sim))

    ls = sub.add_parser("list", help="list the scenarios")
    ls.add_argument("-v", "--verbose", action="store_true", help="print each scenario's story")
    ls.set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="run one scenario")
    run.add_argument("name", help="scenario name (see 'quickike sim list')")
    run.add_argument("--seed", type=int, default=1, help="run seed (default 1)")
    run.add_argument("--tunnels", type=int, help="number of tunnels (default: the scenario's)")
    run.add_argument("--latency", type=float, default=10.0, help="one-way latency, ms (10)")
    run.add_argument("--jitter", type=float, default=0.0, help="extra random delay, ms (0)")
    run.add_argument("--loss", type=float, help="loss probability on every path (0..1)")
    run.add_argument("--interval", type=float, help="seconds between packets of steady traffic")
    run.add_argument("--boot-delay", type=float, default=20.0,
                     help="seconds a crashed gateway takes to come back (20)")
    run.add_argument("--crash-at", type=float, help="virtual time of the crash")
    run.add_argument("--horizon", type=float, default=400.0,
                     help="seconds to keep going after the reboot if tunnels are still down")
    qcd = run.add_mutually_exclusive_group()
    qcd.add_argument("--qcd", dest="qcd", action="store_const", const=True,
                     help="force QCD on for every gateway")
    qcd.add_argument("--no-qcd", dest="qcd", action="store_const", const=False,
                     help="force QCD off for every gateway (RFC 7296 only)")
    run.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                     help="scenario option (repeatable), e.g. -p spi_map=yes, "
                          "-p mitigations=pending,delay, -p qcd.accept_delay=50ms")
    run.add_argument("--trace", choices=[m.value for m in TraceMode],
                     help="event trace: off, digest (SHA-256 only) or full (default: digest, "
                          "off for mass-reboot)")
    run.add_argument("--focus", type=int, default=1, help="tunnel of the sequence diagram (1)")
    run.add_argument("--json", action="store_true", help="print the metrics as JSON")
    run.add_argument("--per-tunnel", action="store_true",
                     help="include every tunnel's timestamps in the metrics")
    run.add_argument("--no-diagram", action="store_true", help="do not record a diagram")
    run.add_argument("--out", type=Path, help="directory for metrics.json, diagram.txt, "
                                              "trace.txt and plots")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="run every scenario and regenerate docs/simulation.md")
    rep.add_argument("--out", type=Path, default=Path("docs"),
                     help="documentation directory (simulation.md and img/sim-*.png)")
    rep.add_argument("--seed", type=int, default=1)
    rep.add_argument("--mass-tunnels", type=int, default=10000,
                     help="tunnels of the mass-reboot runs (10000)")
    rep.add_argument("--json", type=Path, help="also write every run's metrics to this file")
    rep.set_defaults(func=cmd_report)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def cmd_list(args: argparse.Namespace) -> int:
    from .scenarios import SCENARIOS

    width = max(len(n) for n in SCENARIOS)
    for name, sc in SCENARIOS.items():
        print(f"{name:<{width}}  {sc.title} (default {sc.default_tunnels:,} "
              f"tunnel{'s' if sc.default_tunnels > 1 else ''})")
        if args.verbose:
            for line in textwrap.wrap(sc.story, 88):
                print(f"{'':<{width}}    {line}")
            print(f"{'':<{width}}    expected: {sc.expect}")
    return 0


def _params(args: argparse.Namespace) -> Params:
    options: dict[str, str] = {}
    for item in args.param:
        if "=" not in item:
            raise ParamError(f"-p {item}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        options[key.strip()] = value.strip()
    return Params(
        seed=args.seed, tunnels=args.tunnels, latency=args.latency / 1000.0,
        jitter=args.jitter / 1000.0, loss=args.loss, interval=args.interval,
        boot_delay=args.boot_delay, crash_at=args.crash_at, horizon=args.horizon, qcd=args.qcd,
        trace=TraceMode(args.trace) if args.trace else None, focus=args.focus, options=options)


def _human(m: dict[str, Any]) -> str:
    def q(d: dict[str, Any]) -> str:
        if not d.get("count"):
            return "-"
        return (f"median {d['p50']:.3f} s, p90 {d['p90']:.3f} s, max {d['max']:.3f} s "
                f"({d['count']} tunnels)")

    t = m["traffic"]["total"]
    lines = [
        f"{m['scenario']}: {m['title']} (seed {m['seed']})",
        f"  tunnels          {m['tunnels']} established {m['established']}, disrupted "
        f"{m['disrupted']}, restored {m['restored']}",
        f"  detection        {q(m['detection'])}",
        f"    from 1st hit   {q(m['detect_from_hit'])}",
        f"    answer->teardn {q(m['answer_to_detect'])}",
        f"    by             {', '.join(f'{k} x{v}' for k, v in m['detect_reasons'].items())}",
        f"  outage           {q(m['outage'])}",
        f"  false teardowns  {m['false_teardowns']}",
        f"  IKE after crash  {t.get('ike_packets_after', 0)} messages, "
        f"{t.get('ike_bytes_after', 0)} bytes (whole run {t.get('ike_packets', 0)}, "
        f"{t.get('ike_bytes', 0)})",
    ]
    for a in m.get("attack", []):
        lines.append(f"  attack ({a['strategy']})  {a['successes']}/{a['attempts']} live SAs "
                     f"torn down, {a['outage_caused'] or 0:.3f} s without SA")
    perf = m["performance"]
    lines.append(f"  simulated        {m['virtual_time']:.1f} s in {perf['wall_seconds']:.2f} s "
                 f"wall, {perf['events']:,} events ({perf['events_per_second'] or 0:,}/s)")
    if m.get("trace_sha256"):
        lines.append(f"  trace            {m['trace_records']:,} records, sha256 "
                     f"{m['trace_sha256'][:16]}...")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_scenario

    try:
        p = _params(args)
        if args.out is not None and p.trace is None:
            p.trace = TraceMode.FULL if (args.tunnels or 1) <= 100 else None
        result = run_scenario(args.name, p, diagram=not args.no_diagram,
                              per_tunnel=args.per_tunnel or args.out is not None)
    except ParamError as e:
        print(f"quickike sim run: {e}", file=sys.stderr)
        return 2
    m = result.metrics
    if args.json:
        shown = m if args.per_tunnel else {k: v for k, v in m.items() if k != "per_tunnel"}
        print(json.dumps(shown, indent=1, sort_keys=False))
    else:
        print(_human(m))
        if result.diagram is not None:
            print()
            print(result.diagram)
    if args.out is not None:
        _write_run(result, args.out)
    return 0


def _write_run(result: Any, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result.metrics, indent=1) + "\n")
    if result.diagram is not None:
        (out / "diagram.txt").write_text(result.diagram + "\n")
    trace = result.world.trace
    if trace.lines:
        (out / "trace.txt").write_text("\n".join(trace.lines) + "\n")
    try:
        from . import plots

        world = result.world
        outages = [t.restored - t.disrupted_at for t in world.tunnels
                   if t.restored is not None and t.disrupted_at is not None]
        if outages:
            plots.outage_histogram(outages, out / "outage.png",
                                   title=f"{result.scenario}: outage per tunnel")
            setup = result.metrics.get("setup", {})
            if "crash_at" in setup and "boot_delay" in setup:
                reboot = float(setup["crash_at"]) + float(setup["boot_delay"])
                plots.recovery_curve({result.scenario: (list(world.restorations), reboot,
                                                        len(world.tunnels))},
                                     out / "recovery.png",
                                     title=f"{result.scenario}: tunnels back over time")
    except plots.PlotsUnavailable as e:
        print(f"quickike sim run: no plots: {e}", file=sys.stderr)


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    rep = report.build(args.out, seed=args.seed, mass_tunnels=args.mass_tunnels,
                       progress=progress)
    report.write(rep, args.out / "simulation.md")
    if args.json is not None:
        report.dump_metrics(rep, args.json)
    for path in rep.images:
        progress(f"wrote {path}")
    progress(f"wrote {args.out / 'simulation.md'}")
    return 0
