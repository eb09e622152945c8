"""Deadlines without a clock.

The engine schedules callbacks at absolute engine times; the driver asks for
the earliest deadline and calls ``Engine.handle_timer(now)`` when it passes.
Cancellation is lazy (a flag) because SAs reschedule their timers constantly
and removing entries from the middle of a heap would cost more than skipping
them once.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class Timer:
    __slots__ = ("args", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        # drop references early: a cancelled timer may sit in the heap for hours
        self.fn = _noop
        self.args = ()


def _noop(*_: Any) -> None:
    return None


class TimerQueue:
    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        t = Timer(when, fn, args)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, t))
        return t

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> Timer | None:
        """The next timer due at ``now`` (removed from the queue), or None."""
        heap = self._heap
        while heap:
            when, _, t = heap[0]
            if t.cancelled:
                heapq.heappop(heap)
                continue
            if when > now:
                return None
            heapq.heappop(heap)
            return t
        return None
