"""What happened inside the engine, as small immutable records.

Drivers drain them with ``Engine.next_event()``: the daemon turns them into log
lines, VICI events and metrics, the simulator into its trace, tests into
assertions. They carry ids and names, never key material.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Event:
    """Base class; ``time`` is the engine time the event happened at."""

    time: float


@dataclass(frozen=True, slots=True)
class IkeSaUp(Event):
    ike_uid: int
    name: str
    spi_i: bytes
    spi_r: bytes
    local: Address
    remote: Address
    initiator: bool
    local_id: str
    remote_id: str
    suite: str
    #: set when this SA replaced another by an IKE rekey
    rekeyed_from: int | None = None


@dataclass(frozen=True, slots=True)
class IkeSaDown(Event):
    ike_uid: int
    name: str
    spi_i: bytes
    spi_r: bytes
    #: why: "deleted", "peer-deleted", "dead-peer", "rekeyed", "auth-failed", "qcd",
    #: "initial-contact", "failed", "shutdown", "expired", "timeout"
    reason: str
    #: the tunnel was up (False for setups that failed)
    established: bool = True


@dataclass(frozen=True, slots=True)
class ChildSaUp(Event):
    ike_uid: int
    child_uid: int
    name: str
    spi_in: bytes
    spi_out: bytes
    local_ts: tuple[str, ...]
    remote_ts: tuple[str, ...]
    suite: str
    rekeyed_from: int | None = None


@dataclass(frozen=True, slots=True)
class ChildSaDown(Event):
    ike_uid: int
    child_uid: int
    name: str
    spi_in: bytes
    spi_out: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class IkeSetupFailed(Event):
    """An initiation or a responder-side setup failed (no SA became established)."""

    name: str
    reason: str
    notify: int | None = None
    ike_uid: int | None = None


@dataclass(frozen=True, slots=True)
class ChildSetupFailed(Event):
    ike_uid: int
    name: str
    reason: str
    notify: int | None = None


@dataclass(frozen=True, slots=True)
class MessageTrace(Event):
    """One IKE message sent or received (only when tracing is on)."""

    ike_uid: int | None
    sent: bool
    exchange: str
    response: bool
    message_id: int
    payloads: tuple[str, ...]
    local: Address
    remote: Address
    spi_i: bytes
    spi_r: bytes
    protected: bool
    size: int


@dataclass(frozen=True, slots=True)
class Dropped(Event):
    """A datagram the engine refused; ``reason`` is the counter name."""

    reason: str
    remote: Address
    detail: str = ""


@dataclass(frozen=True, slots=True)
class LivenessCheck(Event):
    ike_uid: int
    why: str  # "dpd", "hint-invalid-spi", "hint-invalid-ike-spi", "manual", extension names


@dataclass(frozen=True, slots=True)
class PeerDead(Event):
    ike_uid: int
    name: str
    remote: Address


@dataclass(frozen=True, slots=True)
class Retransmit(Event):
    ike_uid: int
    exchange: str
    message_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class ExtensionEvent(Event):
    """Events of plug-ins (QCD) that drivers pass on without knowing their meaning."""

    source: str
    kind: str
    ike_uid: int | None = None
    attrs: dict[str, object] = field(default_factory=dict)
