"""PNG plots of simulation results (matplotlib, headless).

matplotlib is an optional dependency (``quickike[plots]``) and is imported
only here, when a plot is drawn; the figures are deterministic for a given
set of results (no timestamps in the PNG metadata).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_METADATA = {"Software": "quickike sim", "Creation Time": None}


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise PlotsUnavailable("plots need matplotlib: pip install 'quickike[plots]'") from e
    return plt


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata=_METADATA)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def outage_cdf(series: Mapping[str, Sequence[float]], path: Path, *, title: str) -> Path:
    """Cumulative share of tunnels back (y) against outage in seconds (x, log), one line each."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, values in series.items():
        xs = sorted(values)
        if not xs:
            continue
        ys = [(i + 1) / len(xs) for i in range(len(xs))]
        ax.step(xs, ys, where="post", label=f"{label} (median {xs[len(xs) // 2]:.1f} s)")
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ticks = [t for t in (1, 2, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000)
             if any(v and t <= max(v) * 1.5 and t >= min(v) / 1.5 for v in series.values())]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("outage per tunnel: crash to first packet through a new CHILD SA (s, log)")
    ax.set_ylabel("share of tunnels restored")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def attack_bars(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Per mitigation set: attack successes (naive, smart) and what the defences cost.

    Each row: ``name``, ``naive`` and ``smart`` (successes), ``attempts``,
    ``outage`` (seconds without an SA caused by the smart attacker) and
    ``added_ms`` (extra detection time of a genuine failover against no defence).
    """
    plt = _pyplot()
    names = [r["name"] for r in rows]
    xs = list(range(len(rows)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    w = 0.38
    top.bar([x - w / 2 for x in xs], [r["naive"] for r in rows], w, label="naive attacker")
    top.bar([x + w / 2 for x in xs], [r["smart"] for r in rows], w, label="smart attacker")
    attempts = max((int(r["attempts"]) for r in rows), default=0)
    top.set_ylabel(f"live SAs torn down\n(of {attempts} attempts)")
    top.set_title("Issue 202: standby token oracle against each defence")
    top.legend(fontsize=8)
    top.grid(True, axis="y", alpha=0.3)
    bottom.bar([x - w / 2 for x in xs], [r["added_ms"] for r in rows], w,
               label="added detection time on a genuine failover (ms)")
    bottom.bar([x + w / 2 for x in xs], [1000.0 * r["outage"] for r in rows], w,
               label="time without CHILD SA caused by the attacks (ms)")
    bottom.set_ylabel("milliseconds")
    bottom.set_xticks(xs)
    bottom.set_xticklabels(names)
    bottom.legend(fontsize=8)
    bottom.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


def recovery_curve(series: Mapping[str, tuple[Sequence[float], float, int]], path: Path, *,
                   title: str) -> Path:
    """Tunnels carrying traffic again (y) against seconds since the reboot (x).

    ``series`` maps a label to (restoration times, reboot time, tunnel count).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, (times, reboot, total) in series.items():
        xs = sorted(t - reboot for t in times)
        ax.step([0.0, *xs], [0, *range(1, len(xs) + 1)], where="post",
                label=f"{label}: {len(xs)}/{total} back, last after {xs[-1]:.1f} s"
                if xs else label)
    ax.set_xlabel("seconds since the crashed gateway booted")
    ax.set_ylabel("tunnels carrying traffic again")
    ax.grid(True, alpha=0.3)
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def outage_histogram(values: Sequence[float], path: Path, *, title: str) -> Path:
    """One run's outage distribution (``quickike sim run --out``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(list(values), bins=min(50, max(5, len(values) // 5)))
    ax.set_xlabel("outage per tunnel (s)")
    ax.set_ylabel("tunnels")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
