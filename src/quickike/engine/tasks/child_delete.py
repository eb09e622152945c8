"""Deleting CHILD SAs with INFORMATIONAL Delete payloads (RFC 7296 §1.4.1).

Delete payloads name the sender's *inbound* SPIs; the responder closes both
halves and answers with its own inbound SPIs, except for SAs it is deleting
itself at the same moment (crossed deletes are not answered twice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.enums import ExchangeType, ProtocolId
from ...wire.message import Message
from ...wire.payloads import Delete
from ..config import CloseAction
from ..sa import ChildSa, ChildState
from .base import Outgoing, Status, Task

if TYPE_CHECKING:
    from ..engine import Engine
    from ..sa import IkeSa


class ChildDelete(Task):
    __slots__ = ("child", "closed", "why")
    kind = "child-delete"

    def __init__(self, engine: Engine, sa: IkeSa, exchange: ExchangeType,
                 child: ChildSa | None = None, reason: str = "deleted") -> None:
        super().__init__(engine, sa, exchange)
        self.child = child
        self.why = reason
        self.closed: list[ChildSa] = []

    def build_i(self, out: Outgoing) -> Status:
        child = self.child
        if child is None or child.state in (ChildState.DESTROYED, ChildState.DELETING) or child.ike is not self.sa:
            return Status.DONE
        child.state = ChildState.DELETING
        out.add(Delete(ProtocolId.ESP, [child.spi_in]))
        return Status.NEED_MORE

    def process_i(self, msg: Message) -> Status:
        if self.child is not None:
            self.engine.remove_child(self.child, self.why)
        return Status.DONE

    def abandoned(self) -> None:
        if self.child is not None and self.child.state == ChildState.DELETING:
            self.child.state = ChildState.INSTALLED

    def process_r(self, msg: Message) -> Status:
        eng = self.engine
        for d in msg.all(Delete):
            if d.protocol not in (ProtocolId.ESP, ProtocolId.AH):
                continue
            for spi in d.spis:
                child = eng.children_out.get(spi)
                if child is None or child.ike is not self.sa:
                    eng.counters["delete-unknown-child"] += 1
                    continue
                self.closed.append(child)
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        eng = self.engine
        answer = [c.spi_in for c in self.closed if c.state != ChildState.DELETING]
        if answer:
            out.add(Delete(ProtocolId.ESP, answer))
        for child in self.closed:
            peer_closed = child.state not in (ChildState.DELETING, ChildState.REKEYED)
            eng.remove_child(child, "peer-deleted" if peer_closed else "rekeyed")
            if peer_closed and child.config.close_action != CloseAction.NONE:
                eng.close_action(self.sa, child.config)
        return Status.DONE
