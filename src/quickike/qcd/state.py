"""What QCD keeps per IKE SA (in ``sa.ext["qcd"]``) and per peer.

The peer's tokens are held as SHA-256 digests only, newest first, at most
four: the current one plus ones it replaced (RFC 6290 §5 lets a taker match
earlier tokens, which helps multihomed peers under §5.2).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..engine.sa import IkeSa
    from ..engine.timers import Timer

EXT_KEY = "qcd"
HELD_DIGESTS = 4


class Acceptance:
    """A valid token waiting out the acceptance delay or dampening (seed issue 202)."""

    __slots__ = ("arrived", "dampened", "deadline", "detect_start", "source", "timer", "via")

    def __init__(self, arrived: float, via: str, source: tuple[str, int], detect_start: float) -> None:
        self.arrived = arrived
        self.via = via
        self.source = source
        self.detect_start = detect_start
        self.deadline = arrived
        self.dampened = False
        self.timer: Timer | None = None


class SaState:
    """QCD's per-SA record."""

    __slots__ = (
        "acceptance",
        "first_hint",
        "given_address",
        "given_generation",
        "peer_digests",
        "replacing",
        "rtt",
        "update_queued",
    )

    def __init__(self) -> None:
        #: SHA-256 of the peer's tokens for this SA, newest first
        self.peer_digests: list[bytes] = []
        #: which of our generations (and taker address, for §5.2) the peer's copy was made with
        self.given_generation: int | None = None
        self.given_address: str | None = None
        #: first unprotected hint since the last authenticated message (crash-detection start)
        self.first_hint: float | None = None
        self.acceptance: Acceptance | None = None
        #: the SA was condemned by a token and is being replaced (make-before-break)
        self.replacing = False
        #: smoothed round-trip time of our requests on this SA, None until measured
        self.rtt: float | None = None
        self.update_queued = False

    def hold(self, digest: bytes) -> bool:
        """Remember a peer token digest; False if it was already the newest."""
        if self.peer_digests and self.peer_digests[0] == digest:
            return False
        if digest in self.peer_digests:
            self.peer_digests.remove(digest)
        self.peer_digests.insert(0, digest)
        del self.peer_digests[HELD_DIGESTS:]
        return True

    def sample_rtt(self, sample: float) -> None:
        if sample < 0:
            return
        self.rtt = sample if self.rtt is None else 0.875 * self.rtt + 0.125 * sample


def state_of(sa: IkeSa) -> SaState:
    st: SaState | None = sa.ext_get(EXT_KEY)
    if st is None:
        st = SaState()
        sa.ext_set(EXT_KEY, st)
    return st


def peek_state(sa: IkeSa) -> SaState | None:
    st: SaState | None = sa.ext_get(EXT_KEY)
    return st


class Dampening:
    """Minimum intervals between QCD teardowns per peer, doubling per repetition.

    The first teardown for a peer is never delayed; the n-th within a series
    must wait ``base * 2**(n-2)`` (capped at ``cap``) after the previous one.
    A series ends when a peer stays quiet for longer than ``cap``.
    """

    __slots__ = ("_peers",)

    def __init__(self) -> None:
        self._peers: dict[object, tuple[int, float]] = {}

    def not_before(self, peer: object, base: float, cap: float, now: float) -> float:
        """When the next teardown for ``peer`` may happen (``now`` or earlier: at once)."""
        entry = self._peers.get(peer)
        if entry is None or base <= 0:
            return now
        count, last = entry
        if now - last > max(cap, base):
            return now
        return last + min(base * (1 << min(count - 1, 40)), max(cap, base))

    def record(self, peer: object, base: float, cap: float, now: float) -> int:
        """A teardown happened; returns its number in the current series."""
        entry = self._peers.get(peer)
        count = 1 if entry is None or now - entry[1] > max(cap, base) else entry[0] + 1
        self._peers[peer] = (count, now)
        if len(self._peers) > 4096:
            for key in [k for k, (_, t) in self._peers.items() if now - t > max(cap, base)]:
                del self._peers[key]
        return count


__all__ = ["EXT_KEY", "Acceptance", "Dampening", "SaState", "peek_state", "state_of"]
