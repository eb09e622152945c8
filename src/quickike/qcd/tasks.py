"""The exchanges QCD adds payloads to (RFC 6290 §3, §4.2-§4.4).

* :class:`QcdAuth` rides along IKE_AUTH in both roles: our token after AUTH
  (``engine/ordering.py`` ranks it there), the peer's token stored once its
  AUTH verified (seed issue 198: initiators are makers too, for
  traffic-triggered tunnels).
* :class:`QcdRekey` rides along an IKE rekey: the rekey responder puts the
  token for the *new* SPIs in its CREATE_CHILD_SA response; the rekey
  initiator stores it and then sends its own in an INFORMATIONAL on the new
  SA (§4.3).
* :class:`QcdTokenUpdate` is that INFORMATIONAL, also used for §4.4
  replacements (secret generation no longer kept, §5.2 address change).

A task never decides policy: it asks the extension (a :class:`TokenAgent`)
whether an SA makes and takes tokens and hands tokens to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..engine.sa import IkeState
from ..engine.tasks.base import Outgoing, Status, Task
from ..wire.enums import ExchangeType
from ..wire.message import Message
from ..wire.payloads import Notify

if TYPE_CHECKING:
    from ..engine.engine import Engine
    from ..engine.sa import IkeSa

_INFO = ExchangeType.INFORMATIONAL


class TokenAgent(Protocol):
    """What tasks need from the QCD extension."""

    def makes(self, sa: IkeSa) -> bool: ...

    def takes(self, sa: IkeSa) -> bool: ...

    def give(self, sa: IkeSa, exchange: str, why: str) -> Notify | None:
        """Our current token for ``sa`` as a notify (None if we give none)."""
        ...

    def take(self, sa: IkeSa, msg: Message, exchange: str) -> None:
        """Store the peer's token(s) from a protected message for ``sa``."""
        ...


class QcdAuth(Task):
    """N(QCD_TOKEN) in the IKE_AUTH messages that carry AUTH, both ways."""

    __slots__ = ("agent", "auth", "request")
    kind = "qcd-auth"

    def __init__(self, engine: Engine, sa: IkeSa, agent: TokenAgent, auth: Task | None) -> None:
        super().__init__(engine, sa, ExchangeType.IKE_AUTH)
        self.agent = agent
        self.auth = auth
        self.request: Message | None = None

    def build_i(self, out: Outgoing) -> Status:
        if self.auth is not None and self.auth not in self.sa.active:
            return Status.DONE
        n = self.agent.give(self.sa, "IKE_AUTH", "auth")
        if n is not None:
            out.add(n)
        return Status.NEED_MORE  # the responder's token is in the answer

    def process_i(self, msg: Message) -> Status:
        if self.sa.auth_done:
            self.agent.take(self.sa, msg, "IKE_AUTH")
        return Status.DONE

    def process_r(self, msg: Message) -> Status:
        self.request = msg
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        sa = self.sa
        if not sa.auth_done or self.request is None:
            return Status.DONE  # AUTH failed: nothing of ours goes into that answer
        self.agent.take(sa, self.request, "IKE_AUTH")
        self.request = None
        n = self.agent.give(sa, "IKE_AUTH", "auth")
        if n is not None:
            out.add(n)
        return Status.DONE


class QcdRekey(Task):
    """The token for the SPIs an IKE rekey creates (§4.3)."""

    __slots__ = ("agent", "rekey")
    kind = "qcd-rekey"

    def __init__(self, engine: Engine, sa: IkeSa, agent: TokenAgent, rekey: Task) -> None:
        super().__init__(engine, sa, ExchangeType.CREATE_CHILD_SA)
        self.agent = agent
        self.rekey = rekey

    def _new_sa(self) -> IkeSa | None:
        new: IkeSa | None = getattr(self.rekey, "new_sa", None)
        if new is None or new.state == IkeState.DESTROYED:
            return None
        return new

    def build_i(self, out: Outgoing) -> Status:
        return Status.NEED_MORE if self.rekey in self.sa.active else Status.DONE

    def process_i(self, msg: Message) -> Status:
        if self.rekey in self.sa.active:
            return Status.NEED_MORE  # the rekey retries (INVALID_KE): so do we
        new = self._new_sa()
        if new is None:
            return Status.DONE
        self.agent.take(new, msg, "CREATE_CHILD_SA")
        if self.agent.makes(new):
            # §4.3 SHOULD: the rekey initiator's token follows at once on the new SA
            self.engine.queue_task(new, QcdTokenUpdate(self.engine, new, self.agent, "rekey"))
        return Status.DONE

    def build_r(self, out: Outgoing) -> Status:
        new = self._new_sa()
        if self.rekey.error is not None or new is None:
            return Status.DONE
        n = self.agent.give(new, "CREATE_CHILD_SA", "rekey")
        if n is not None:
            out.add(n)
        return Status.DONE


class QcdTokenUpdate(Task):
    """``--> N(QCD_TOKEN)`` / ``<-- (empty)`` on an established SA (§4.3, §4.4)."""

    __slots__ = ("agent", "why")
    kind = "qcd-token"

    def __init__(self, engine: Engine, sa: IkeSa, agent: TokenAgent, why: str) -> None:
        super().__init__(engine, sa, _INFO)
        self.agent = agent
        self.why = why

    def build_i(self, out: Outgoing) -> Status:
        if not self.sa.usable:
            return Status.DONE
        n = self.agent.give(self.sa, "INFORMATIONAL", self.why)
        if n is None:
            return Status.DONE
        out.add(n)
        return Status.NEED_MORE

    def process_i(self, msg: Message) -> Status:
        return Status.DONE


__all__ = ["QcdAuth", "QcdRekey", "QcdTokenUpdate", "TokenAgent"]
