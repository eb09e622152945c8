"""Deleting an IKE SA (RFC 7296 §1.4.1): it takes all its CHILD SAs along."""

from __future__ import annotations

from ...wire.enums import ProtocolId
from ...wire.message import Message
from ...wire.payloads import Delete
from ..sa import IkeState
from .base import Outgoing, Status, Task


class IkeDelete(Task):
    __slots__ = ()
    kind = "ike-delete"

    def build_i(self, out: Outgoing) -> Status:
        sa = self.sa
        if sa.state != IkeState.REKEYED:
            sa.state = IkeState.DELETING
        out.add(Delete(ProtocolId.IKE))
        return Status.NEED_MORE

    def process_i(self, msg: Message) -> Status:
        sa = self.sa
        reason = "rekeyed" if sa.ext_get("successor") is not None else "deleted"
        self.engine.destroy_ike(sa, reason, restart=False)
        return Status.DONE

    def process_r(self, msg: Message) -> Status:
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        sa, eng = self.sa, self.engine
        rekeyed = sa.ext_get("successor") is not None
        eng.after_response(
            sa,
            lambda: eng.destroy_ike(
                sa, "rekeyed" if rekeyed else "peer-deleted", action=None if rekeyed else "close"
            ),
        )
        return Status.DONE
