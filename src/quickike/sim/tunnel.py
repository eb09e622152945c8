"""A tunnel between two gateways and what happened to it during a run.

One tunnel is one IKE SA (with its CHILD SA) between endpoint ``a`` (a node)
and the address ``b_addr`` (a node's address, or a virtual address that a
hot-standby pair moves between its members).  The timestamps recorded here
are the raw material of every metric; ``metrics.py`` defines them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .node import Node
    from .traffic import Flow


class Tunnel:
    __slots__ = (
        "a",
        "a_addr",
        "answers",
        "b_addr",
        "b_nodes",
        "delivered",
        "detect_reason",
        "detected",
        "disrupted_at",
        "established_at",
        "false_teardowns",
        "first_check",
        "first_hit",
        "flows",
        "id",
        "last_delivery",
        "live",
        "max_gap",
        "no_sa",
        "old_uids",
        "rebooted_at",
        "restored",
        "survivor",
        "teardowns",
    )

    def __init__(self, tid: int, a: Node, a_addr: str, b_addr: str, b_nodes: list[Node]) -> None:
        self.id = tid
        self.a = a
        self.a_addr = a_addr
        self.b_addr = b_addr
        #: nodes that may hold ``b_addr`` (one, or an active/standby pair)
        self.b_nodes = b_nodes
        self.flows: list[Flow] = []
        #: node name -> uids of its established IKE SAs for this tunnel
        self.live: dict[str, set[int]] = {}
        self.established_at: float | None = None
        # one disruption (crash or failover) per run is measured
        self.disrupted_at: float | None = None
        self.rebooted_at: float | None = None
        self.survivor: Node | None = None
        self.old_uids: set[int] = set()
        self.first_hit: float | None = None
        self.first_check: float | None = None
        self.detected: float | None = None
        self.detect_reason: str | None = None
        self.restored: float | None = None
        #: (time, summary) of unprotected messages the rebooted side sent to the survivor
        self.answers: list[tuple[float, str]] = []
        self.delivered = 0
        self.last_delivery: float | None = None
        #: longest time between two delivered packets (or from the last one to the end)
        self.max_gap = 0.0
        #: (from, to): the first endpoint's traffic had no CHILD SA although it was running
        self.no_sa: list[tuple[float, float]] = []
        self.false_teardowns = 0
        #: (time, node, reason) of every established IKE SA destroyed
        self.teardowns: list[tuple[float, str, str]] = []

    def without_sa(self, start: float, end: float) -> float:
        """Seconds within [start, end) that endpoint ``a`` ran without a CHILD SA for its traffic."""
        total = 0.0
        for a, b in self.no_sa:
            lo, hi = max(a, start), min(b, end)
            if hi > lo:
                total += hi - lo
        return total

    @property
    def name(self) -> str:
        return f"t{self.id}"

    def other_node(self, node: Node) -> Node | None:
        """The node currently at the other end from ``node``."""
        if node is self.a:
            holder = node.world.network.holder(self.b_addr)
            if holder is None:
                return None
            return next((n for n in self.b_nodes if n is holder), None)
        return self.a

    def __repr__(self) -> str:
        return f"<Tunnel {self.id} {self.a.name}<->{self.b_addr}>"
