"""The engine's only view of the packets it protects.

The engine negotiates CHILD SAs; a data plane moves the packets.  Keeping the
boundary this narrow lets one engine drive userspace ESP over TUN, kernel
XFRM, the simulator's virtual traffic and a recording stub in tests.

Data plane -> engine notifications are plain method calls on the engine
(``Engine.acquire``, ``Engine.unknown_esp_spi``, ``Engine.child_expired``) made
by the driver that owns both, so the engine stays free of callbacks into
I/O code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

IPAddress = IPv4Address | IPv6Address


@dataclass(frozen=True, slots=True)
class Selector:
    """One traffic selector range (RFC 7296 §3.13.1) in data-plane form."""

    start: IPAddress
    end: IPAddress
    protocol: int = 0  # 0 = any
    start_port: int = 0
    end_port: int = 65535

    def contains(self, addr: IPAddress, protocol: int = 0, port: int | None = None) -> bool:
        if addr.version != self.start.version or not (self.start <= addr <= self.end):  # type: ignore[operator]
            return False
        if self.protocol and protocol and self.protocol != protocol:
            return False
        return port is None or self.start_port <= port <= self.end_port


class Mode(enum.Enum):
    TUNNEL = "tunnel"
    TRANSPORT = "transport"


@dataclass(frozen=True, slots=True)
class ChildSaSpec:
    """Everything a data plane needs to protect one CHILD SA pair.

    ``*_in`` protect packets from the peer to us, ``*_out`` from us to the
    peer, whichever side initiated.  Keys are raw keying material as cut from
    KEYMAT (for AEAD: key followed by salt).
    """

    ike_uid: int
    child_uid: int
    name: str
    spi_in: bytes
    spi_out: bytes
    encr_id: int
    encr_key_bits: int
    integ_id: int  # 0 = none (AEAD)
    esn: bool
    encr_key_in: bytes = field(repr=False)
    integ_key_in: bytes = field(repr=False)
    encr_key_out: bytes = field(repr=False)
    integ_key_out: bytes = field(repr=False)
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]
    local_addr: tuple[IPAddress, int]
    remote_addr: tuple[IPAddress, int]
    encap: bool
    mode: Mode = Mode.TUNNEL
    #: soft/hard lifetimes in bytes and packets; 0 = unlimited
    soft_bytes: int = 0
    hard_bytes: int = 0
    soft_packets: int = 0
    hard_packets: int = 0


@dataclass(slots=True)
class ChildCounters:
    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0
    #: driver-clock time of the last authenticated inbound/outbound packet, None if none yet
    last_in: float | None = None
    last_out: float | None = None


@dataclass(frozen=True, slots=True)
class TrapSpec:
    """A policy without an SA: matching outbound traffic asks the engine for one."""

    ike_name: str
    child_name: str
    local_ts: tuple[Selector, ...]
    remote_ts: tuple[Selector, ...]


class Expiry(enum.Enum):
    SOFT = "soft"
    HARD = "hard"


#: (ESP encryption id, key bits, integrity id or 0) -> whether a data plane can run it
EspTransformCheck = Callable[[int, int, int], bool]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a data plane cannot do, so that the engine never negotiates it.

    strongSwan's kernel interfaces announce the same (kernel-libipsec:
    ``KERNEL_REQUIRE_UDP_ENCAPSULATION``).  A data plane without a
    ``capabilities`` attribute is taken to do everything the engine knows.
    """

    #: ESP only inside UDP (RFC 3948): every IKE SA fakes NAT detection and moves
    #: to the NAT-T port, as ``encap = yes`` does for one connection
    udp_encap_only: bool = False
    #: ESP transforms it can run; None: all of them
    esp_transform: EspTransformCheck | None = None


def capabilities_of(dataplane: object) -> Capabilities:
    caps = getattr(dataplane, "capabilities", None)
    return caps if isinstance(caps, Capabilities) else Capabilities()


class DataPlane(Protocol):
    def install_child(self, spec: ChildSaSpec) -> None: ...

    def remove_child(self, spi_in: bytes) -> None: ...

    def update_addresses(
        self,
        spi_in: bytes,
        local: tuple[IPAddress, int],
        remote: tuple[IPAddress, int],
        encap: bool,
    ) -> None: ...

    def counters(self, spi_in: bytes) -> ChildCounters | None: ...

    def install_trap(self, trap: TrapSpec) -> None: ...

    def remove_trap(self, ike_name: str, child_name: str) -> None: ...


@dataclass(slots=True)
class RecordingDataPlane:
    """A data plane that records what the engine asked for.

    Used by engine tests and the kernel-less demo; traffic counters can be set
    by a test (or the simulator) to emulate inbound/outbound packets.
    """

    children: dict[bytes, ChildSaSpec] = field(default_factory=dict)
    traps: dict[tuple[str, str], TrapSpec] = field(default_factory=dict)
    stats: dict[bytes, ChildCounters] = field(default_factory=dict)
    log: list[tuple[str, object]] = field(default_factory=list)

    def install_child(self, spec: ChildSaSpec) -> None:
        self.children[spec.spi_in] = spec
        self.stats.setdefault(spec.spi_in, ChildCounters())
        self.log.append(("install", spec))

    def remove_child(self, spi_in: bytes) -> None:
        self.children.pop(spi_in, None)
        self.stats.pop(spi_in, None)
        self.log.append(("remove", spi_in))

    def update_addresses(
        self,
        spi_in: bytes,
        local: tuple[IPAddress, int],
        remote: tuple[IPAddress, int],
        encap: bool,
    ) -> None:
        self.log.append(("update", (spi_in, local, remote, encap)))

    def counters(self, spi_in: bytes) -> ChildCounters | None:
        return self.stats.get(spi_in)

    def install_trap(self, trap: TrapSpec) -> None:
        self.traps[(trap.ike_name, trap.child_name)] = trap
        self.log.append(("trap", trap))

    def remove_trap(self, ike_name: str, child_name: str) -> None:
        self.traps.pop((ike_name, child_name), None)
        self.log.append(("untrap", (ike_name, child_name)))

    def traffic(self, spi_in: bytes, now: float, *, inbound: int = 0, outbound: int = 0) -> None:
        """Pretend packets flowed (tests and the simulator)."""
        c = self.stats.get(spi_in)
        if c is None:
            return
        if inbound:
            c.packets_in += inbound
            c.bytes_in += 100 * inbound
            c.last_in = now
        if outbound:
            c.packets_out += outbound
            c.bytes_out += 100 * outbound
            c.last_out = now


class NullDataPlane:
    """No data plane (``dataplane = none``): CHILD SAs are negotiated, nothing is kept.

    A gateway that only speaks IKE (or a load test) must not pay per CHILD SA for a
    record nobody reads, as :class:`RecordingDataPlane` would.
    """

    __slots__ = ()

    def install_child(self, spec: ChildSaSpec) -> None:
        return None

    def remove_child(self, spi_in: bytes) -> None:
        return None

    def update_addresses(
        self,
        spi_in: bytes,
        local: tuple[IPAddress, int],
        remote: tuple[IPAddress, int],
        encap: bool,
    ) -> None:
        return None

    def counters(self, spi_in: bytes) -> ChildCounters | None:
        return None

    def install_trap(self, trap: TrapSpec) -> None:
        return None

    def remove_trap(self, ike_name: str, child_name: str) -> None:
        return None
