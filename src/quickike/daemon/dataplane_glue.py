"""``dataplane = userspace`` in ``quickike run``: TUN device, ESP on the NAT-T socket, reports.

The engine only sees the :class:`~quickike.engine.dataplane.DataPlane` methods; this module
does the rest of the wiring, in the daemon's event loop and on its clock:

* the TUN device (``quickike { tun { name, mtu, addresses, ... } }``) is read by the data
  plane itself (``add_reader``), so outbound packets never pass through the daemon;
* the IPv4 port-4500 socket is read by the data plane too (one ``recvmsg_into`` into a reused
  buffer per datagram), which hands the IKE datagrams among them back here with the address
  they were sent to; the daemon keeps reading port 500 and the IPv6 sockets, and passes ESP it
  finds there to :meth:`UserspaceDataPlane.receive_esp`;
* the data plane's reports become engine calls: a packet that hit a trap ->
  :meth:`Engine.acquire` with the packet's selectors, ESP for an unknown SPI ->
  :meth:`Engine.unknown_esp_spi` (which answers INVALID_SPI, or QCD's token), a byte or packet
  lifetime -> :meth:`Engine.child_expired`.  Acquires and expiries are deferred with
  ``call_soon``: the data plane can report them from inside an engine call (installing an SA
  releases held packets), and the engine must not be re-entered.

Packets that hit a trap wait in a bounded queue (``tun.queue``) for at most ``tun.hold``
seconds, and are dropped at once when the set-up fails: a queue that outlives its reason
would deliver minutes-old packets.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..control.config.errors import config_error
from ..control.config.values import parse_bool, parse_duration, parse_int, parse_list
from ..crypto.proposals import format_proposal
from ..dataplane.esp import supported
from ..dataplane.spd import PacketSummary
from ..dataplane.tun import DEFAULT_MTU, PacketIO, TunDevice
from ..dataplane.userspace import UserspaceDataPlane
from ..engine import events as ev
from ..engine.config import QuickikeConfig
from ..engine.dataplane import Expiry, IPAddress, Selector, TrapSpec
from ..engine.policy import runnable_specs
from ..wire.enums import ProtocolId
from .sockets import source_address_for

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("quickike.dataplane")

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

#: ``quickike { tun { } }`` keys and what they are
TUN_KEYS = ("name", "mtu", "addresses", "install_routes", "queue", "hold")


@dataclass(frozen=True, slots=True)
class TunSettings:
    """``quickike { tun { } }`` for ``dataplane = userspace``."""

    #: interface name; ``%d`` lets the kernel number it
    name: str = "quickike%d"
    mtu: int = DEFAULT_MTU
    #: addresses for the interface itself (a gateway that only forwards needs none)
    addresses: tuple[IPInterface, ...] = ()
    #: route the remote traffic selectors of CHILD SAs and traps into the device
    install_routes: bool = True
    #: packets held per trap while its tunnel is being set up
    queue: int = 32
    #: seconds they are held at most
    hold: float = 2.0


def tun_settings(config: QuickikeConfig) -> TunSettings:
    """The typed ``tun { }`` section; a bad value is a ConfigError naming its file:line."""
    raw = config.settings.extra.get("tun")
    if raw is None:
        return TunSettings()
    if not isinstance(raw, Mapping):
        raise config_error(config, "quickike.tun", "must be a section")

    def get(key: str, parse: Callable[[str], object], default: object) -> object:
        value = raw.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise config_error(config, f"quickike.tun.{key}", "must be a value, not a section")
        try:
            return parse(value)
        except ValueError as e:
            raise config_error(config, f"quickike.tun.{key}", str(e)) from None

    for key in raw:
        if key not in TUN_KEYS:
            raise config_error(config, f"quickike.tun.{key}",
                               f"unknown setting (known: {', '.join(TUN_KEYS)})")
    default = TunSettings()
    name = get("name", _ifname, default.name)
    mtu = get("mtu", lambda t: parse_int(t, 576, 65535), DEFAULT_MTU)
    addresses = get("addresses", lambda t: tuple(ipaddress.ip_interface(a) for a in parse_list(t)),
                    ())
    routes = get("install_routes", parse_bool, True)
    queue = get("queue", lambda t: parse_int(t, 0, 4096), default.queue)
    hold = get("hold", parse_duration, default.hold)
    assert isinstance(name, str) and isinstance(mtu, int) and isinstance(addresses, tuple)
    assert isinstance(routes, bool) and isinstance(queue, int) and isinstance(hold, float | int)
    return TunSettings(name, mtu, addresses, routes, queue, float(hold))


def _ifname(text: str) -> str:
    if not text or len(text.encode()) > 15 or "/" in text or text.strip() != text:
        raise ValueError(f"'{text}' is not an interface name (1-15 characters, no '/')")
    return text


def check_esp_proposals(config: QuickikeConfig) -> list[str]:
    """Refuse CHILD configurations the userspace data plane cannot run; warn about parts.

    Returns warnings for proposals that lose transforms (the engine proposes only what
    the data plane runs); raises ConfigError for a CHILD left with nothing.
    """
    from ..crypto.proposals import parse_proposals

    warnings: list[str] = []
    for conn in config.connections.values():
        for child in conn.children:
            specs = [s for text in child.esp_proposals
                     for s in parse_proposals(text, ProtocolId.ESP)]
            kept = runnable_specs(specs, supported)
            key = f"connections.{conn.name}.children.{child.name}.esp_proposals"
            if not kept:
                raise config_error(config, key, "no proposal the userspace data plane can run "
                                   "(it does AES-GCM-16, ChaCha20-Poly1305, AES-CBC with "
                                   "HMAC-SHA1/SHA2)")
            if kept != specs:
                warnings.append(f"{key}: proposing only {', '.join(map(format_proposal, kept))} "
                                "(what the userspace data plane runs)")
    return warnings


def packet_selectors(p: PacketSummary | None) -> tuple[Selector, Selector] | None:
    """The triggering packet as (source, destination) selectors for TSi/TSr (RFC 7296 §2.9)."""
    if p is None:
        return None
    ported = p.src_port is not None and p.dst_port is not None and p.protocol not in (1, 58)
    sp = (p.src_port, p.src_port) if ported and p.src_port is not None else (0, 65535)
    dp = (p.dst_port, p.dst_port) if ported and p.dst_port is not None else (0, 65535)
    return (Selector(p.src, p.src, p.protocol, *sp), Selector(p.dst, p.dst, p.protocol, *dp))


class UserspaceGlue:
    """One daemon's userspace data plane and its wiring; see the module docstring."""

    def __init__(self, daemon: Daemon, *, tun: PacketIO | None = None) -> None:
        config = daemon.config
        self.settings = self.check(config)
        self.daemon = daemon
        self._own_tun = tun is None
        if tun is None:
            s = self.settings
            tun = TunDevice.open(s.name, mtu=s.mtu, addresses=s.addresses)
            log.info("TUN device %s up (mtu %d)", tun.name, s.mtu)
        self.tun = tun
        self._send4: Callable[[memoryview, tuple[str, int]], object] = _no_socket
        self._send6: Callable[[memoryview, tuple[str, int]], object] = _no_socket
        self._nat_t_port = config.settings.port_nat_t
        self._nat_t_host = ""
        self._holds: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self.dataplane = UserspaceDataPlane(
            tun,
            self._sendto,
            now=daemon.now,
            on_acquire=self._acquire,
            on_unknown_spi=self._unknown_spi,
            on_expire=self._expire,
            on_ike_to=self._ike,
            trap_queue_limit=self.settings.queue,
            install_routes=self.settings.install_routes,
        )
        self.attached = False

    @staticmethod
    def check(config: QuickikeConfig) -> TunSettings:
        """Refuse what this data plane cannot do (ConfigError); log what it leaves out.

        ``tun`` settings take effect at the next start: the device stays as it is on a reload.
        """
        settings = tun_settings(config)
        for w in check_esp_proposals(config):
            log.warning("%s", w)
        return settings

    # -- life cycle --------------------------------------------------------------------------

    def attach(self) -> None:
        """Start reading TUN and the IPv4 NAT-T socket (the daemon's sockets are open now)."""
        d = self.daemon
        assert d.loop is not None
        v4 = d.sockets.get((socket.AF_INET, self._nat_t_port))
        v6 = d.sockets.get((socket.AF_INET6, self._nat_t_port))
        if v4 is not None:
            self._send4 = v4.sock.sendto
            self._nat_t_host = v4.host
            d.loop.remove_reader(v4.fileno())  # the data plane reads it from now on
        if v6 is not None:
            self._send6 = v6.sock.sendto
        self.dataplane.attach(d.loop, v4.sock if v4 is not None else None)
        d.observers.append(self.observe)
        self.attached = True

    def close(self) -> None:
        d = self.daemon
        for handle in self._holds.values():
            handle.cancel()
        self._holds.clear()
        if self.attached and d.loop is not None:
            self.dataplane.detach(d.loop)
            self.attached = False
        if self._own_tun and isinstance(self.tun, TunDevice):
            self.tun.close()

    # -- data plane -> engine ----------------------------------------------------------------

    def _sendto(self, data: memoryview, peer: tuple[str, int]) -> object:
        return (self._send6 if ":" in peer[0] else self._send4)(data, peer)

    def _ike(self, data: bytes, src: tuple[IPAddress, int], local: str) -> None:
        d = self.daemon
        eng = d.engine
        if eng is None:
            return
        eng.receive_datagram(data[4:], (local, self._nat_t_port), (str(src[0]), src[1]), d.now())
        d.pump()

    def _unknown_spi(self, spi: bytes, src: tuple[IPAddress, int], now: float) -> None:
        d = self.daemon
        eng = d.engine
        if eng is None:
            return
        remote = (str(src[0]), src[1])
        local = self._nat_t_host or source_address_for(remote[0]) or (
            "::" if ":" in remote[0] else "0.0.0.0")
        eng.unknown_esp_spi(spi, (local, self._nat_t_port), remote, now)
        d.pump()

    def _acquire(self, trap: TrapSpec, packet: PacketSummary | None) -> None:
        d = self.daemon
        assert d.loop is not None
        d.loop.call_soon(self._acquire_now, trap, packet_selectors(packet))
        key = (trap.ike_name, trap.child_name)
        old = self._holds.pop(key, None)
        if old is not None:
            old.cancel()
        self._holds[key] = d.loop.call_later(self.settings.hold, self._hold_over, key)

    def _acquire_now(self, trap: TrapSpec, packet: tuple[Selector, Selector] | None) -> None:
        d = self.daemon
        if d.engine is None:
            return
        uid = d.engine.acquire(trap.ike_name, trap.child_name, d.now(), packet)
        log.debug("acquire %s/%s: IKE SA %s", trap.ike_name, trap.child_name, uid)
        d.pump()

    def _hold_over(self, key: tuple[str, str]) -> None:
        self._holds.pop(key, None)
        self._drop_held(*key, why="not up in time")

    def _drop_held(self, ike_name: str, child_name: str, why: str) -> None:
        n = self.dataplane.drop_trapped(ike_name, child_name)
        if n:
            log.info("dropped %d packets held for %s/%s: %s", n, ike_name, child_name, why)

    def _expire(self, spi_in: bytes, kind: Expiry) -> None:
        d = self.daemon
        assert d.loop is not None
        d.loop.call_soon(self._expire_now, spi_in, kind)

    def _expire_now(self, spi_in: bytes, kind: Expiry) -> None:
        d = self.daemon
        if d.engine is not None:
            d.engine.child_expired(spi_in, kind, d.now())
            d.pump()

    # -- engine events -----------------------------------------------------------------------

    def observe(self, e: ev.Event) -> None:
        """A set-up that failed releases the packets held for it (dropped, counted)."""
        if isinstance(e, ev.IkeSetupFailed):
            conn = self.daemon.config.connections.get(e.name)
            for child in conn.children if conn is not None else ():
                self._drop_held(e.name, child.name, why=e.reason)
        elif isinstance(e, ev.ChildSetupFailed):
            for conn in self.daemon.config.connections.values():
                if conn.child(e.name) is not None:
                    self._drop_held(conn.name, e.name, why=e.reason)


def _no_socket(data: memoryview, peer: tuple[str, int]) -> object:
    raise OSError(f"no NAT-T socket for {peer[0]}")

