"""Traffic-selector narrowing (RFC 7296 §2.9).

The responder answers with the intersection of what the initiator proposed
and what its configuration allows; the initiator checks that the answer is
inside its proposal.
"""

from __future__ import annotations

from collections.abc import Sequence

from .dataplane import Selector


def intersect(a: Selector, b: Selector) -> Selector | None:
    if a.start.version != b.start.version:
        return None
    start = max(a.start, b.start)
    end = min(a.end, b.end)
    if start > end:  # type: ignore[operator]
        return None
    if a.protocol and b.protocol and a.protocol != b.protocol:
        return None
    protocol = a.protocol or b.protocol
    sport = max(a.start_port, b.start_port)
    eport = min(a.end_port, b.end_port)
    if sport > eport:
        return None
    return Selector(start, end, protocol, sport, eport)


def narrow(proposed: Sequence[Selector], allowed: Sequence[Selector]) -> list[Selector]:
    """The intersections, without one that lies inside another (as charon drops them).

    An initiator that puts the triggering packet's selectors first (§2.9)
    otherwise gets both that host and the network it belongs to back.
    """
    out: list[Selector] = []
    for c in allowed:
        for p in proposed:
            x = intersect(c, p)
            if x is None or any(intersect(x, o) == x for o in out):
                continue
            out = [o for o in out if intersect(o, x) != o]
            out.append(x)
    return out


def match_score(proposed: Sequence[Selector], allowed: Sequence[Selector]) -> int:
    """How well configured selectors fit a proposal, to pick among CHILD configs.

    charon's rating, so that both pick the same configuration: a configured
    selector equal to a proposed one counts five times one that merely
    overlaps it, and the leading proposed selectors weigh more.
    """
    score = 0
    for i, p in enumerate(proposed):
        weight = len(proposed) - i
        for c in allowed:
            if c == p:
                score += 5 * weight
            elif intersect(c, p) is not None:
                score += weight
    return score


def covered(answer: Sequence[Selector], proposed: Sequence[Selector]) -> bool:
    """Every selector of ``answer`` lies inside one of ``proposed``."""
    return bool(answer) and all(any(intersect(a, p) == a for p in proposed) for a in answer)
