"""Run parameters: the common knobs plus free-form ``-p key=value`` options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from .trace import TraceMode

T = TypeVar("T")

_TRUE = frozenset({"yes", "true", "on", "1"})
_FALSE = frozenset({"no", "false", "off", "0"})


class ParamError(ValueError):
    """A scenario parameter with a bad value; the message names it."""


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{text!r} is not yes or no")


@dataclass(slots=True)
class Params:
    seed: int = 1
    #: number of tunnels (None: the scenario's default)
    tunnels: int | None = None
    #: one-way latency of every path, seconds
    latency: float = 0.010
    jitter: float = 0.0
    #: packet loss probability on every path (None: the scenario's default)
    loss: float | None = None
    #: seconds between packets of steady traffic (None: the scenario's default)
    interval: float | None = None
    boot_delay: float = 20.0
    crash_at: float | None = None
    #: virtual seconds to keep running after the reboot if tunnels are still down
    horizon: float = 400.0
    #: force QCD on or off on every gateway (None: the scenario decides)
    qcd: bool | None = None
    trace: TraceMode | None = None
    #: tunnel whose exchanges the sequence diagram shows (1-based)
    focus: int = 1
    options: dict[str, str] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def opt(self, key: str, default: T, conv: Callable[[str], T]) -> T:
        """A scenario-specific ``-p key=value`` option, converted, or ``default``."""
        self.used.add(key)
        raw = self.options.get(key)
        if raw is None:
            return default
        try:
            return conv(raw)
        except ValueError as e:
            raise ParamError(f"-p {key}={raw}: {e}") from None

    def prefixed(self, prefix: str) -> dict[str, str]:
        """Options ``prefix.KEY=VALUE`` as {KEY: VALUE} (passed through, e.g. to QCD)."""
        out = {}
        for key, value in self.options.items():
            if key.startswith(prefix + "."):
                self.used.add(key)
                out[key[len(prefix) + 1:]] = value
        return out

    def unused(self) -> list[str]:
        return sorted(k for k in self.options if k not in self.used)

    def check(self) -> None:
        if self.tunnels is not None and self.tunnels < 1:
            raise ParamError("--tunnels must be at least 1")
        if self.latency < 0 or self.jitter < 0 or self.boot_delay < 0 or self.horizon <= 0:
            raise ParamError("times must not be negative")
        if self.loss is not None and not 0 <= self.loss < 1:
            raise ParamError("--loss must be in [0, 1)")
        if self.interval is not None and self.interval <= 0:
            raise ParamError("--interval must be positive")
        if self.focus < 1:
            raise ParamError("--focus must be at least 1")
