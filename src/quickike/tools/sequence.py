"""Sequence diagrams of IKE exchanges in the style of the IPsecME slides.

Two columns, one arrow per message, payloads named the way charon logs them.
Used by the demo, the simulator and ``quickike decode`` users who want a
picture of a capture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Arrow:
    time: float
    left_to_right: bool
    label: str
    note: str = ""


def render(
    left: str, right: str, arrows: Iterable[Arrow], *, width: int = 78, t0: float | None = None
) -> str:
    arrows = list(arrows)
    inner = width - 10
    lines = [f"{'time':>8}  {left:<{inner // 2}}{right:>{inner - inner // 2}}"]
    lines.append(f"{'':>8}  {'|':<{inner - 1}}|")
    if t0 is None and arrows:
        t0 = arrows[0].time
    for a in arrows:
        label = a.label if len(a.label) <= inner - 8 else a.label[: inner - 11] + "..."
        if a.note and not a.label:
            lines.append(f"{'':>8}  {('-- ' + a.note + ' --').center(inner)}")
            continue
        pad = inner - 4 - len(label)
        if a.left_to_right:
            body = f"|-- {label} {'-' * max(pad - 2, 1)}>|"
        else:
            body = f"|<{'-' * max(pad - 2, 1)} {label} --|"
        ms = (a.time - (t0 or 0.0)) * 1000.0
        lines.append(f"{ms:>7.1f}ms {body}")
        if a.note:
            lines.append(f"{'':>8}  {'':<2}{a.note}")
    return "\n".join(lines)
