"""Running a scenario and packaging what came out of it."""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .diagram import DiagramRecorder
from .metrics import summarize
from .params import ParamError, Params
from .scenarios import SCENARIOS, Setup
from .world import World


@dataclass(slots=True)
class RunResult:
    scenario: str
    params: Params
    metrics: dict[str, Any]
    diagram: str | None
    world: World
    setup: Setup


@contextlib.contextmanager
def few_collections() -> Iterator[None]:
    """Millions of live objects make every full cyclic-GC pass expensive; a run creates few
    cycles (measured: GC took a third of the CPU time of a 4,000-tunnel run), so collect
    rarely while it runs and once at the end."""
    old = gc.get_threshold()
    gc.set_threshold(100_000, 50, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)


@contextlib.contextmanager
def quiet(level: int = logging.ERROR) -> Iterator[None]:
    """Thousands of simulated gateways would each log their QCD secret and teardowns."""
    logger = logging.getLogger("quickike")
    old = logger.level
    logger.setLevel(max(level, old))
    try:
        yield
    finally:
        logger.setLevel(old)


def run_scenario(name: str, params: Params | None = None, *, diagram: bool = True,
                 per_tunnel: bool = False) -> RunResult:
    """Build and run one scenario; the metrics dict is what ``--json`` prints."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise ParamError(f"no scenario {name!r} (see 'quickike sim list')")
    p = params or Params()
    p.check()
    setup = scenario.build(p)
    unused = p.unused()
    if unused:
        raise ParamError(f"scenario {name!r} does not know -p {', '.join(unused)}")
    world = setup.world
    recorder = DiagramRecorder(world, setup.focus, *setup.columns) if diagram else None
    started = time.perf_counter()  # wall time for the report only; the run never reads it
    with quiet(), few_collections():
        world.run(setup.until, settle=setup.settle)
    wall = time.perf_counter() - started
    metrics = summarize(world, per_tunnel=per_tunnel)
    out: dict[str, Any] = {
        "scenario": name,
        "title": scenario.title,
        "seed": p.seed,
        "params": {
            "tunnels": len(world.tunnels),
            "latency": p.latency,
            "jitter": p.jitter,
            "loss": world.network.default.loss,
            "boot_delay": p.boot_delay,
            **{k: v for k, v in sorted(p.options.items())},
        },
        "setup": setup.notes,
        **metrics,
    }
    if setup.attackers:
        end = setup.notes.get("failover_at")
        out["attack"] = [a.summary(end if isinstance(end, float) else None)
                         for a in setup.attackers]
    out["performance"] = {
        "wall_seconds": round(wall, 3),
        "events": world.sched.executed,
        "events_per_second": round(world.sched.executed / wall) if wall > 0 else None,
    }
    return RunResult(name, p, out, recorder.render() if recorder is not None else None, world,
                     setup)
