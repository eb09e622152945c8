"""What the VICI server needs from the daemon.

The server speaks the protocol; everything it reports or changes comes through
:class:`ViciBackend`, which the daemon implements on top of the engine. Query
methods return charon-shaped messages (build them with
:mod:`quickike.control.vici.shapes` to get the keys swanctl expects); commands
that change state raise :class:`BackendError` with the text swanctl should
print. ``initiate`` and ``terminate`` are coroutines because they wait for IKE
exchanges; everything else must return promptly, without blocking the loop.

Events flow the other way: the daemon calls ``publish_event`` on the server
(:class:`EventSink`), which never blocks.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .protocol import OutSection, Section


class BackendError(Exception):
    """A command failed for a reason the user should read (sent as ``errmsg``)."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One line of progress for ``control-log`` (during initiate/terminate) or ``log``.

    ``group`` uses charon's debug group names (IKE, CHD, CFG, NET, ENC, KNL, ...), which
    swanctl prints in brackets; ``level`` 0-4 as in charon (1 = normal, 2+ = detail).
    """

    msg: str
    group: str = "CFG"
    level: int = 1
    ike_name: str | None = None
    ike_uniqueid: int | None = None


#: how a backend reports progress; the server filters by the client's loglevel
LogCallback = Callable[[LogRecord], None]


@dataclass(frozen=True, slots=True)
class InitiateRequest:
    """``child`` and/or ``ike``: a CHILD_SA config (optionally under IKE config ``ike``),
    or with ``child`` unset just the IKE_SA of config ``ike``."""

    child: str | None
    ike: str | None = None
    init_limits: bool = False


@dataclass(frozen=True, slots=True)
class SaSelector:
    """Which SAs a terminate/rekey acts on, with charon's matching rules: when ``child`` or
    ``child_id`` is set the matches are CHILD_SAs (inside IKE_SAs filtered by ``ike`` /
    ``ike_id``), otherwise IKE_SAs by ``ike`` name or ``ike_id`` unique id."""

    ike: str | None = None
    ike_id: int | None = None
    child: str | None = None
    child_id: int | None = None

    @property
    def targets_children(self) -> bool:
        return self.child is not None or self.child_id is not None

    @property
    def empty(self) -> bool:
        return self.ike is None and self.ike_id is None and not self.targets_children


@dataclass(frozen=True, slots=True)
class TerminateRequest:
    selector: SaSelector
    force: bool = False


@dataclass(frozen=True, slots=True)
class TerminateResult:
    """``matches``: SAs the selector found; ``terminated``: those actually deleted."""

    matches: int
    terminated: int


@dataclass(frozen=True, slots=True)
class SharedSecret:
    """A PSK/EAP/XAuth/PPK secret from ``load-shared``; ``id`` is swanctl's section name
    (e.g. ``ike-gw2``), used later by ``unload-shared``. ``data`` never appears in repr."""

    id: str | None
    type: str
    data: bytes = field(repr=False)
    owners: tuple[str, ...] = ()


class QcdEventKind(enum.Enum):
    """Values of the ``kind`` key in quickike's ``qcd`` event."""

    TOKEN_SENT = "token-sent"
    TOKEN_ACCEPTED = "token-accepted"
    TOKEN_REJECTED = "token-rejected"
    SPOOF_SUSPECTED = "spoof-suspected"


class EventSink(Protocol):
    """Where the daemon publishes ike-updown, child-updown, ike-rekey, child-rekey, log and
    qcd events. Implemented by :class:`~quickike.control.vici.server.ViciServer`."""

    def publish_event(self, name: str, message: OutSection) -> None: ...

    def has_listeners(self, name: str) -> bool: ...


class ViciBackend(Protocol):
    """The daemon side of the control socket."""

    def version(self) -> OutSection:
        """``version`` reply: daemon, version, sysname, release, machine."""
        ...

    def stats(self) -> OutSection:
        """``stats`` reply (see :func:`shapes.stats_message`)."""
        ...

    def list_sas(self) -> Iterable[OutSection]:
        """One ``{ike-name: {...}}`` per IKE_SA (see :class:`shapes.IkeSaView`); the server
        applies the request's ike/ike-id/child/child-id filters."""
        ...

    def list_conns(self) -> Iterable[OutSection]:
        """One ``{conn-name: {...}}`` per loaded connection (see :func:`shapes.conn_message`)."""
        ...

    def get_conns(self) -> Sequence[str]:
        """Names of connections loaded over VICI (swanctl unloads those not in its file)."""
        ...

    async def initiate(self, request: InitiateRequest, log: LogCallback) -> None:
        """Bring the SA up; return when established, raise BackendError when it failed."""
        ...

    async def terminate(self, request: TerminateRequest, log: LogCallback) -> TerminateResult:
        """Delete the selected SAs and return when done."""
        ...

    def rekey(self, selector: SaSelector, reauth: bool) -> int:
        """Schedule rekeying (or reauthentication) of the selected SAs; return matches."""
        ...

    def load_conn(self, name: str, config: Section) -> None:
        """Add or replace connection ``name``; ``config`` has swanctl.conf's keys
        (local_addrs, proposals, local/remote auth sections, children, ...)."""
        ...

    def unload_conn(self, name: str) -> None: ...

    def load_shared(self, secret: SharedSecret) -> None: ...

    def unload_shared(self, secret_id: str) -> None: ...

    def get_shared(self) -> Sequence[str]:
        """Ids of shared secrets loaded with an id."""
        ...

    def reload_settings(self) -> None: ...

    def qcd_show(self) -> OutSection:
        """quickike's ``qcd-show`` reply: QCD configuration, token secret generation and
        counters; free-form but flat keys are easiest for the CLI to print."""
        ...

    def qcd_rotate(self) -> OutSection:
        """Rotate the QCD token secret; the reply describes the new generation."""
        ...
