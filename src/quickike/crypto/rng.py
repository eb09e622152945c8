"""Injected randomness (architecture: "Randomness is injected").

Every SPI, nonce, IV, DH private value and timer jitter in quickike comes from
one :class:`RandomSource`, so that the deterministic simulator can replay a
whole run from a single seed while production draws from the OS CSPRNG.
"""

from __future__ import annotations

import builtins
import os
import random as _random
import secrets
from typing import Protocol, runtime_checkable


@runtime_checkable
class RandomSource(Protocol):
    """What the engine and the crypto layer need from a random number generator."""

    def bytes(self, n: int) -> builtins.bytes:
        """``n`` random octets."""
        ...

    def random(self) -> float:
        """A float in [0.0, 1.0) (timer jitter)."""
        ...

    def randbelow(self, n: int) -> int:
        """An int in [0, n)."""
        ...


class SystemRandomSource:
    """The OS CSPRNG: the only source fit for production."""

    __slots__ = ("_sys",)

    def __init__(self) -> None:
        self._sys = secrets.SystemRandom()

    def bytes(self, n: int) -> builtins.bytes:
        return os.urandom(n)

    def random(self) -> float:
        return self._sys.random()

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)


class SeededRandomSource:
    """Deterministic generator for the simulator and for reproducible tests.

    NOT FOR PRODUCTION: Mersenne Twister output is predictable from a few
    observed values, so keys, nonces and SPIs drawn from it offer no secrecy.
    Its only purpose is that one seed gives one trace.
    """

    __slots__ = ("_r", "seed")

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._r = _random.Random(seed)

    def bytes(self, n: int) -> builtins.bytes:
        return self._r.randbytes(n)

    def random(self) -> float:
        return self._r.random()

    def randbelow(self, n: int) -> int:
        if n <= 0:
            raise ValueError("randbelow() needs a positive bound")
        return self._r.randrange(n)


__all__ = ["RandomSource", "SeededRandomSource", "SystemRandomSource"]
