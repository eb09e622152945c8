"""The run's event trace: what two runs with the same seed must agree on.

Records are plain tuples of simple values, formatted to text only when the
run is kept in full (tests) or hashed (reports), so a large run can switch the
trace off entirely and pay nothing for it.
"""

from __future__ import annotations

import enum
import hashlib


class TraceMode(enum.Enum):
    OFF = "off"
    DIGEST = "digest"  # only a SHA-256 over the lines
    FULL = "full"  # keep every line (tests, small runs)


class Trace:
    __slots__ = ("_hash", "count", "enabled", "lines", "mode")

    def __init__(self, mode: TraceMode = TraceMode.DIGEST) -> None:
        self.mode = mode
        self.enabled = mode is not TraceMode.OFF
        self.lines: list[str] = []
        self.count = 0
        self._hash = hashlib.sha256()

    def record(self, time: float, node: str, what: str, detail: str = "") -> None:
        if not self.enabled:
            return
        line = f"{time!r} {node} {what} {detail}"
        self.count += 1
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        if self.mode is TraceMode.FULL:
            self.lines.append(line)

    def digest(self) -> str | None:
        return self._hash.hexdigest() if self.enabled else None
