"""One run seed, many independent random streams.

Every consumer of randomness (each node's engine, the network, each traffic
source, the attacker) gets its own stream derived from the run seed and a
label, so adding a traffic source does not shift the SPIs a gateway draws and
the same seed still gives the same run.  ``random.Random`` is only ever used
through these explicit, seeded instances.
"""

from __future__ import annotations

import hashlib
import random

from ..crypto.rng import SeededRandomSource


def derive(seed: int, *labels: object) -> int:
    """A 64-bit seed for the stream named by ``labels`` within run ``seed``."""
    text = "\x1f".join([str(seed), *(str(label) for label in labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def stream(seed: int, *labels: object) -> random.Random:
    """A seeded ``random.Random`` for simulator decisions (loss, jitter, traffic)."""
    return random.Random(derive(seed, *labels))


def engine_rng(seed: int, node: str, boot: int) -> SeededRandomSource:
    """The RandomSource of ``node``'s engine in its ``boot``-th life (SPIs, nonces, DH values)."""
    return SeededRandomSource(derive(seed, "engine", node, boot))
