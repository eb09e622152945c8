"""Token buckets for everything a peer can make us do without authenticating.

RFC 7296 §2.21.4 asks to rate-limit replies to unprotected messages and the
actions they trigger; RFC 6290 §8.1 adds the token replies. One small class
serves all of them, keyed per source where a per-source limit is wanted.
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.last: float | None = None

    def allow(self, now: float, cost: float = 1.0) -> bool:
        if self.rate <= 0:
            return self.burst > 0 and self._take(now, cost, refill=False)
        return self._take(now, cost, refill=True)

    def _take(self, now: float, cost: float, refill: bool) -> bool:
        if refill and self.last is not None and now > self.last:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class KeyedBuckets:
    """One bucket per key (source address), bounded so a spoofing flood cannot grow it."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[object, TokenBucket] = {}

    def allow(self, key: object, now: float, cost: float = 1.0) -> bool:
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self.max_keys:
                # forget the oldest sources; full buckets are the cheapest to lose
                for k in list(self._buckets)[: self.max_keys // 4]:
                    del self._buckets[k]
            b = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return b.allow(now, cost)
