"""Hooks through which plug-ins (QCD) join the engine without editing it.

An extension contributes tasks to exchanges and sees the few things that no
task can: messages for SAs we do not have, unprotected messages about SAs we
do have, and ESP for unknown SPIs. Every hook has a do-nothing default, and
with no extension the engine behaves as plain RFC 7296.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..wire.enums import ExchangeType
from ..wire.header import Header
from ..wire.message import Message

if TYPE_CHECKING:
    from .engine import Engine
    from .sa import ChildSa, IkeSa
    from .tasks.base import Task

Address = tuple[str, int]


class Extension:
    name = "extension"

    def attach(self, engine: Engine) -> None:
        """Called once when the engine is built (or the extension added)."""

    def initiator_tasks(self, sa: IkeSa, exchange: ExchangeType, tasks: list[Task]) -> list[Task]:
        """Extra tasks for an exchange this side is about to initiate."""
        return []

    def responder_tasks(
        self, sa: IkeSa, exchange: ExchangeType, request: Message, tasks: list[Task]
    ) -> list[Task]:
        """Extra tasks for a request this side is answering."""
        return []

    def unknown_sa_request(
        self, header: Header, data: bytes, local: Address, remote: Address
    ) -> bool:
        """A request (R=0) for IKE SPIs we do not know (of a fragmented one, only its first
        fragment: one answer per request). True if handled (replied)."""
        return False

    def unprotected_message(
        self, sa: IkeSa | None, msg: Message, local: Address, remote: Address
    ) -> bool:
        """An unprotected non-IKE_SA_INIT message (INVALID_IKE_SPI, INVALID_SPI, ...).

        ``sa`` is the SA the header SPIs (or an INVALID_SPI child SPI) name, if
        any. True if the extension consumed it; the engine then takes no
        action of its own (no liveness hint).
        """
        return False

    def unknown_esp_spi(self, spi: bytes, local: Address, remote: Address) -> bool:
        """ESP arrived for an SPI we have no SA for. True if the extension replied."""
        return False

    def protected_message(self, sa: IkeSa, msg: Message) -> None:
        """Every authenticated message on an SA (before tasks see it)."""

    def established(self, sa: IkeSa) -> None:
        """An IKE SA became established (IKE_AUTH done or IKE rekey done)."""

    def ike_rekeyed(self, old: IkeSa, new: IkeSa, initiator: bool) -> None:
        """An IKE rekey completed: ``new`` replaces ``old``; ``initiator``: we started it."""

    def destroyed(self, sa: IkeSa, reason: str) -> None:
        """An IKE SA is gone (any reason)."""

    def child_installed(self, child: ChildSa) -> None:
        """A CHILD SA was installed in the data plane (persistent SPI maps follow it)."""

    def child_removed(self, child: ChildSa, reason: str) -> None:
        """An installed CHILD SA was removed from the data plane."""
