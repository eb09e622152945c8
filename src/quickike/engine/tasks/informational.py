"""Notifies in INFORMATIONAL requests (RFC 7296 §1.4, §2.21).

Error notifies from an authenticated peer are reported; AUTHENTICATION_FAILED
after IKE_AUTH (the initiator rejected our AUTH) ends the SA. Unknown status
notifies are ignored as §3.10.1 requires. An empty request (liveness check)
needs nothing but the engine's empty answer.
"""

from __future__ import annotations

from ...wire.enums import NotifyType
from ...wire.message import Message
from .base import Outgoing, Status, Task

_FATAL = frozenset({NotifyType.AUTHENTICATION_FAILED, NotifyType.INVALID_SYNTAX,
                    NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD})


class Informational(Task):
    __slots__ = ("fatal",)
    kind = "informational"

    def process_r(self, msg: Message) -> Status:
        self.fatal: NotifyType | None = None
        for n in msg.notifies():
            if n.type.is_error:
                self.engine.counters[f"peer-error:{n.type}"] += 1
                if n.type in _FATAL:
                    self.fatal = n.type
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        if self.fatal is not None:
            sa, eng = self.sa, self.engine
            reason = "auth-failed" if self.fatal == NotifyType.AUTHENTICATION_FAILED else "failed"
            eng.after_response(sa, lambda: eng.destroy_ike(sa, reason, action="close"))
        return Status.DONE
