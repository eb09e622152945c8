"""How long a tunnel stays down after the responder crashes and restarts: quickike against charon.

    sudo python bench/bench_recovery.py            # about 8 minutes
    sudo python bench/bench_recovery.py --quick    # without the two runs of about 170 s each

The scene (``quickike demo`` tells it with a timeline): host_a -- gw_a ==wire== gw_b -- host_b
in network namespaces, gateway A initiates a tunnel between the hosts' networks, host A pings
host B every 10 ms through it.  Gateway B, the responder, is SIGKILLed and restarted at once
with the same state directory (same QCD secret): a restarted initiator would come back by
itself with INITIAL_CONTACT, so only the survivor A can restore this tunnel.

The outage is measured from the restarted daemon being ready to the first ping answered
through the new tunnel.  Ready means: for quickike its JSON log line "listening on ..." (the
data plane is attached by then), for charon the moment its VICI socket answers and
``load-conn`` has returned (a little late, which favours charon).

Scenarios, each with fresh daemons per run (QCD dampens a second teardown for the same peer):

* ``quickike-qcd``: two ``quickike run`` with the userspace data plane, QCD on (the default);
* ``quickike-noqcd-fast``: QCD off, ``retransmit_timeout = 1``, ``retransmit_tries = 2``;
* ``quickike-noqcd-default``: QCD off, strongSwan's default retransmissions (``--quick`` skips);
* ``charon-fast``: two charons with kernel-libipsec (``encap = yes``), ``dpd_delay = 5s``,
  ``dpd_action = restart``, ``retransmit_timeout = 1``, ``retransmit_tries = 2``;
* ``charon-default``: the same with strongSwan's default retransmissions (``--quick`` skips).

Needs root, iproute2, TUN, and strongSwan for the charon scenarios (scripts/install-lab-deps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quickike.daemon.demo import IcmpProber, StoryRun, namespace_story
from quickike.lab import Charon, GatewayPair, Lab, psk_gateway_configs
from quickike.lab.charon import CharonSettings
from quickike.lab.netns import netns_socket

FAST = {"retransmit_timeout": "1", "retransmit_tries": "2"}
PSK = "bench recovery psk, long enough"


def charon_story(lab: Lab, pair: GatewayPair, *, fast: bool, interval: float = 0.010,
                 limit: float = 400.0) -> float | None:  # fmt: skip
    """One crash of charon B with charon A surviving; the outage after B is ready (s)."""
    assert pair.host_a is not None
    settings = CharonSettings(retransmit_timeout=1.0 if fast else None,
                              retransmit_tries=2 if fast else None)  # fmt: skip
    confs = []
    for local, remote, lid, rid, lts, rts, initiator in (
        (pair.wire_a, pair.wire_b, "a@lab", "b@lab", pair.lan_a, pair.lan_b, True),
        (pair.wire_b, pair.wire_a, "b@lab", "a@lab", pair.lan_b, pair.lan_a, False),
    ):
        child = {"start_action": "start", "dpd_action": "restart"} if initiator else {}
        extra: dict[str, Any] = {"mobike": False, "children": {"net": child}}
        if initiator:
            extra["dpd_delay"] = "5s"
        confs.append(psk_gateway_configs(
            local_addr=local, remote_addr=remote, local_id=lid, remote_id=rid, psk=PSK,
            local_ts=lts, remote_ts=rts, extra=extra,
        ))  # fmt: skip
    b = Charon(pair.gw_b, connections=confs[1][0], secrets=confs[1][1], settings=settings,
               label="b").start()  # fmt: skip
    a = Charon(pair.gw_a, connections=confs[0][0], secrets=confs[0][1], settings=settings,
               label="a").start()  # fmt: skip
    prober: IcmpProber | None = None
    try:
        a.wait_established("gw", "net", timeout=15)
        sock = netns_socket(pair.host_a.name, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        prober = IcmpProber(sock, pair.host_b_addr, interval).start()
        _wait(lambda: len(prober.probes.answered) >= 10, 15, "pings through charon's tunnel")
        b.kill()
        b.start()
        ready = time.monotonic()  # the prober's clock
        _wait(lambda: prober.probes.first_answer_after(ready) is not None, limit,
              "the first ping after charon B's restart", fail=False)  # fmt: skip
        first = prober.probes.first_answer_after(ready)
        return None if first is None else first - ready
    finally:
        if prober is not None:
            prober.stop()
        for c in (a, b):
            if c.alive():
                assert c.process is not None
                c.process.kill()


def _wait(cond: Callable[[], bool], timeout: float, what: str, fail: bool = True) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            if fail:
                raise RuntimeError(f"{what}: not within {timeout} s")
            return
        time.sleep(0.005)


def summary(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    out: dict[str, Any] = {"runs": len(values), "recovered": len(got),
                           "outages_s": [None if v is None else round(v, 4) for v in values]}
    if got:
        out.update(median_s=statistics.median(got), min_s=min(got), max_s=max(got))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10, help="runs of quickike with QCD")
    ap.add_argument("--fast-runs", type=int, default=3,
                    help="runs of each short-retransmit baseline (quickike without QCD, charon)")
    ap.add_argument("--default-runs", type=int, default=1,
                    help="runs of each default-retransmit baseline (about 170 s each)")
    ap.add_argument("--quick", action="store_true", help="skip the default-retransmit baselines")
    ap.add_argument("--no-charon", action="store_true", help="quickike scenarios only")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_recovery needs root (namespaces, TUN)")
    defaults = 0 if args.quick else args.default_runs
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(" ".join(sys.argv))
    results: dict[str, Any] = {}
    started = time.monotonic()
    with Lab() as lab:
        pair = lab.gateway_pair(hosts=True, ipv6=False)
        plan: list[tuple[str, int, Callable[[int], float | None]]] = [
            ("quickike-qcd", args.runs,
             lambda i: _qi(lab, pair, qcd=True, retransmit=None, tag=i)),
            ("quickike-noqcd-fast", args.fast_runs,
             lambda i: _qi(lab, pair, qcd=False, retransmit=FAST, tag=i)),
            ("quickike-noqcd-default", defaults,
             lambda i: _qi(lab, pair, qcd=False, retransmit=None, tag=i)),
        ]  # fmt: skip
        if not args.no_charon:
            plan += [
                ("charon-fast", args.fast_runs, lambda i: charon_story(lab, pair, fast=True)),
                ("charon-default", defaults, lambda i: charon_story(lab, pair, fast=False)),
            ]
        for name, runs, one in plan:
            values: list[float | None] = []
            for i in range(runs):
                v = one(i)
                values.append(v)
                shown = "no recovery" if v is None else f"{v * 1000:9.1f} ms"
                print(f"  {name:<24} run {i + 1:>2}/{runs}: {shown}", flush=True)
            if runs:
                results[name] = summary(values)
    print(f"\n{'scenario':<24} {'runs':>4} {'median':>11} {'min':>11} {'max':>11}")
    for name, r in results.items():
        if "median_s" in r:
            print(f"{name:<24} {r['runs']:>4} {r['median_s'] * 1000:>8.1f} ms "
                  f"{r['min_s'] * 1000:>8.1f} ms {r['max_s'] * 1000:>8.1f} ms")  # fmt: skip
    qcd = results.get("quickike-qcd", {}).get("median_s")
    for base in ("charon-fast", "charon-default", "quickike-noqcd-fast"):
        other = results.get(base, {}).get("median_s")
        if qcd and other:
            results[f"ratio_{base}"] = other / qcd
            print(f"median {base} / median quickike-qcd = {other / qcd:.0f}")
    if qcd is not None:
        goal = qcd <= 0.050 and results.get("ratio_charon-fast", 0) >= 200
        print(f"goal (median <= 50 ms and >= 200x shorter than charon-fast): "
              f"{'met' if goal else 'NOT met'}")  # fmt: skip
    print(f"took {time.monotonic() - started:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _qi(lab: Lab, pair: GatewayPair, *, qcd: bool, retransmit: dict[str, str] | None,
        tag: int) -> float | None:  # fmt: skip
    run: StoryRun = namespace_story(lab, pair, lab.workdir, qcd=qcd, retransmit=retransmit,
                                    timeout=5.0 if qcd else 400.0, tag=f"-{tag}")  # fmt: skip
    return run.outage


if __name__ == "__main__":
    main()
