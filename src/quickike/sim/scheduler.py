"""The virtual clock: one heap of callbacks ordered by (time, insertion order).

Insertion order breaks ties so that two runs with the same seed execute the
same callbacks in the same order, which is what makes a trace reproducible.
Nothing here reads the wall clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

Callback = Callable[..., None]


class Scheduler:
    """Discrete-event loop: ``at``/``after`` schedule, ``run`` executes in time order."""

    __slots__ = ("_heap", "_seq", "executed", "halted", "now")

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Callback, tuple[Any, ...]]] = []
        self._seq = 0
        #: callbacks run so far (the benchmark's "events")
        self.executed = 0
        self.halted = False

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, when: float, fn: Callback, *args: Any) -> None:
        """Run ``fn(*args)`` at virtual time ``when`` (never earlier than now)."""
        if when < self.now:
            when = self.now
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn, args))

    def after(self, delay: float, fn: Callback, *args: Any) -> None:
        self.at(self.now + delay, fn, *args)

    def halt(self) -> None:
        """End the current ``run`` after this callback (the clock stays where it is)."""
        self.halted = True

    def run(self, until: float) -> None:
        """Execute everything due up to and including ``until`` (or until ``halt``)."""
        heap = self._heap
        pop = heapq.heappop
        executed = 0
        self.halted = False
        try:
            while heap and heap[0][0] <= until:
                when, _, fn, args = pop(heap)
                self.now = when
                fn(*args)
                executed += 1
                if self.halted:
                    return
            self.now = max(self.now, until)
        finally:
            self.executed += executed
