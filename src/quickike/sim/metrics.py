"""Turning a finished run into numbers.

Definitions (docs/simulation.md repeats them for readers):

* **disruption**: the crash of a tunnel endpoint (or of the active member of
  a hot-standby pair).  The other endpoint is the **survivor**.
* **reboot**: the moment the crashed gateway is running again (its new
  engine started), or the standby took over the address.
* **first hit**: the first packet of the tunnel's peer (ESP or IKE) that
  reaches the rebooted gateway after the reboot.
* **detection time**: from the reboot to the survivor's teardown of its old
  IKE SA (any reason: QCD token, dead peer, INITIAL_CONTACT).
  ``detect_from_hit`` counts from the first hit instead, and
  ``detect_from_check`` from the survivor's first liveness check after the
  disruption; ``answer_to_detect`` is, for tunnels QCD detected, the time
  from the rebooted gateway's last unprotected answer (INVALID_SPI,
  INVALID_IKE_SPI, with or without a token) before the decision to the
  decision: one round trip bounds it.
* **outage**: from the disruption to the first data packet, sent after the
  disruption, that is delivered through a CHILD SA the receiver installed
  after the disruption (either direction).  Tunnels never restored count as
  outages lasting to the end of the run (reported separately as
  ``unrestored``).
* **false teardown**: an established IKE SA destroyed by one end, for a
  reason other than an exchange with the peer (Delete, rekey), while the peer
  still held the same SA established.
* **messages/bytes**: UDP payload sizes of every IKE datagram (keepalives
  apart) and every ESP packet put on the wire, per node role; ``*_after``
  counts from the first disruption on.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from .world import World


def quantiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, min, p50, p90, p99, max and mean (None when empty)."""
    xs = sorted(values)
    n = len(xs)
    if not n:
        return {"count": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None,
                "mean": None}

    def q(p: float) -> float:
        k = max(0, min(n - 1, math.ceil(p * n) - 1))
        return round(xs[k], 6)

    return {"count": n, "min": round(xs[0], 6), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99),
            "max": round(xs[-1], 6), "mean": round(sum(xs) / n, 6)}


def _diffs(pairs: Iterable[tuple[float | None, float | None]]) -> list[float]:
    return [b - a for a, b in pairs if a is not None and b is not None]


def tunnel_record(t: Any) -> dict[str, Any]:
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 6)

    answers = [a for a in t.answers if t.detected is None or a[0] <= t.detected]
    return {
        "id": t.id,
        "peer": t.a.name,
        "established": r(t.established_at),
        "disrupted": r(t.disrupted_at),
        "rebooted": r(t.rebooted_at),
        "first_hit": r(t.first_hit),
        "first_check": r(t.first_check),
        "detected": r(t.detected),
        "detect_reason": t.detect_reason,
        "restored": r(t.restored),
        "answers": [[r(a), k] for a, k in answers[:8]],
        "delivered": t.delivered,
        "max_gap": r(t.max_gap),
        "false_teardowns": t.false_teardowns,
        "teardowns": [[r(a), n, k] for a, n, k in t.teardowns[:16]],
    }


_KINDS = (("ike", 0), ("esp", 2), ("keepalive", 4))


def traffic_totals(world: World) -> dict[str, Any]:
    """Packets and bytes per node role (attackers apart), whole run and after the disruption."""
    roles: dict[str, str] = {n.name: n.role for n in world.nodes.values()}
    out: dict[str, Any] = {}
    before = world.sent_before or {}
    for origin, acct in sorted(world.network.sent.items()):
        role = roles.get(origin, "attacker")
        entry = out.setdefault(role, {})
        b = before.get(origin, [0] * 6)
        for kind, i in _KINDS:
            for key, value in ((f"{kind}_packets", acct[i]), (f"{kind}_bytes", acct[i + 1]),
                               (f"{kind}_packets_after", acct[i] - b[i]),
                               (f"{kind}_bytes_after", acct[i + 1] - b[i + 1])):
                if value:
                    entry[key] = entry.get(key, 0) + value
    total: Counter[str] = Counter()
    for entry in out.values():
        total.update(entry)
    out["total"] = dict(sorted(total.items()))
    return out


def summarize(world: World, *, per_tunnel: bool = False) -> dict[str, Any]:
    end = world.ended_at if world.ended_at is not None else world.now
    disrupted = [t for t in world.tunnels if t.disrupted_at is not None]
    outages: list[float] = []
    unrestored = 0
    for t in disrupted:
        assert t.disrupted_at is not None
        if t.restored is not None:
            outages.append(t.restored - t.disrupted_at)
        else:
            unrestored += 1
    detect = _diffs((t.rebooted_at, t.detected) for t in disrupted)
    from_hit = _diffs((t.first_hit, t.detected) for t in disrupted)
    from_check = _diffs((t.first_check, t.detected) for t in disrupted)
    answer_lag: list[float] = []
    for t in disrupted:
        if t.detected is None or not (t.detect_reason or "").startswith("qcd"):
            continue
        before = [a for a, _ in t.answers if a <= t.detected]
        if before:
            answer_lag.append(t.detected - before[-1])
    reasons = Counter(t.detect_reason or "undetected" for t in disrupted)
    counters: Counter[str] = Counter()
    for node in world.nodes.values():
        counters.update(node.total_counters())
    result: dict[str, Any] = {
        "tunnels": len(world.tunnels),
        "established": sum(1 for t in world.tunnels if t.established_at is not None),
        "disrupted": len(disrupted),
        "restored": len(outages),
        "unrestored": unrestored,
        "virtual_time": round(end, 6),
        "detection": quantiles(detect),
        "detect_from_hit": quantiles(from_hit),
        "detect_from_check": quantiles(from_check),
        "answer_to_detect": quantiles(answer_lag),
        "detect_reasons": dict(sorted(reasons.items())),
        "outage": quantiles(outages),
        "false_teardowns": sum(t.false_teardowns for t in world.tunnels),
        "max_gap": quantiles([t.max_gap for t in world.tunnels if t.delivered]),
        "traffic": traffic_totals(world),
        "network": dict(sorted({**world.network.stats, "delivered": world.network.delivered,
                                "drop:gateway-down": world.network.down_drops
                                + world.stats["drop:node-down"]}.items())),
        "dataplane": dict(sorted(world.stats.items())),
        "engine": {k: v for k, v in sorted(counters.items())
                   if k.startswith(("qcd:", "liveness", "retransmit", "hint", "invalid",
                                    "esp-unknown", "ike-down", "cookies", "drop:",
                                    "restarts", "initial-contact", "acquires"))},
        "events": world.sched.executed,
        "trace_records": world.trace.count,
        "trace_sha256": world.trace.digest(),
    }
    if per_tunnel:
        result["per_tunnel"] = [tunnel_record(t) for t in world.tunnels]
    return result
