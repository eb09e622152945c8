"""Userspace ESP-in-UDP over a TUN device: the data plane for kernels without ESP.

Hot paths, both run to ``BlockingIOError`` or a batch limit per wake-up:

* outbound, :meth:`UserspaceDataPlane.tun_readable`: TUN read -> SPD lookup
  -> ESP seal -> ``sendto`` the peer's port 4500;
* inbound, :meth:`UserspaceDataPlane.udp_readable` (the data plane reads the
  port-4500 socket itself and hands IKE datagrams to the daemon) or
  :meth:`UserspaceDataPlane.receive_esp` (the daemon reads and hands ESP
  over): SPI lookup -> replay check -> ICV/decrypt -> selector check -> TUN
  write.

Each direction reuses one receive and one send buffer, so a packet costs no
allocations beyond a few small ints and views.  The clock is a ``now()``
callable read once per batch, so tests drive it.

Reports to the engine (``on_acquire``, ``on_unknown_spi``, ``on_expire``) are
queued while a batch runs and delivered when it ends: a callback that
installs or removes SAs then never changes the tables under a running
lookup.

Threads: each direction takes its own lock once per batch, so the outbound
path (``tun_readable``, ``send_packet``, releasing trapped packets) and the
inbound path (``udp_readable``, ``receive_esp``) may each run on their own
thread, with the DataPlane methods called from a third.  The locks keep one
writer per SA direction: two threads sealing with one SA could otherwise
hand out one sequence number, and so one AES-GCM nonce, twice.  Callbacks
run on the thread whose batch produced them.

Tunnel mode only (TUN carries whole IP packets) and UDP encapsulation only
(RFC 3948; the kernel here has no ESP protocol to receive raw ESP with).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_address, summarize_address_range
from typing import TYPE_CHECKING, Any

from quickike.dataplane.errors import (
    AuthenticationFailed,
    MalformedPacket,
    SaExpired,
    UnsupportedSa,
)
from quickike.dataplane.esp import (
    MAX_HEADROOM,
    MAX_TAILROOM,
    NH_DUMMY,
    NH_IPV4,
    NH_IPV6,
    EspDecryptor,
    EspEncryptor,
    RandomBytes,
    decryptor_for,
    encryptor_for,
    supported,
)
from quickike.dataplane.replay import DEFAULT_WINDOW, ReplayError
from quickike.dataplane.spd import (
    PacketSummary,
    SelectorTable,
    Spd,
    TrapQueue,
    inbound_table,
    summarize,
)
from quickike.dataplane.tun import PacketIO
from quickike.engine.dataplane import (
    Capabilities,
    ChildCounters,
    ChildSaSpec,
    Expiry,
    IPAddress,
    Mode,
    Selector,
    TrapSpec,
)

if TYPE_CHECKING:
    import asyncio

__all__ = ["DataPlaneStats", "UserspaceDataPlane"]

#: Largest IP packet a TUN read can return.
MAX_PACKET = 65535
_U32 = struct.Struct("!I")
_UNKNOWN_SPI_TRACKED = 4096
_IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux; Python 3.11 does not export it
#: room for one in_pktinfo (12 octets) or in6_pktinfo (20 octets)
_CMSG_SPACE = socket.CMSG_SPACE(20)

SockAddr = tuple[Any, ...]
SendTo = Callable[[memoryview, tuple[str, int]], object]
AcquireHook = Callable[[TrapSpec, PacketSummary | None], None]
UnknownSpiHook = Callable[[bytes, tuple[IPAddress, int], float], None]
ExpireHook = Callable[[bytes, Expiry], None]
IkeHook = Callable[[bytes, tuple[IPAddress, int]], None]
#: like IkeHook, plus our own address the datagram was sent to
IkeToHook = Callable[[bytes, tuple[IPAddress, int], str], None]
IPNetwork = IPv4Network | IPv6Network


@dataclass(slots=True)
class DataPlaneStats:
    """Why packets went where they went; all counters only grow."""

    tun_in: int = 0
    esp_out: int = 0
    no_policy: int = 0
    trapped: int = 0
    released: int = 0
    send_dropped: int = 0
    send_errors: int = 0
    udp_in: int = 0
    ike_in: int = 0
    keepalives_in: int = 0
    invalid_in: int = 0
    esp_in: int = 0
    unknown_spi: int = 0
    replayed: int = 0
    auth_failed: int = 0
    malformed: int = 0
    expired_drops: int = 0
    dummy: int = 0
    bad_next_header: int = 0
    policy_mismatch: int = 0
    tun_out: int = 0
    tun_errors: int = 0
    udp_errors: int = 0
    #: unknown-SPI packets not reported because of the per-SPI or overall limits
    unknown_spi_suppressed: int = 0
    #: packets a trap held that were dropped because their SA did not come in time
    trap_dropped: int = 0


@dataclass(slots=True, eq=False)
class _Child:
    spec: ChildSaSpec = field(repr=False)  # holds keys: never in a repr or a log line
    enc: EspEncryptor = field(repr=False)
    dec: EspDecryptor = field(repr=False)
    counters: ChildCounters
    inbound: SelectorTable[bool]
    peer: tuple[str, int]
    soft: bool = False
    hard: bool = False


def _local_of(anc: list[tuple[int, int, bytes]], sock: socket.socket) -> str:
    """Our address from IP_PKTINFO / IPV6_PKTINFO, else what the socket is bound to."""
    for level, ctype, data in anc:
        if level == socket.IPPROTO_IP and ctype == _IP_PKTINFO and len(data) >= 12:
            return socket.inet_ntop(socket.AF_INET, data[8:12])
        if level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_PKTINFO and len(data) >= 16:
            return socket.inet_ntop(socket.AF_INET6, data[:16])
    return str(sock.getsockname()[0])


def _peer(addr: tuple[IPAddress, int]) -> tuple[str, int]:
    return (str(addr[0]), addr[1])


def _networks(selectors: Iterable[Selector]) -> list[IPNetwork]:
    nets: list[IPNetwork] = []
    for s in selectors:
        nets.extend(summarize_address_range(s.start, s.end))
    return nets


class UserspaceDataPlane:
    """The :class:`~quickike.engine.dataplane.DataPlane` of userspace ESP over TUN."""

    #: ESP in UDP only, and only the transforms of :mod:`quickike.dataplane.esp`
    capabilities = Capabilities(udp_encap_only=True, esp_transform=supported)

    def __init__(
        self,
        tun: PacketIO,
        sendto: SendTo,
        *,
        now: Callable[[], float],
        on_acquire: AcquireHook | None = None,
        on_unknown_spi: UnknownSpiHook | None = None,
        on_expire: ExpireHook | None = None,
        sock: socket.socket | None = None,
        on_ike_datagram: IkeHook | None = None,
        on_ike_to: IkeToHook | None = None,
        random_bytes: RandomBytes = os.urandom,
        replay_window: int = DEFAULT_WINDOW,
        trap_queue_limit: int = 32,
        acquire_interval: float = 5.0,
        unknown_spi_interval: float = 1.0,
        unknown_spi_burst: int = 32,
        install_routes: bool = False,
        batch: int = 64,
    ) -> None:
        """``sendto(view, (host, port))`` sends one datagram from port 4500.

        ``sock`` (the port-4500 socket) is needed only for :meth:`udp_readable`;
        datagrams it reads that are IKE go to ``on_ike_datagram`` unchanged
        (non-ESP marker included).  ``on_ike_to`` instead also gets the address
        they were sent to, which an IKE daemon on a wildcard socket needs; the
        socket must then have IP_PKTINFO (IPV6_RECVPKTINFO) on, and reading
        costs a ``recvmsg_into`` instead of a ``recvfrom_into`` (about 0.5 us
        a datagram, ``bench/bench_throughput.py --inbound``).
        ``acquire_interval`` is how long a trap
        waits before asking again; ``unknown_spi_interval`` how long before
        the same unknown SPI is reported again, and at most
        ``unknown_spi_burst`` different SPIs are reported per interval (a flood
        of random SPIs must not turn into a flood of engine work).  With
        ``install_routes`` the
        remote selectors of SAs and traps are routed into the TUN device.
        """
        self._tun = tun
        self._sendto = sendto
        self._now = now
        self._on_acquire = on_acquire
        self._on_unknown_spi = on_unknown_spi
        self._on_expire = on_expire
        self._sock = sock
        self._on_ike = on_ike_datagram
        self._on_ike_to = on_ike_to
        self._random = random_bytes
        self._window = replay_window
        self._acquire_interval = acquire_interval
        self._unknown_interval = unknown_spi_interval
        self._unknown_burst = unknown_spi_burst
        self._unknown_epoch = float("-inf")
        self._unknown_in_epoch = 0
        self._install_routes = install_routes
        self._batch = batch
        self._spd: Spd[_Child] = Spd(trap_queue_limit)
        self._events: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._unknown_seen: dict[int, float] = {}
        self._routes: dict[IPNetwork, int] = {}
        self._out_lock = threading.Lock()
        self._in_lock = threading.Lock()
        self.stats = DataPlaneStats()
        # outbound: plaintext (+ trailer room) in, ESP out
        self._out_plain = memoryview(bytearray(MAX_PACKET + MAX_TAILROOM))
        self._out_read = self._out_plain[:MAX_PACKET]
        self._out_esp = memoryview(bytearray(MAX_PACKET + MAX_HEADROOM + MAX_TAILROOM))
        # inbound: ESP in, plaintext out
        self._in_esp = memoryview(bytearray(MAX_PACKET + MAX_HEADROOM + MAX_TAILROOM))
        self._in_plain = memoryview(bytearray(MAX_PACKET + MAX_HEADROOM + MAX_TAILROOM))

    # --- DataPlane protocol ------------------------------------------------------------
    def install_child(self, spec: ChildSaSpec) -> None:
        """Install both SAs of a CHILD SA and release packets its traps held."""
        if spec.mode is not Mode.TUNNEL:
            raise UnsupportedSa("the TUN data plane only does tunnel mode")
        if not spec.encap:
            raise UnsupportedSa("the userspace data plane needs UDP encapsulation (RFC 3948)")
        spi_in = bytes(spec.spi_in)
        counters = ChildCounters()

        def expired(kind: Expiry) -> None:
            self._expired(spi_in, kind)

        enc = encryptor_for(spec, counters=counters, on_expiry=expired, random_bytes=self._random)
        dec = decryptor_for(spec, counters=counters, on_expiry=expired, window=self._window)
        child = _Child(
            spec,
            enc,
            dec,
            counters,
            inbound_table(spec.local_ts, spec.remote_ts),
            _peer(spec.remote_addr),
        )
        old = self._spd.remove_sa(spi_in)
        if old is not None:
            self._unroute(old.spec.remote_ts)
        self._spd.add_sa(spi_in, spec.local_ts, spec.remote_ts, child)
        self._route(spec.remote_ts)
        with self._out_lock:
            self._release(self._now())
        self._flush()

    def remove_child(self, spi_in: bytes) -> None:
        child = self._spd.remove_sa(spi_in)
        if child is not None:
            self._unroute(child.spec.remote_ts)

    def update_addresses(
        self,
        spi_in: bytes,
        local: tuple[IPAddress, int],
        remote: tuple[IPAddress, int],
        encap: bool,
    ) -> None:
        """MOBIKE or a NAT mapping change: send to the new address from now on."""
        if not encap:
            raise UnsupportedSa("the userspace data plane needs UDP encapsulation (RFC 3948)")
        child = self._child(spi_in)
        if child is None:
            return
        child.spec = dataclasses.replace(child.spec, local_addr=local, remote_addr=remote)
        child.peer = _peer(remote)

    def counters(self, spi_in: bytes) -> ChildCounters | None:
        """A snapshot, so the engine can compare it with a later one."""
        child = self._child(spi_in)
        return None if child is None else dataclasses.replace(child.counters)

    def install_trap(self, trap: TrapSpec) -> None:
        with self._out_lock:  # the outbound path pushes into trap queues
            old = self._spd.trap_for_name(trap.ike_name, trap.child_name)
            self._spd.add_trap(trap)  # takes over what ``old`` held
        if old is not None:
            self._unroute(old.trap.remote_ts)
        self._route(trap.remote_ts)

    def remove_trap(self, ike_name: str, child_name: str) -> None:
        with self._out_lock:
            tq = self._spd.remove_trap(ike_name, child_name)
        if tq is not None:
            self._unroute(tq.trap.remote_ts)

    # --- introspection -----------------------------------------------------------------
    def trap_queue(self, ike_name: str, child_name: str) -> TrapQueue | None:
        return self._spd.trap_for_name(ike_name, child_name)

    def children(self) -> list[ChildSaSpec]:
        return [c.spec for c in self._spd.sas()]

    def drop_trapped(self, ike_name: str, child_name: str) -> int:
        """Drop the packets a trap holds (its SA will not come soon); return how many."""
        with self._out_lock:
            tq = self._spd.trap_for_name(ike_name, child_name)
            if tq is None or not tq.packets:
                return 0
            n = len(tq.packets)
            tq.dropped += n
            tq.packets = deque()
            tq.last_acquire = None
        self.stats.trap_dropped += n
        return n

    # --- driver entry points -----------------------------------------------------------
    def tun_fileno(self) -> int:
        return self._tun.fileno()

    def udp_fileno(self) -> int | None:
        return None if self._sock is None else self._sock.fileno()

    def attach(self, loop: asyncio.AbstractEventLoop, sock: socket.socket | None = None) -> None:
        """Run on ``loop``: readers on the TUN fd and, if given, the UDP socket.

        ``sock`` replaces the socket given at construction (a daemon opens its
        port-4500 socket after it has built the engine around this data plane).
        """
        if sock is not None:
            self._sock = sock
        loop.add_reader(self._tun.fileno(), self.tun_readable)
        if self._sock is not None:
            loop.add_reader(self._sock.fileno(), self.udp_readable)

    def detach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._tun.fileno())
        if self._sock is not None:
            loop.remove_reader(self._sock.fileno())

    def tun_readable(self) -> int:
        """Protect and send what the TUN device has (up to one batch); return the count read."""
        with self._out_lock:
            count = self._tun_batch()
        if self._events:
            self._flush()
        return count

    def _tun_batch(self) -> int:
        now = self._now()
        tun = self._tun
        plain = self._out_plain
        read_view = self._out_read
        esp = self._out_esp
        lookup = self._spd.out_table.lookup
        send = self._sendto
        stats = self.stats
        count = sent = 0
        for _ in range(self._batch):
            try:
                n = tun.readinto(read_view)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                stats.tun_errors += 1
                break
            count += 1
            child = lookup(plain, 0, n)
            if child is None:
                self._no_sa(n, now)
                continue
            try:
                end = child.enc.seal_into(
                    plain, 0, n, NH_IPV4 if plain[0] >> 4 == 4 else NH_IPV6, esp, now
                )
            except SaExpired:
                stats.expired_drops += 1
                continue
            try:
                send(esp[:end], child.peer)
            except (BlockingIOError, InterruptedError):
                stats.send_dropped += 1
                continue
            except OSError:
                stats.send_errors += 1
                continue
            sent += 1
        stats.tun_in += count
        stats.esp_out += sent
        return count

    def udp_readable(self) -> int:
        """Handle what the port-4500 socket has (up to one batch); return the count read."""
        if self._sock is None:
            raise RuntimeError("udp_readable needs the socket given at construction")
        with self._in_lock:
            count = self._udp_batch(self._sock)
        if self._events:
            self._flush()
        return count

    def _udp_batch(self, sock: socket.socket) -> int:
        now = self._now()
        buf = self._in_esp
        stats = self.stats
        count = 0
        pktinfo = self._on_ike_to is not None
        bufs = (buf,)
        anc: list[tuple[int, int, bytes]] = []
        for _ in range(self._batch):
            try:
                if pktinfo:
                    n, anc, _flags, addr = sock.recvmsg_into(bufs, _CMSG_SPACE)
                else:
                    n, addr = sock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                stats.udp_errors += 1
                break
            count += 1
            # wire.framing.classify_marked's rules, on the reused buffer without a view
            if n >= 8 and (buf[0] or buf[1] or buf[2] or buf[3]):
                self._esp_in(buf, n, addr, now)
            elif n == 1 and buf[0] == 0xFF:
                stats.keepalives_in += 1
            elif n >= 4 and not (buf[0] or buf[1] or buf[2] or buf[3]):
                stats.ike_in += 1
                if self._on_ike_to is not None:
                    self._emit(self._on_ike_to, bytes(buf[:n]), (ip_address(addr[0]), addr[1]),
                               _local_of(anc, sock))
                elif self._on_ike is not None:
                    self._emit(self._on_ike, bytes(buf[:n]), (ip_address(addr[0]), addr[1]))
            else:
                stats.invalid_in += 1
        stats.udp_in += count
        return count

    def receive_esp(self, datagram: bytes | bytearray | memoryview, src: SockAddr) -> None:
        """One ESP datagram the daemon read from port 4500 (``src`` = its sockaddr)."""
        n = len(datagram)
        if n < 8:
            self.stats.invalid_in += 1
            return
        with self._in_lock:
            self.stats.udp_in += 1
            self._esp_in(memoryview(datagram), n, src, self._now())
        if self._events:
            self._flush()

    def send_packet(self, packet: bytes | bytearray | memoryview) -> None:
        """Treat ``packet`` as if read from the TUN device (tests, the simulator)."""
        n = len(packet)
        with self._out_lock:
            self._out_plain[:n] = packet
            now = self._now()
            child = self._spd.outbound(self._out_plain, 0, n)
            self.stats.tun_in += 1
            if child is None:
                self._no_sa(n, now)
            else:
                self._seal_send(child, self._out_plain, n, now)
        if self._events:
            self._flush()

    # --- internals ---------------------------------------------------------------------
    def _child(self, spi_in: bytes) -> _Child | None:
        return self._spd.inbound(_U32.unpack(spi_in)[0]) if len(spi_in) == 4 else None

    def _esp_in(self, pkt: memoryview, n: int, addr: SockAddr, now: float) -> None:
        stats = self.stats
        stats.esp_in += 1
        spi = _U32.unpack_from(pkt, 0)[0]
        child = self._spd.by_spi.get(spi)
        if child is None:
            self._unknown(spi, addr, now)
            return
        plain = self._in_plain
        try:
            nh, plen = child.dec.open_into(pkt, n, plain, now)
        except ReplayError:
            stats.replayed += 1
            return
        except AuthenticationFailed:
            stats.auth_failed += 1
            return
        except MalformedPacket:
            stats.malformed += 1
            return
        except SaExpired:
            stats.expired_drops += 1
            return
        if nh in (NH_IPV4, NH_IPV6):
            if plen < 20 or (plain[0] >> 4) != (4 if nh == NH_IPV4 else 6):
                stats.malformed += 1
                return
            if child.inbound.lookup(plain, 0, plen) is None:
                stats.policy_mismatch += 1
                return
            try:
                self._tun.write(plain[:plen])
            except OSError:
                stats.tun_errors += 1
                return
            stats.tun_out += 1
        elif nh == NH_DUMMY:
            stats.dummy += 1  # RFC 4303 §2.6: TFC dummy packets are dropped silently
        else:
            stats.bad_next_header += 1

    def _seal_send(self, child: _Child, plain: memoryview, n: int, now: float) -> bool:
        nh = NH_IPV4 if plain[0] >> 4 == 4 else NH_IPV6
        try:
            end = child.enc.seal_into(plain, 0, n, nh, self._out_esp, now)
        except SaExpired:
            self.stats.expired_drops += 1
            return False
        try:
            self._sendto(self._out_esp[:end], child.peer)
        except (BlockingIOError, InterruptedError):
            self.stats.send_dropped += 1
            return False
        except OSError:
            self.stats.send_errors += 1
            return False
        self.stats.esp_out += 1
        return True

    def _no_sa(self, n: int, now: float) -> None:
        plain = self._out_plain
        tq = self._spd.trap_for(plain, 0, n)
        if tq is None:
            self.stats.no_policy += 1
            return
        self.stats.trapped += 1
        tq.push(bytes(plain[:n]))
        if tq.last_acquire is None or now - tq.last_acquire >= self._acquire_interval:
            tq.last_acquire = now
            if self._on_acquire is not None:
                self._emit(self._on_acquire, tq.trap, summarize(plain, 0, n))

    def _release(self, now: float) -> None:
        """Send the held packets that now have an SA; keep the rest (out lock held)."""
        plain = self._out_plain
        for tq in self._spd.traps():
            if not tq.packets:
                continue
            keep: deque[bytes] = deque()
            for pkt in tq.packets:
                n = len(pkt)
                plain[:n] = pkt
                child = self._spd.outbound(plain, 0, n)
                if child is None:
                    keep.append(pkt)
                elif self._seal_send(child, plain, n, now):
                    self.stats.released += 1
            tq.packets = keep
            if not keep:
                tq.last_acquire = None

    def _unknown(self, spi: int, addr: SockAddr, now: float) -> None:
        stats = self.stats
        stats.unknown_spi += 1
        seen = self._unknown_seen
        last = seen.get(spi)
        if last is not None and now - last < self._unknown_interval:
            stats.unknown_spi_suppressed += 1
            return
        if now - self._unknown_epoch >= self._unknown_interval:
            self._unknown_epoch = now
            self._unknown_in_epoch = 0
        if self._unknown_in_epoch >= self._unknown_burst:
            stats.unknown_spi_suppressed += 1
            return
        self._unknown_in_epoch += 1
        if len(seen) >= _UNKNOWN_SPI_TRACKED:
            seen.clear()
        seen[spi] = now
        if self._on_unknown_spi is not None:
            try:
                src = (ip_address(addr[0]), int(addr[1]))
            except (ValueError, IndexError, TypeError):
                return
            self._emit(self._on_unknown_spi, _U32.pack(spi), src, now)

    def _expired(self, spi_in: bytes, kind: Expiry) -> None:
        child = self._child(spi_in)
        if child is None or child.hard:
            return
        if kind is Expiry.HARD:
            child.hard = True
        elif child.soft:
            return
        else:
            child.soft = True
        if self._on_expire is not None:
            self._emit(self._on_expire, spi_in, kind)

    def _emit(self, fn: Callable[..., None], *args: Any) -> None:
        self._events.append((fn, args))

    def _flush(self) -> None:
        events = self._events
        while events:
            fn, args = events.popleft()
            fn(*args)

    def _route(self, selectors: Iterable[Selector]) -> None:
        if not self._install_routes:
            return
        for net in _networks(selectors):
            refs = self._routes.get(net, 0)
            if refs == 0:
                self._tun.add_route(net)
            self._routes[net] = refs + 1

    def _unroute(self, selectors: Iterable[Selector]) -> None:
        if not self._install_routes:
            return
        for net in _networks(selectors):
            refs = self._routes.get(net, 0) - 1
            if refs <= 0:
                self._routes.pop(net, None)
                self._tun.del_route(net)
            else:
                self._routes[net] = refs
