"""The task contract: one exchange concern, four moves.

As in strongSwan's charon, the initiator *builds* its part of a request and
later *processes* the response; the responder *processes* the request and
*builds* its part of the response. Several tasks share one exchange, each
adding and reading only its own payloads, so a new feature (QCD) is a new
task rather than an edit to the others.

Each move answers DONE (the task is finished), NEED_MORE (it takes part in
the next exchange too: IKE_SA_INIT retries, IKE_SA_INIT -> IKE_AUTH on the
responder) or FAILED (the exchange failed; the task has said why in
``error``/``reason``, and the engine destroys the SA unless the task marked
the failure as local to itself with ``keep_sa``).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, ClassVar

from ...wire.enums import DhGroup, ExchangeType, NotifyType
from ...wire.message import Message
from ...wire.payloads import Notify, Payload, notify

if TYPE_CHECKING:
    from ..engine import Engine
    from ..sa import IkeSa


class DropRequest(Exception):
    """Raised by a responder move: answer nothing at all (RFC 7296 §2.21.1, RFC 6989)."""


class Status(enum.Enum):
    DONE = "done"
    NEED_MORE = "need-more"
    FAILED = "failed"


class Outgoing:
    """The payloads of a message being built; the engine orders, encodes and protects them."""

    __slots__ = ("exchange", "payloads", "response")

    def __init__(self, exchange: ExchangeType, response: bool) -> None:
        self.exchange = exchange
        self.response = response
        self.payloads: list[Payload] = []

    def add(self, *payloads: Payload) -> None:
        self.payloads.extend(payloads)


def requested_group(invalid_ke: Notify) -> DhGroup | None:
    """The DH group an INVALID_KE_PAYLOAD asks for (RFC 7296 §1.2); None if it names none."""
    data = invalid_ke.data
    return DhGroup(int.from_bytes(data[:2], "big")) if len(data) >= 2 else None


def refusal(error: NotifyType, group: DhGroup | None) -> Notify:
    """The error notify of a refused request; INVALID_KE_PAYLOAD names the group we want."""
    data = b""
    if error == NotifyType.INVALID_KE_PAYLOAD and group is not None:
        data = int(group).to_bytes(2, "big")
    return notify(error, data)


class Task:
    """Base class. Subclasses override the moves of the roles they play."""

    __slots__ = ("engine", "error", "exchange", "keep_sa", "reason", "responder", "sa")

    #: a short name for logs and for extensions that look for a kind of task
    kind: ClassVar[str] = "task"

    def __init__(self, engine: Engine, sa: IkeSa, exchange: ExchangeType) -> None:
        self.engine = engine
        self.sa = sa
        self.exchange = exchange
        #: notify to send / that was received when the task failed
        self.error: NotifyType | None = None
        self.reason = ""
        #: a failure of this task leaves the IKE SA up (CHILD failures, RFC 7296 §2.21.3)
        self.keep_sa = False
        #: set by the engine for tasks created to answer a request
        self.responder = False

    # initiator
    def build_i(self, out: Outgoing) -> Status:
        return Status.DONE

    def process_i(self, msg: Message) -> Status:
        return Status.DONE

    # responder
    def process_r(self, msg: Message) -> Status:
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        return Status.DONE

    def fail(self, reason: str, error: NotifyType | None = None) -> Status:
        self.reason = reason
        if error is not None:
            self.error = error
        return Status.FAILED

    def abandoned(self) -> None:
        """The SA died before the task finished (e.g. dead peer); undo partial state."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.exchange}>"
