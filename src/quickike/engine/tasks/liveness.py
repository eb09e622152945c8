"""The liveness check (RFC 7296 §2.4): an empty protected INFORMATIONAL.

Only its answer proves the peer is alive; only the exhaustion of its
retransmissions proves it dead. QCD shortens the latter by answering the
check with an authenticated "I rebooted" (RFC 6290 §3).
"""

from __future__ import annotations

from ...wire.message import Message
from .base import Outgoing, Status, Task


class Liveness(Task):
    __slots__ = ()
    kind = "liveness"

    def build_i(self, out: Outgoing) -> Status:
        return Status.NEED_MORE

    def process_i(self, msg: Message) -> Status:
        self.engine.counters["liveness-answered"] += 1
        return Status.DONE
