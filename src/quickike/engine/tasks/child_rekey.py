"""CHILD SA rekey (RFC 7296 §2.8): CHILD creation plus N(REKEY_SA).

Once the new pair is installed the initiator retires the old one with a
Delete; simultaneous rekeys of the same CHILD are settled by the nonces as
§2.8.1 prescribes: the pair made from the lowest nonce is redundant and its
creator deletes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...wire.enums import ExchangeType, NotifyType, ProtocolId
from ...wire.message import Message
from ...wire.payloads import notify
from ..dataplane import Selector
from ..sa import ChildSa, ChildState
from .base import Outgoing, Status
from .child_create import ChildCreate
from .child_delete import ChildDelete

if TYPE_CHECKING:
    from ..engine import Engine
    from ..sa import IkeSa


class ChildRekey(ChildCreate):
    """Rekey of one CHILD SA (RFC 7296 §2.8): a new pair, then the old one goes."""

    __slots__ = ("old",)
    kind = "child-rekey"

    def __init__(self, engine: Engine, sa: IkeSa, exchange: ExchangeType,
                 old: ChildSa | None) -> None:
        super().__init__(engine, sa, exchange, old.config if old is not None else None)
        self.old = old

    def abort_check(self) -> bool:
        old = self.old
        return old is not None and old.state == ChildState.INSTALLED and old.ike is self.sa

    def build_i(self, out: Outgoing) -> Status:
        st = super().build_i(out)  # DONE without a message once abort_check() says so
        if st is Status.NEED_MORE:
            assert self.old is not None
            self.old.state = ChildState.REKEYING
        return st

    def add_rekey_notify(self, out: Outgoing) -> None:
        assert self.old is not None
        out.add(notify(NotifyType.REKEY_SA, protocol=ProtocolId.ESP, spi=self.old.spi_in))

    def proposed_selectors(self) -> tuple[list[Selector], list[Selector]]:
        assert self.old is not None
        return list(self.old.local_ts), list(self.old.remote_ts)

    def _before_install(self, child: ChildSa) -> None:
        assert self.old is not None
        child.rekeyed_from = self.old.uid

    def process_i(self, msg: Message) -> Status:
        st = super().process_i(msg)
        old = self.old
        if old is None:
            return st
        if st is not Status.DONE and old.state == ChildState.REKEYING:
            # failed, or retrying with the peer's DH group: build_i() marks it again, and
            # refuses (abort_check) a CHILD SA that is not INSTALLED
            old.state = ChildState.INSTALLED
        if st is Status.FAILED:
            if msg.notify(NotifyType.CHILD_SA_NOT_FOUND) is not None:
                self.engine.remove_child(old, "not-found")
            elif self.error == NotifyType.TEMPORARY_FAILURE:
                self.engine.retry_child_rekey_later(old)
            return st
        if st is Status.DONE and self.child is not None:
            self.engine.counters["child-rekeys"] += 1
            self._settle_collision()
        return st

    def _settle_collision(self) -> None:
        """§2.8.1: if the peer rekeyed the same CHILD meanwhile, the lowest nonce loses."""
        old, new, eng = self.old, self.child, self.engine
        assert old is not None and new is not None
        theirs = eng.peer_rekeys.pop(old.uid, None)
        if theirs is None:
            old.state = ChildState.REKEYED
            eng.queue_task(self.sa, ChildDelete(eng, self.sa, ExchangeType.INFORMATIONAL, old, reason="rekeyed"))
            return
        _their_child, their_nonces = theirs
        ours_lowest = min(self.my_nonce, self.peer_nonce)
        theirs_lowest = min(their_nonces)
        eng.counters["child-rekey-collisions"] += 1
        if ours_lowest < theirs_lowest:
            # our new pair is redundant: we created it, so we delete it; the peer deletes the old
            eng.queue_task(self.sa, ChildDelete(eng, self.sa, ExchangeType.INFORMATIONAL, new, reason="redundant"))
            old.state = ChildState.REKEYED
        else:
            old.state = ChildState.REKEYED
            eng.queue_task(self.sa, ChildDelete(eng, self.sa, ExchangeType.INFORMATIONAL, old, reason="rekeyed"))

    # responder
    def check_rekey_r(self, msg: Message) -> Status:
        old = self.old
        if old is None or old.state in (ChildState.DESTROYED, ChildState.DELETING):
            self.engine.release_child_spi(self.spi_in)
            return self._failed("CHILD SA to rekey not found", NotifyType.CHILD_SA_NOT_FOUND)
        return Status.DONE

    def _after_install(self, child: ChildSa) -> None:
        old = self.old
        assert old is not None
        if self.responder:
            if old.state == ChildState.REKEYING:
                # we are rekeying it too: keep what the nonce comparison needs (§2.8.1)
                self.engine.peer_rekeys[old.uid] = (child, (self.peer_nonce, self.my_nonce))
            else:
                old.state = ChildState.REKEYED
            self.engine.counters["child-rekeys"] += 1
