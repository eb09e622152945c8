"""A load generator: one daemon that initiates IKE SAs as fast as its peer answers them.

The counterpart of strongSwan's load-tester plugin (``initiators``/``iterations``/
``init_limit``) for ``bench/bench_daemon.py``. It runs an ordinary :class:`Daemon`
(same engine, sockets, QCD plug-in and logging as ``quickike run``) and calls
``engine.initiate`` from the event loop, keeping a bounded number of setups in flight.
It lives apart from the daemon's code path so that a normal gateway pays nothing for it.

The first SA is set up alone: it carries INITIAL_CONTACT, and the ones after it must not
(their peer would take it as "forget every other SA with me", RFC 7296 §2.4), so the window
opens only once the engine holds an established SA to the peer.

    python -m quickike.daemon.loadgen -c initiator.conf --count 11000 --window 32

Progress goes to stdout as JSON lines (``{"established": n, "t": monotonic, "rss_kb": ...}``)
every ``--report-every`` SAs and at the end; with ``--hold`` the SAs stay up until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import signal
import sys
import time
from typing import TextIO

from ..engine import events as ev
from .daemon import Daemon, lean_logging, load_or_exit, qcd_extensions, tune_gc

_gc_time = [0.0, 0.0]


def _gc_clock(phase: str, info: dict[str, int]) -> None:
    """Time spent in the cyclic garbage collector (reported with the progress lines)."""
    if phase == "start":
        _gc_time[1] = time.perf_counter()
    else:
        _gc_time[0] += time.perf_counter() - _gc_time[1]


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process in KiB (Linux /proc), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


class LoadGenerator:
    """Keeps ``window`` IKE SA setups of connection ``conn`` in flight until ``count`` are up."""

    def __init__(self, daemon: Daemon, conn: str, count: int, window: int, *,
                 report_every: int = 1000, out: TextIO = sys.stdout) -> None:
        self.daemon = daemon
        self.conn = conn
        self.count = count
        self.window = max(1, window)
        self.report_every = max(1, report_every)
        self.out = out
        self.started = 0
        self.established = 0
        self.failed = 0
        self.in_flight: set[int] = set()
        self.done: asyncio.Future[None] | None = None
        self._refill_scheduled = False

    def observe(self, e: ev.Event) -> None:
        if type(e) is ev.ChildSaUp:
            if e.ike_uid in self.in_flight:
                self.in_flight.discard(e.ike_uid)
                self.established += 1
                if self.established % self.report_every == 0 or self.established == self.count:
                    self.report()
                self._schedule_refill()
        elif isinstance(e, ev.IkeSetupFailed | ev.IkeSaDown):
            uid = e.ike_uid
            if uid in self.in_flight:
                self.in_flight.discard(uid)
                self.failed += 1
                self._schedule_refill()

    def _schedule_refill(self) -> None:
        if not self._refill_scheduled:
            self._refill_scheduled = True
            asyncio.get_running_loop().call_soon(self.refill)

    def refill(self) -> None:
        self._refill_scheduled = False
        eng = self.daemon.engine
        assert eng is not None
        if self.established + self.failed >= self.count:
            if self.done is not None and not self.done.done():
                self.done.set_result(None)
            return
        # the first SA alone (INITIAL_CONTACT), then the window
        limit = self.window if self.established > 0 else 1
        now = self.daemon.now()
        while len(self.in_flight) < limit and self.started < self.count:
            self.started += 1
            self.in_flight.add(eng.initiate(self.conn, None, now))
        self.daemon.pump()

    def report(self, **extra: object) -> None:
        line = {"established": self.established, "failed": self.failed,
                "t": time.monotonic(), "rss_kb": rss_kb(), "gc_s": round(_gc_time[0], 4),
                "gc_full": gc.get_stats()[2]["collections"], **extra}
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()

    async def run(self) -> None:
        self.done = asyncio.get_running_loop().create_future()
        self.report(phase="start")
        self.refill()
        await self.done


async def _main(args: argparse.Namespace) -> int:
    from ..control.logs import setup_logging

    config = load_or_exit(args.config)
    s = config.settings
    setup_logging(args.log_level or s.log.level, s.log.format.value, s.log.file)
    lean_logging()  # as quickike run does
    tune_gc()
    state = args.state_dir or s.state_dir
    daemon = Daemon(config, config_path=args.config, state_dir=state,
                    extensions=qcd_extensions(config, state), control=False)
    gen = LoadGenerator(daemon, args.conn, args.count, args.window,
                        report_every=args.report_every)
    daemon.observers.append(gen.observe)
    await daemon.start()
    gc.callbacks.append(_gc_clock)
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def _stop() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _stop)
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.001, async_mode="disabled")
        profiler.start()
    running = asyncio.ensure_future(gen.run())
    try:
        await asyncio.wait([running, stop], return_when=asyncio.FIRST_COMPLETED)
        if profiler is not None:
            profiler.stop()
            with open(args.profile, "w", encoding="utf-8") as f:
                f.write(profiler.output_text(unicode=True, color=False, show_all=False))
        gen.report(phase="done")
        if args.hold and not stop.done():
            await stop
    finally:
        running.cancel()
        daemon.close()  # no Deletes: the peer is torn down by the benchmark
    return 0 if gen.failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m quickike.daemon.loadgen",
                                 description="Initiate IKE SAs as fast as the peer answers.")
    ap.add_argument("-c", "--config", required=True, help="quickike configuration file")
    ap.add_argument("--conn", default="load", help="connection to initiate (default: %(default)s)")
    ap.add_argument("--count", type=int, default=1000, help="IKE SAs to set up")
    ap.add_argument("--window", type=int, default=32, help="setups in flight at once")
    ap.add_argument("--report-every", type=int, default=1000, help="progress line every N SAs")
    ap.add_argument("--hold", action="store_true", help="keep the SAs until SIGTERM")
    ap.add_argument("--state-dir", help="state directory (QCD secret)")
    ap.add_argument("--log-level", choices=("debug", "info", "warning", "error"))
    ap.add_argument("--profile", metavar="FILE", help="pyinstrument profile of the run to FILE")
    args = ap.parse_args(argv)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    raise SystemExit(main())
