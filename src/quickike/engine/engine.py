"""The sans-I/O IKEv2 engine.

Drivers feed it datagrams and timer expiries with the current time and
collect datagrams to send, the next deadline and events (the aioquic shape).
It owns the IKE SA table and runs each SA's task queue one exchange at a time
(window 1), retransmitting requests on strongSwan's schedule and caching the
last response for retransmitted requests.

Nothing a peer sends may escape as an exception: every refusal is a counted
drop reason (``Engine.counters``) and, for the interesting ones, an event.
"""

from __future__ import annotations

import collections
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..crypto.errors import CryptoError, IntegrityError
from ..crypto.rng import RandomSource, SystemRandomSource
from ..wire.enums import (
    FLAG_INITIATOR,
    FLAG_RESPONSE,
    ExchangeType,
    NotifyType,
    PayloadType,
)
from ..wire.errors import CodecError
from ..wire.framing import NON_ESP_MARKER
from ..wire.header import HEADER_SIZE, Header
from ..wire.message import Message, decode_payloads, encode_payloads
from ..wire.payloads import SA, Encrypted, EncryptedFragment, Nonce, Notify, Payload, notify
from . import events as ev
from .config import CloseAction, DpdAction, StartAction, UniquePolicy
from .dataplane import (
    DataPlane,
    Expiry,
    RecordingDataPlane,
    Selector,
    TrapSpec,
    capabilities_of,
)
from .extension import Extension
from .fragments import Reassembly
from .ordering import order
from .ratelimit import KeyedBuckets, TokenBucket
from .sa import ChildSa, ChildState, IkeSa, IkeState, Pending
from .tasks.base import DropRequest, Outgoing, Status, Task
from .tasks.child_create import ChildCreate
from .tasks.child_delete import ChildDelete
from .tasks.child_rekey import ChildRekey
from .tasks.ike_auth import IkeAuth
from .tasks.ike_delete import IkeDelete
from .tasks.ike_init import IkeInit
from .tasks.ike_rekey import IkeRekey
from .tasks.liveness import Liveness
from .tasks.natd import Natd
from .tasks.responders import tasks_for_request
from .timers import Timer, TimerQueue

if TYPE_CHECKING:
    from .config import ChildConfig, ConnectionConfig, QuickikeConfig

log = logging.getLogger("quickike.engine")

Address = tuple[str, int]

_SK = int(PayloadType.SK)
_SKF = int(PayloadType.SKF)
_INIT = ExchangeType.IKE_SA_INIT
_AUTH = ExchangeType.IKE_AUTH
_CCSA = ExchangeType.CREATE_CHILD_SA
_INFO = ExchangeType.INFORMATIONAL
# Enum members as module constants for the per-message paths: ``EnumClass.MEMBER`` goes
# through EnumType's attribute hook (its ``__getattr__``) and costs several times a global
# lookup, and the task loops below test these once per task and message.
_DONE = Status.DONE
_FAILED = Status.FAILED
_NEED_MORE = Status.NEED_MORE
_DESTROYED = IkeState.DESTROYED


def _later_fragment(h: Header, data: bytes) -> bool:
    """An SKF message other than fragment 1 (RFC 7383 §2.5: Fragment Number after the
    generic header). A fragmented request is answered once, on its first fragment."""
    return h.next_payload == _SKF and data[HEADER_SIZE + 4 : HEADER_SIZE + 6] != b"\x00\x01"


@dataclass(frozen=True, slots=True)
class Datagram:
    """A datagram to send. ``data`` is ready for the wire (non-ESP marker included)."""

    data: bytes
    local: Address
    remote: Address


def needs_marker(local_port: int, remote_port: int) -> bool:
    """charon frames IKE with the non-ESP marker whenever neither port is 500."""
    return local_port != 500 and remote_port != 500


class Engine:
    """One IKE daemon's worth of protocol state, without I/O."""

    def __init__(
        self,
        config: QuickikeConfig,
        *,
        rng: RandomSource | None = None,
        dataplane: DataPlane | None = None,
        extensions: Sequence[Extension] = (),
        trace: bool = False,
        source_address: Callable[[str], str | None] | None = None,
        keylog: Callable[[str], None] | None = None,
        epoch_offset: float = 0.0,
        now: float = 0.0,
    ) -> None:
        from .policy import Policy

        self.now = now
        self.rng: RandomSource = rng or SystemRandomSource()
        self.dataplane: DataPlane = dataplane if dataplane is not None else RecordingDataPlane()
        #: what the data plane cannot do (UDP encapsulation only, ESP transforms)
        self.caps = capabilities_of(self.dataplane)
        self.trace = trace
        self.source_address = source_address
        #: receives Wireshark decryption-table lines; None (the default) exports no keys
        self.keylog = keylog
        #: wall-clock seconds minus engine time, for certificate validity only
        self.epoch_offset = epoch_offset
        self.reserved_spis: set[bytes] = set()
        #: CHILD uid -> (the peer's new CHILD, nonces) while our own rekey of it is in flight
        self.peer_rekeys: dict[int, tuple[ChildSa, tuple[bytes, bytes]]] = {}
        self.policy = Policy(config)
        self.policy.esp_filter = self.caps.esp_transform
        self.timers = TimerQueue()
        self.counters: collections.Counter[str] = collections.Counter()
        self.sas: dict[bytes, IkeSa] = {}
        self.half_open: dict[tuple[bytes, Address], IkeSa] = {}
        self.children_in: dict[bytes, ChildSa] = {}
        self.children_out: dict[bytes, ChildSa] = {}
        #: authenticated IKE SAs by (remote id, local id): INITIAL_CONTACT without scanning all SAs
        #: (an insertion-ordered set per pair: 10,000 SAs between two gateways share one key)
        self._by_identity: dict[tuple[str, str], dict[IkeSa, None]] = {}
        self._out: list[Datagram] = []
        self._events: collections.deque[ev.Event] = collections.deque()
        self._uid = 0
        self._child_uid = 0
        s = self.policy.settings
        self.unprotected_replies = KeyedBuckets(s.unprotected_reply_rate, s.unprotected_reply_burst)
        self.unprotected_global = TokenBucket(
            s.unprotected_reply_rate * 20, s.unprotected_reply_burst * 20
        )
        self.hint_buckets = KeyedBuckets(1.0, 3.0)
        self.extensions: list[Extension] = []
        for ext in extensions:
            self.add_extension(ext)
        from ..crypto.cookies import CookieJar
        from .credentials import Credentials

        self.cookies = CookieJar(self.rng)
        self.credentials = Credentials(config)

    # ------------------------------------------------------------------ driver API

    def add_extension(self, ext: Extension) -> None:
        self.extensions.append(ext)
        ext.attach(self)

    def receive_datagram(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        """An IKE message arrived (without the non-ESP marker: the driver strips it)."""
        self.now = now
        try:
            self._receive(bytes(data), local, remote)
        except (CodecError, CryptoError) as e:  # pragma: no cover - paths below catch these
            self._drop("malformed", remote, str(e))
        except Exception:  # the engine must survive anything a peer sends
            log.exception("internal error handling a datagram from %s", remote)
            self.counters["internal-error"] += 1

    def handle_timer(self, now: float) -> None:
        self.now = now
        while True:
            t = self.timers.pop_due(now)
            if t is None:
                return
            try:
                t.fn(*t.args)
            except Exception:
                log.exception("internal error in a timer")
                self.counters["internal-error"] += 1

    def get_timer(self) -> float | None:
        return self.timers.next_deadline()

    def datagrams_to_send(self) -> list[Datagram]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> ev.Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[ev.Event]:
        while self._events:
            yield self._events.popleft()

    def schedule(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        return self.timers.schedule(when, fn, *args)

    def emit(self, event: ev.Event) -> None:
        self._events.append(event)

    def send_raw(self, data: bytes, local: Address, remote: Address) -> None:
        """Send an IKE message built elsewhere (adds the non-ESP marker when needed)."""
        if needs_marker(local[1], remote[1]):
            data = NON_ESP_MARKER + data
        self._out.append(Datagram(data, local, remote))

    def send_keepalive(self, local: Address, remote: Address) -> None:
        self._out.append(Datagram(b"\xff", local, remote))

    # ------------------------------------------------------------------ control API

    def start(self, now: float) -> None:
        """Install traps and initiate ``start_action = start`` connections."""
        self.now = now
        for conn in self.policy.connections():
            self._install_traps(conn)
            starting = [c for c in conn.children if StartAction.START in c.start_action]
            if starting:
                self._initiate(conn, starting)

    def load_config(self, config: QuickikeConfig, now: float) -> None:
        """Swap in a new configuration (SIGHUP); established SAs keep their settings."""
        self.now = now
        old = {c.name: c for c in self.policy.connections()}
        self.policy.reload(config)
        self.credentials.reload(config)
        for name, conn in old.items():
            if self.policy.connection(name) is None:
                for ch in conn.children:
                    self.dataplane.remove_trap(conn.name, ch.name)
        for conn in self.policy.connections():
            self._install_traps(conn)

    def initiate(self, conn_name: str, child_name: str | None, now: float) -> int:
        """Bring up a connection (or one CHILD of it); returns the IKE SA's uid."""
        self.now = now
        conn = self.policy.connection(conn_name)
        if conn is None:
            raise KeyError(f"no connection named {conn_name!r}")
        children = [c for c in conn.children if child_name is None or c.name == child_name]
        if child_name is not None and not children:
            raise KeyError(f"connection {conn_name!r} has no child {child_name!r}")
        if child_name is None:
            children = list(conn.children[:1])
        elif (sa := self._established_for(conn)) is not None:
            # like charon: another CHILD of a connection rides on its IKE SA
            self.queue_child_create(sa, children[0])
            return sa.uid
        sa = self._initiate(conn, children)
        return sa.uid

    def _established_for(self, conn: ConnectionConfig) -> IkeSa | None:
        for sa in self.sas.values():
            if sa.conn is not None and sa.conn.name == conn.name and sa.usable:
                return sa
        return None

    def acquire(self, ike_name: str, child_name: str, now: float,
                packet: tuple[Selector, Selector] | None = None) -> int | None:
        """Traffic hit a trap: set up the CHILD SA unless it is already on its way.

        ``packet`` is (source, destination) of the packet that hit the trap, as
        single-host selectors with its protocol and ports: the CHILD SA request
        then puts them first in TSi/TSr (RFC 7296 §2.9) so that a responder with
        narrower policies picks the right one.
        """
        self.now = now
        conn = self.policy.connection(ike_name)
        if conn is None:
            return None
        child = next((c for c in conn.children if c.name == child_name), None)
        if child is None:
            return None
        for sa in self.sas.values():
            if sa.conn is not None and sa.conn.name == ike_name and sa.state in (
                IkeState.CONNECTING,
                IkeState.ESTABLISHED,
                IkeState.REKEYING,
            ):
                if any(c.config.name == child_name and c.state != ChildState.DESTROYED
                       for c in sa.children) or self._child_queued(sa, child_name):
                    return sa.uid
                if sa.usable:
                    self.queue_child_create(sa, child)
                    self._packet_selectors(sa, child_name, packet)
                    return sa.uid
                return sa.uid
        self.counters["acquires"] += 1
        sa = self._initiate(conn, [child])
        self._packet_selectors(sa, child_name, packet)
        return sa.uid

    def _packet_selectors(self, sa: IkeSa, child_name: str,
                          packet: tuple[Selector, Selector] | None) -> None:
        if packet is None:
            return
        for task in (*sa.active, *sa.queued):
            if isinstance(task, ChildCreate) and task.config is not None \
                    and task.config.name == child_name and not task.ts_local:
                task.packet_ts = packet

    def encap_forced(self, conn: ConnectionConfig | None) -> bool:
        """UDP-encapsulate ESP even without a NAT: ``encap = yes`` or a data plane that needs it."""
        return self.caps.udp_encap_only or (conn is not None and conn.encap)

    def terminate_ike(self, uid: int, now: float, *, force: bool = False) -> bool:
        self.now = now
        sa = self.find_ike(uid)
        if sa is None:
            return False
        if force or not sa.usable:
            self.destroy_ike(sa, "deleted")
        else:
            self.queue_task(sa, IkeDelete(self, sa, _INFO))
        return True

    def terminate_child(self, child_uid: int, now: float) -> bool:
        self.now = now
        child = self.find_child(child_uid)
        if child is None:
            return False
        self.queue_task(child.ike, ChildDelete(self, child.ike, _INFO, child))
        return True

    def rekey_ike(self, uid: int, now: float) -> bool:
        self.now = now
        sa = self.find_ike(uid)
        if sa is None or not sa.usable:
            return False
        self._queue_ike_rekey(sa)
        return True

    def rekey_child(self, child_uid: int, now: float) -> bool:
        self.now = now
        child = self.find_child(child_uid)
        if child is None or child.state != ChildState.INSTALLED:
            return False
        self._queue_child_rekey(child)
        return True

    def liveness_check(self, uid: int, now: float, why: str = "manual") -> bool:
        self.now = now
        sa = self.find_ike(uid)
        if sa is None:
            return False
        return self.start_liveness_check(sa, why)

    def unknown_esp_spi(self, spi: bytes, local: Address, remote: Address, now: float) -> None:
        """The data plane got ESP for an SPI it has no SA for (RFC 7296 §1.5)."""
        self.now = now
        self.counters["esp-unknown-spi"] += 1
        for ext in self.extensions:
            if ext.unknown_esp_spi(spi, local, remote):
                return
        if not self.policy.settings.send_invalid_spi:
            return
        if not self._unprotected_allowed(remote):
            self.counters["invalid-spi-rate-limited"] += 1
            return
        self.send_invalid_spi(spi, local, remote)

    def send_invalid_spi(self, spi: bytes, local: Address, remote: Address,
                         extra: Sequence[Payload] = (), spis: tuple[bytes, bytes] | None = None
                         ) -> None:
        """Unprotected INFORMATIONAL with N(INVALID_SPI) (RFC 7296 §1.5, I=1, R=0)."""
        spi_i, spi_r = spis if spis is not None else (self.rng.bytes(8), b"\x00" * 8)
        # the SPI travels as notification data: with an empty SPI field, Protocol ID is 0 (§3.10)
        msg = Message(spi_i, spi_r, _INFO, FLAG_INITIATOR, 0,
                      [notify(NotifyType.INVALID_SPI, spi), *extra])
        self.counters["invalid-spi-sent"] += 1
        data = msg.encode()
        self._trace_out(None, msg, local, remote, False, len(data))
        self.send_raw(data, local, remote)

    def child_expired(self, spi_in: bytes, kind: Expiry, now: float) -> None:
        """A data-plane lifetime (bytes/packets) ran out."""
        self.now = now
        child = self.children_in.get(spi_in)
        if child is None:
            return
        if kind is Expiry.SOFT:
            self._queue_child_rekey(child)
        else:
            self.remove_child(child, "expired")

    def shutdown(self, now: float) -> None:
        """Delete every SA with a Delete (SIGTERM): fire and forget, no retransmits."""
        self.now = now
        for sa in list(self.sas.values()):
            if sa.usable and sa.protector is not None:
                task = IkeDelete(self, sa, _INFO)
                out = Outgoing(_INFO, False)
                task.build_i(out)
                self._send_message(sa, out, sa.msg_id_out, response=False)
            self.destroy_ike(sa, "shutdown", restart=False)

    # ------------------------------------------------------------------ lookups

    def ike_sas(self) -> Iterator[IkeSa]:
        return iter(list(self.sas.values()))

    def find_ike(self, uid: int) -> IkeSa | None:
        for sa in self.sas.values():
            if sa.uid == uid:
                return sa
        return None

    def find_child(self, child_uid: int) -> ChildSa | None:
        for child in self.children_in.values():
            if child.uid == child_uid:
                return child
        return None

    def new_uid(self) -> int:
        self._uid += 1
        return self._uid

    def new_child_uid(self) -> int:
        self._child_uid += 1
        return self._child_uid

    def new_ike_spi(self) -> bytes:
        while True:
            spi = self.rng.bytes(8)
            if spi != b"\x00" * 8 and spi not in self.sas and spi not in self.reserved_spis:
                return spi

    def reserve_ike_spi(self, spi: bytes) -> None:
        self.reserved_spis.add(spi)

    def release_ike_spi(self, spi: bytes) -> None:
        self.reserved_spis.discard(spi)

    def new_child_spi(self) -> bytes:
        while True:
            spi = self.rng.bytes(4)
            if int.from_bytes(spi, "big") > 255 and spi not in self.children_in \
                    and spi not in self.reserved_spis:
                return spi

    def reserve_child_spi(self, spi: bytes) -> None:
        self.reserved_spis.add(spi)

    def release_child_spi(self, spi: bytes) -> None:
        self.reserved_spis.discard(spi)

    def jittered(self, base: float, rand: float) -> float:
        """A lifetime shortened by a random part of ``rand`` (strongSwan's rand_time)."""
        if base <= 0:
            return 0.0
        return max(base - rand * self.rng.random(), base * 0.1)

    def wall_clock(self) -> float:
        """Seconds since the epoch, for certificate validity (the driver supplies the offset)."""
        return self.now + self.epoch_offset

    def keys_derived(self, sa: IkeSa) -> None:
        if self.keylog is not None and sa.keys is not None and sa.suite is not None:
            self.keylog(sa.keys.wireshark_line(sa.spi_i, sa.spi_r, sa.suite))

    # ------------------------------------------------------------------ receiving

    def _drop(self, reason: str, remote: Address, detail: str = "") -> None:
        self.counters["drop:" + reason] += 1
        if detail:
            log.debug("dropped from %s: %s (%s)", remote, reason, detail)
        self._events.append(ev.Dropped(self.now, reason, remote, detail))

    def _receive(self, data: bytes, local: Address, remote: Address) -> None:
        self.counters["rx"] += 1
        try:
            h = Header.decode(data)
        except CodecError as e:
            if e.notify == NotifyType.INVALID_MAJOR_VERSION:
                self._answer_bad_version(data, local, remote)
            self._drop("bad-header", remote, str(e))
            return
        if h.is_initiator:
            sa = self.sas.get(h.spi_r) if h.spi_r != b"\x00" * 8 else None
        else:
            sa = self.sas.get(h.spi_i)
        if sa is not None:
            # the other half must match too once we know it
            if h.is_initiator:
                if sa.initiator or sa.spi_i != h.spi_i:
                    sa = None
            elif not sa.initiator or (sa.spi_r != b"\x00" * 8 and sa.spi_r != h.spi_r):
                sa = None
        if sa is None:
            self._receive_unknown(h, data, local, remote)
            return
        if h.exchange == _INIT:
            self._receive_init_for_sa(sa, h, data, local, remote)
            return
        if h.next_payload not in (_SK, _SKF):
            self._receive_unprotected(sa, h, data, local, remote)
            return
        self._receive_protected(sa, h, data, local, remote)

    @staticmethod
    def _message(h: Header, payloads: list[Payload]) -> Message:
        return Message(h.spi_i, h.spi_r, h.exchange, h.flags, h.message_id, payloads)

    def _decode_plain(self, h: Header, data: bytes, remote: Address) -> Message | None:
        """The unprotected payloads after an already-checked header; None if malformed."""
        try:
            payloads, _ = decode_payloads(h.next_payload, data, HEADER_SIZE)
        except CodecError as e:
            self._drop("malformed", remote, str(e))
            return None
        return self._message(h, payloads)

    def _receive_unknown(self, h: Header, data: bytes, local: Address, remote: Address) -> None:
        if h.exchange == _INIT and not h.is_response and h.is_initiator:
            if h.spi_r == b"\x00" * 8:
                self._receive_init_request(h, data, local, remote)
            else:
                self._drop("unknown-spi", remote, "IKE_SA_INIT with a responder SPI")
            return
        if h.is_response:
            # RFC 7296 §2.21.4: audit only, never answer a response
            if h.next_payload not in (_SK, _SKF):
                msg = self._decode_plain(h, data, remote)
                if msg is not None:
                    sa = self._sa_for_invalid_spi(msg)
                    for ext in self.extensions:
                        if ext.unprotected_message(sa, msg, local, remote):
                            return
            self._drop("unknown-spi-response", remote)
            return
        if h.next_payload in (_SK, _SKF):
            if self.trace:  # its contents are unreadable: trace the header only
                msg = self._message(h, [])
                self._trace_in(None, msg, local, remote, True, len(data))
            if not _later_fragment(h, data):  # one answer per request, on fragment 1
                for ext in self.extensions:
                    if ext.unknown_sa_request(h, data, local, remote):
                        return
                self._reply_invalid_ike_spi(h, local, remote)
            self._drop("unknown-spi", remote)
            return
        # unprotected request for an SA we do not have: INVALID_SPI hints live here
        msg = self._decode_plain(h, data, remote)
        if msg is None:
            return
        self._trace_in(None, msg, local, remote, False, len(data))
        sa = self._sa_for_invalid_spi(msg)
        for ext in self.extensions:
            if ext.unprotected_message(sa, msg, local, remote):
                return
        if sa is not None and msg.notify(NotifyType.INVALID_SPI) is not None:
            self._hint(sa, "hint-invalid-spi", remote)
            return
        self._drop("unknown-spi", remote, "unprotected request")

    def _sa_for_invalid_spi(self, msg: Message) -> IkeSa | None:
        """The IKE SA an unprotected INVALID_SPI talks about (the SPI is our outbound one)."""
        n = msg.notify(NotifyType.INVALID_SPI)
        if n is None:
            sa = self.sas.get(msg.spi_r if msg.is_initiator else msg.spi_i)
            return sa
        child = self.children_out.get(n.data[:4]) or self.children_out.get(n.spi)
        return child.ike if child is not None else None

    def _unprotected_allowed(self, remote: Address) -> bool:
        return self.unprotected_global.allow(self.now) and self.unprotected_replies.allow(
            remote[0], self.now
        )

    def _reply_invalid_ike_spi(self, h: Header, local: Address, remote: Address) -> None:
        """RFC 7296 §2.21.4: MAY answer with INVALID_IKE_SPI, unprotected, rate-limited."""
        if not self.policy.settings.send_invalid_ike_spi:
            return
        if not self._unprotected_allowed(remote):
            self.counters["invalid-ike-spi-rate-limited"] += 1
            return
        self.send_unprotected_response(h, [notify(NotifyType.INVALID_IKE_SPI)], local, remote)
        self.counters["invalid-ike-spi-sent"] += 1

    def send_unprotected_response(
        self, h: Header, payloads: list[Payload], local: Address, remote: Address
    ) -> None:
        """A response with the request's SPIs, exchange and message ID copied (§2.21.4)."""
        flags = FLAG_RESPONSE | (0 if h.is_initiator else FLAG_INITIATOR)
        msg = Message(h.spi_i, h.spi_r, h.exchange, flags, h.message_id, payloads)
        data = msg.encode()
        self._trace_out(None, msg, local, remote, False, len(data))
        self.send_raw(data, local, remote)

    def _answer_bad_version(self, data: bytes, local: Address, remote: Address) -> None:
        if len(data) < HEADER_SIZE or data[19] & FLAG_RESPONSE or data[18] != _INIT:
            return
        if not self._unprotected_allowed(remote):
            return
        h = Header(data[:8], data[8:16], 0, _INIT, data[19], int.from_bytes(data[20:24], "big"))
        self.send_unprotected_response(
            h, [notify(NotifyType.INVALID_MAJOR_VERSION, b"\x20")], local, remote
        )

    def _receive_unprotected(
        self, sa: IkeSa, h: Header, data: bytes, local: Address, remote: Address
    ) -> None:
        """Unprotected messages for an SA we have: only ever hints (§2.21.4)."""
        msg = self._decode_plain(h, data, remote)
        if msg is None:
            return
        self._trace_in(sa, msg, local, remote, False, len(data))
        for ext in self.extensions:
            if ext.unprotected_message(sa, msg, local, remote):
                return
        if msg.notify(NotifyType.INVALID_IKE_SPI) is not None:
            self._hint(sa, "hint-invalid-ike-spi", remote)
        elif msg.notify(NotifyType.INVALID_SPI) is not None:
            self._hint(sa, "hint-invalid-spi", remote)
        else:
            self._drop("unprotected", remote, msg.summary())

    def _hint(self, sa: IkeSa, why: str, remote: Address) -> None:
        """An unauthenticated hint that the peer lost state: check, never conclude (§2.21)."""
        self.counters[why] += 1
        if not self.hint_buckets.allow(sa.uid, self.now):
            self.counters["hint-rate-limited"] += 1
            return
        pending = sa.pending
        if (pending is not None and sa.usable and why == "hint-invalid-spi"
                and not pending.hint_resent):
            # ESP reached a peer that lost its SAs while our request is outstanding (it may
            # have been sent while the peer was still booting). Sending it again now, outside
            # the backoff schedule (which stays as it was), lets the peer answer at once
            # instead of at the next retransmission. An INVALID_IKE_SPI already answers the
            # request, so it is never a reason to send it again. Once per scheduled
            # transmission, so hints cannot make us send more than twice the schedule.
            self.counters["hint-retransmits"] += 1
            pending.hint_resent = True
            pending.last_sent = self.now
            for d in pending.datagrams:
                self._out.append(Datagram(d, sa.local, sa.remote))
            return
        self.start_liveness_check(sa, why)

    def _receive_protected(
        self, sa: IkeSa, h: Header, data: bytes, local: Address, remote: Address
    ) -> None:
        prot = sa.protector
        if prot is None:
            self._drop("not-ready", remote, "protected message before keys")
            return
        if h.is_response:
            if sa.pending is None or h.message_id != sa.pending.message_id:
                self._drop("unexpected-response", remote, f"message id {h.message_id}")
                return
        else:
            if h.message_id != sa.msg_id_in:
                last = sa.last_response
                if last is not None and h.message_id == last[0]:
                    if _later_fragment(h, data):
                        return  # answer a retransmitted fragmented request once, on fragment 1
                    self.counters["retransmitted-request"] += 1
                    for d in last[1]:
                        self._out.append(Datagram(d, sa.local, sa.remote))
                    return
                self._drop("bad-message-id", remote, f"{h.message_id} != {sa.msg_id_in}")
                return
        try:
            if h.next_payload == _SK:
                first, plain = prot.unprotect(data, HEADER_SIZE)
            else:
                assembled = self._reassemble(sa, h, data, remote)
                if assembled is None:
                    return
                first, plain = assembled
            payloads, _ = decode_payloads(first, plain)
        except IntegrityError as e:
            self._drop("bad-icv", remote, str(e))
            return
        except CodecError as e:
            self._drop("malformed", remote, str(e))
            if not h.is_response and sa.usable:
                self._answer_error(sa, h, e.notify, e.data)
            return
        except CryptoError as e:
            self._drop("bad-encryption", remote, str(e))
            return
        msg = self._message(h, payloads)
        sa.last_in = self.now
        self._trace_in(sa, msg, local, remote, True, len(data))
        if (remote != sa.remote or local != sa.local) and not h.is_response:
            self._peer_moved(sa, local, remote)
        for ext in self.extensions:
            ext.protected_message(sa, msg)
        if sa.state == _DESTROYED:
            return
        if h.is_response:
            self._process_response(sa, msg)
        else:
            self._process_request(sa, msg)

    def _peer_moved(self, sa: IkeSa, local: Address, remote: Address) -> None:
        """Follow an authenticated request to a new address (RFC 7296 §2.23).

        During IKE_AUTH this is the initiator's move to the NAT-T port; later
        a NAT mapping that changed. Without NAT, addresses stay fixed.
        """
        nat = sa.nat_remote or sa.nat_local or self.encap_forced(sa.conn)
        if not nat and sa.auth_done:
            return
        sa.remote = remote
        sa.local = local
        for child in sa.children:
            self.dataplane.update_addresses(child.spi_in, self._addr(local), self._addr(remote), True)

    def _reassemble(
        self, sa: IkeSa, h: Header, data: bytes, remote: Address
    ) -> tuple[int, bytes] | None:
        assert sa.protector is not None
        number, total, nxt, plain = sa.protector.unprotect_fragment(data, HEADER_SIZE)
        r = sa.fragments
        if r is None or r.message_id != h.message_id or r.response != h.is_response:
            r = sa.fragments = Reassembly(h.message_id, h.is_response)
        result: tuple[int, bytes] | None = r.add(number, total, nxt, plain)
        if result is None:
            self.counters["fragments-buffered"] += 1
            return None
        sa.fragments = None
        return result

    def _answer_error(self, sa: IkeSa, h: Header, error: NotifyType, data: bytes) -> None:
        """An authenticated request we cannot parse still gets an answer (§2.21.2)."""
        out = Outgoing(h.exchange, True)
        out.add(notify(error, data))
        self._send_response(sa, out, h.message_id)

    # ------------------------------------------------------------------ IKE_SA_INIT

    def _receive_init_request(self, h: Header, data: bytes, local: Address, remote: Address) -> None:
        key = (h.spi_i, remote)
        existing = self.half_open.get(key)
        if existing is not None:
            # a retransmission: same request -> same answer (§2.1); detect by content
            if existing.init_i == data and existing.last_response is not None:
                self.counters["retransmitted-request"] += 1
                for d in existing.last_response[1]:
                    self._out.append(Datagram(d, existing.local, existing.remote))
            else:
                self._drop("half-open-duplicate", remote)
            return
        try:
            payloads, _ = decode_payloads(h.next_payload, data, HEADER_SIZE)
        except CodecError as e:
            self._drop("malformed", remote, str(e))
            if e.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD and self._unprotected_allowed(remote):
                self.send_unprotected_response(h, [notify(e.notify, e.data)], local, remote)
            return
        msg = self._message(h, payloads)
        self._trace_in(None, msg, local, remote, False, len(data))
        if h.message_id != 0:
            self._drop("bad-message-id", remote, "IKE_SA_INIT with a message id")
            return
        s = self.policy.settings
        if len(self.half_open) >= s.cookie_threshold > 0 and not self._cookie_ok(msg, remote):
            self.counters["cookies-sent"] += 1
            nonce = self._nonce_of(msg)
            cookie = self.cookies.make(nonce, remote[0], h.spi_i, self.now)
            self.send_unprotected_response(h, [notify(NotifyType.COOKIE, cookie)], local, remote)
            return
        if len(self.half_open) >= s.half_open_limit > 0:
            self._drop("half-open-limit", remote)
            return
        conns = self.policy.responder_candidates(local, remote)
        if not conns:
            self._drop("no-config", remote, f"no connection for {local[0]}...{remote[0]}")
            if self._unprotected_allowed(remote):
                self.send_unprotected_response(
                    h, [notify(NotifyType.NO_PROPOSAL_CHOSEN)], local, remote
                )
            self._events.append(ev.IkeSetupFailed(self.now, "?", "no matching connection"))
            return
        sa = IkeSa(self.new_uid(), conns[0], False, h.spi_i, self.new_ike_spi(), local, remote, self.now)
        sa.init_i = data
        sa.half_open_key = key
        self.sas[sa.spi_r] = sa
        self.half_open[key] = sa
        sa.passive = self._responder_init_tasks(sa)
        if len(conns) > 1:
            sa.ext_set("responder_candidates", conns)
        self.schedule(self.now + s.half_open_timeout, self._half_open_expired, sa)
        self._process_request(sa, msg)

    def _nonce_of(self, msg: Message) -> bytes:
        n = msg.get(Nonce)
        return n.data if n is not None else b""

    def _cookie_ok(self, msg: Message, remote: Address) -> bool:
        first = msg.payloads[0] if msg.payloads else None
        if not isinstance(first, Notify) or first.type != NotifyType.COOKIE:
            return False
        if not self.cookies.verify(first.data, self._nonce_of(msg), remote[0], msg.spi_i, self.now):
            self.counters["bad-cookie"] += 1
            return False
        return True

    def _half_open_expired(self, sa: IkeSa) -> None:
        if sa.state == IkeState.CONNECTING and not sa.initiator and sa.spi_local in self.sas:
            self.destroy_ike(sa, "timeout")

    def _receive_init_for_sa(
        self, sa: IkeSa, h: Header, data: bytes, local: Address, remote: Address
    ) -> None:
        if not h.is_response:
            # the initiator re-sent IKE_SA_INIT to our responder SPI: not allowed, but harmless
            self._drop("unexpected-init", remote)
            return
        if not sa.initiator or sa.state != IkeState.CONNECTING or sa.pending is None:
            self._drop("unexpected-response", remote, "IKE_SA_INIT response")
            return
        msg = self._decode_plain(h, data, remote)
        if msg is None:
            return
        self._trace_in(sa, msg, local, remote, False, len(data))
        if h.message_id != sa.pending.message_id:
            self._drop("unexpected-response", remote, "message id")
            return
        # a bare error/cookie answer leaves SPIr at zero; keep it unset until a real answer
        if h.spi_r != b"\x00" * 8 and msg.get(SA) is not None:
            sa.spi_r = h.spi_r
            sa.init_r = data
        sa.last_in = self.now
        self._process_response(sa, msg)

    def _responder_init_tasks(self, sa: IkeSa) -> list[Task]:
        return [
            IkeInit(self, sa, _INIT),
            Natd(self, sa, _INIT),
            IkeAuth(self, sa, _AUTH),
            ChildCreate(self, sa, _AUTH, None),
        ]

    # ------------------------------------------------------------------ task manager

    def _initiate(self, conn: ConnectionConfig, children: list[ChildConfig]) -> IkeSa:
        local, remote = self.policy.initiator_addresses(conn, self.source_address)
        sa = IkeSa(self.new_uid(), conn, True, self.new_ike_spi(), b"\x00" * 8, local, remote, self.now)
        self.sas[sa.spi_i] = sa
        sa.queued = [IkeInit(self, sa, _INIT), Natd(self, sa, _INIT), IkeAuth(self, sa, _AUTH)]
        if children:
            sa.queued.append(ChildCreate(self, sa, _AUTH, children[0]))
            for child in children[1:]:
                sa.queued.append(ChildCreate(self, sa, _CCSA, child))
        self._initiate_next(sa)
        return sa

    def queue_task(self, sa: IkeSa, task: Task) -> None:
        sa.queued.append(task)
        self._initiate_next(sa)

    def queue_child_create(self, sa: IkeSa, child: ChildConfig) -> None:
        self.queue_task(sa, ChildCreate(self, sa, _CCSA, child))

    def _child_queued(self, sa: IkeSa, child_name: str) -> bool:
        for t in (*sa.queued, *sa.active):
            cfg = getattr(t, "config", None)
            if cfg is not None and getattr(cfg, "name", None) == child_name:
                return True
        return False

    def _initiate_next(self, sa: IkeSa) -> None:
        """Start the next exchange if none is outstanding (window size 1)."""
        if sa.pending is not None or sa.active or not sa.queued:
            return
        if sa.state == _DESTROYED:
            return
        exchange = sa.queued[0].exchange
        if exchange in (_INIT, _AUTH):
            batch = [t for t in sa.queued if t.exchange == exchange]
        else:
            if not sa.usable:
                # an SA being deleted or replaced runs nothing new but its Delete
                if sa.state in (IkeState.REKEYED, IkeState.DELETING):
                    batch = [sa.queued[0]] if sa.queued[0].kind == "ike-delete" else []
                    if not batch:
                        self._move_queued_after_rekey(sa)
                        return
                else:
                    return
            else:
                batch = [sa.queued[0]]
        for t in batch:
            sa.queued.remove(t)
        for ext in self.extensions:
            batch.extend(ext.initiator_tasks(sa, exchange, batch))
        sa.active = batch
        self._build_request(sa, exchange)

    def _move_queued_after_rekey(self, sa: IkeSa) -> None:
        successor = sa.ext_get("successor")
        tasks, sa.queued = sa.queued, []
        if successor is not None and successor.state != IkeState.DESTROYED:
            for t in tasks:
                t.sa = successor
                successor.queued.append(t)
            self._initiate_next(successor)

    def _build_request(self, sa: IkeSa, exchange: ExchangeType) -> None:
        out = Outgoing(exchange, False)
        for t in list(sa.active):
            st = t.build_i(out)
            if st is _FAILED:
                self._task_failed(sa, t)
                if sa.state == _DESTROYED:
                    return
                sa.active.remove(t)
            elif st is _DONE:
                sa.active.remove(t)  # nothing to ask: the task finished without an exchange
        if not sa.active:
            self._initiate_next(sa)
            return
        message_id = 0 if exchange == _INIT else sa.msg_id_out
        datagrams = self._send_message(sa, out, message_id, response=False)
        pending = Pending(exchange, message_id, datagrams, self.now)
        sa.pending = pending
        pending.timer = self.schedule(self.now + self._retransmit_delay(sa, 0), self._retransmit, sa, pending)

    def _retransmit_delay(self, sa: IkeSa, attempt: int) -> float:
        r = self.policy.retransmit_for(sa.conn)
        return r.wait(attempt, self.rng.random() if r.jitter else 0.0)

    def _retransmit(self, sa: IkeSa, pending: Pending) -> None:
        if sa.pending is not pending or sa.state == IkeState.DESTROYED:
            return
        r = self.policy.retransmit_for(sa.conn)
        if pending.attempt >= r.tries:
            self.counters["retransmit-timeouts"] += 1
            self._peer_dead(sa)
            return
        pending.attempt += 1
        pending.last_sent = self.now
        pending.hint_resent = False
        self.counters["retransmits"] += 1
        self._events.append(ev.Retransmit(self.now, sa.uid, str(pending.exchange), pending.message_id, pending.attempt))
        for d in pending.datagrams:
            self._out.append(Datagram(d, sa.local, sa.remote))
        sa.last_out = self.now
        pending.timer = self.schedule(
            self.now + self._retransmit_delay(sa, pending.attempt), self._retransmit, sa, pending
        )

    def _peer_dead(self, sa: IkeSa) -> None:
        established = sa.auth_done
        if established:
            self._events.append(ev.PeerDead(self.now, sa.uid, sa.name, sa.remote))
        else:
            self._events.append(ev.IkeSetupFailed(self.now, sa.name, "peer not responding", None, sa.uid))
        self.destroy_ike(sa, "dead-peer", action="dpd")

    def _process_response(self, sa: IkeSa, msg: Message) -> None:
        pending = sa.pending
        assert pending is not None
        if pending.timer is not None:
            pending.timer.cancel()
        sa.pending = None
        if msg.exchange != pending.exchange:
            self._drop("wrong-exchange", sa.remote, f"{msg.exchange} answers {pending.exchange}")
            self.destroy_ike(sa, "failed")
            return
        sa.msg_id_out = pending.message_id + 1
        for t in list(sa.active):
            if sa.state == _DESTROYED:
                return
            st = t.process_i(msg)
            if st is _DONE:
                if t in sa.active:
                    sa.active.remove(t)
            elif st is _FAILED:
                if t in sa.active:
                    sa.active.remove(t)
                self._task_failed(sa, t)
        if sa.state == _DESTROYED:
            return
        if pending.exchange == _AUTH and sa.auth_done and not sa.active:
            sa.ni = sa.nr = b""
            # make-before-break: the replacement and its CHILD SAs are in place now
            self._retire_replaced(sa, failed=False)
        if sa.active:
            self._build_request(sa, pending.exchange)
        else:
            self._initiate_next(sa)

    def _task_failed(self, sa: IkeSa, task: Task) -> None:
        if task.keep_sa and sa.auth_done:
            return
        self.counters["failed:" + task.kind] += 1
        if not sa.auth_done:
            self._events.append(
                ev.IkeSetupFailed(self.now, sa.name, task.reason or "failed",
                                  int(task.error) if task.error is not None else None, sa.uid)
            )
        reason = "auth-failed" if task.error == NotifyType.AUTHENTICATION_FAILED else "failed"
        self.destroy_ike(sa, reason, action="close" if sa.auth_done else None)

    def _process_request(self, sa: IkeSa, msg: Message) -> None:
        exchange = msg.exchange
        if exchange in (_INIT, _AUTH):
            tasks = [t for t in sa.passive if t.exchange == exchange]
            if exchange == _AUTH and not tasks:
                self._drop("unexpected-exchange", sa.remote, "IKE_AUTH on an established SA")
                return
        elif not sa.usable and sa.state not in (IkeState.REKEYED, IkeState.DELETING):
            self._drop("unexpected-exchange", sa.remote, f"{exchange} before IKE_AUTH")
            return
        else:
            tasks = tasks_for_request(self, sa, msg)
        extra: list[Task] = []
        for ext in self.extensions:
            extra.extend(ext.responder_tasks(sa, exchange, msg, tasks))
        for t in extra:
            t.responder = True
        tasks = tasks + extra
        failed: list[Task] = []
        try:
            for t in tasks:
                if t.process_r(msg) is _FAILED:
                    failed.append(t)
        except DropRequest as e:
            self._drop("invalid-request", sa.remote, str(e))
            if not sa.auth_done and exchange == _INIT:
                self.destroy_ike(sa, "failed")
            return
        out = Outgoing(exchange, True)
        results: list[tuple[Task, Status]] = []
        for t in tasks:
            st = t.build_r(out)
            if t in failed:
                st = _FAILED
            results.append((t, st))
        self._send_response(sa, out, msg.message_id)
        if exchange == _AUTH and sa.auth_done:
            sa.ni = sa.nr = b""  # KEYMAT of the first CHILD is derived; nonces are not needed again
        passive_left: list[Task] = []
        destroy: Task | None = None
        for t, st in results:
            if st is _NEED_MORE:
                passive_left.append(t)
            elif st is _FAILED and not t.keep_sa:
                destroy = destroy or t
        if exchange in (_INIT, _AUTH):
            sa.passive = [t for t in sa.passive if t not in tasks or t in passive_left]
            sa.passive.extend(t for t in passive_left if t not in sa.passive)
        if destroy is not None:
            self._task_failed(sa, destroy)
            return
        post = sa.ext_get("after_response")
        if post:
            sa.ext_set("after_response", None)
            for fn in post:
                fn()
        if sa.state != _DESTROYED:
            self._initiate_next(sa)

    def after_response(self, sa: IkeSa, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the current response has been sent (e.g. destroy after Delete)."""
        lst = sa.ext_get("after_response") or []
        lst.append(fn)
        sa.ext_set("after_response", lst)

    # ------------------------------------------------------------------ sending

    def _send_message(self, sa: IkeSa, out: Outgoing, message_id: int, response: bool) -> list[bytes]:
        flags = (FLAG_RESPONSE if response else 0) | (FLAG_INITIATOR if sa.initiator else 0)
        payloads = order(out.exchange, out.payloads)
        local, remote = sa.local, sa.remote
        marker = needs_marker(local[1], remote[1])
        if out.exchange == _INIT:
            error_only = response and all(type(p) is Notify and p.type.is_error for p in payloads)
            spi_r = b"\x00" * 8 if error_only else sa.spi_r
            msg = Message(sa.spi_i, spi_r, _INIT, flags, message_id, payloads)
            data = msg.encode()
            if response:
                if not error_only:
                    sa.init_r = data
            else:
                sa.init_i = data
            self._trace_out(sa, msg, local, remote, False, len(data))
            datagrams = [NON_ESP_MARKER + data if marker else data]
        else:
            prot = sa.protector
            assert prot is not None, "protected message without keys"
            first, inner = encode_payloads(payloads)
            limit = self._fragment_limit(sa, marker)
            if limit and prot.message_size(len(inner)) > limit:
                raw = prot.protect_fragments(
                    sa.spi_i, sa.spi_r, out.exchange, flags, message_id, first, inner, limit
                )
                self.counters["fragmented-messages"] += 1
            else:
                raw = [prot.protect(sa.spi_i, sa.spi_r, out.exchange, flags, message_id, first, inner)]
            if self.trace:
                msg = Message(sa.spi_i, sa.spi_r, out.exchange, flags, message_id, payloads)
                self._trace_out(sa, msg, local, remote, True, sum(len(r) for r in raw))
            datagrams = [NON_ESP_MARKER + r for r in raw] if marker else raw
        for d in datagrams:
            self._out.append(Datagram(d, local, remote))
        self.counters["tx"] += len(datagrams)
        sa.last_out = self.now
        return datagrams

    def _fragment_limit(self, sa: IkeSa, marker: bool) -> int:
        if not sa.frag_supported or sa.conn is None:
            return 0
        ip_overhead = 40 if ":" in sa.remote[0] else 20
        return self.policy.settings.fragment_size - ip_overhead - 8 - (4 if marker else 0)

    def _send_response(self, sa: IkeSa, out: Outgoing, message_id: int) -> None:
        datagrams = self._send_message(sa, out, message_id, response=True)
        sa.last_response = (message_id, datagrams)
        sa.msg_id_in = message_id + 1

    def _trace_in(self, sa: IkeSa | None, msg: Message, local: Address, remote: Address,
                  protected: bool, size: int) -> None:
        if self.trace:
            self._events.append(self._trace(sa, msg, False, local, remote, protected, size))

    def _trace_out(self, sa: IkeSa | None, msg: Message, local: Address, remote: Address,
                   protected: bool, size: int) -> None:
        if self.trace:
            self._events.append(self._trace(sa, msg, True, local, remote, protected, size))

    def _trace(self, sa: IkeSa | None, msg: Message, sent: bool, local: Address, remote: Address,
               protected: bool, size: int) -> ev.MessageTrace:
        names = []
        for p in msg.payloads:
            if type(p) is Notify:
                names.append(f"N({p.type})")
            elif isinstance(p, Encrypted | EncryptedFragment):
                names.append("SK")
            else:
                names.append(str(PayloadType(p.payload_type)))
        return ev.MessageTrace(
            self.now, sa.uid if sa else None, sent, str(msg.exchange), msg.is_response,
            msg.message_id, tuple(names), local, remote, msg.spi_i, msg.spi_r, protected, size,
        )

    # ------------------------------------------------------------------ SA lifecycle

    def established(self, sa: IkeSa) -> None:
        """IKE_AUTH finished: the SA is up (called by the ike_auth task)."""
        sa.state = IkeState.ESTABLISHED
        sa.established_at = self.now
        sa.auth_done = True
        self._index_identity(sa)
        sa.init_i = sa.init_r = b""
        if sa.half_open_key is not None:
            self.half_open.pop(sa.half_open_key, None)
            sa.half_open_key = None
        self._arm_ike_timers(sa)
        assert sa.suite is not None
        self._events.append(ev.IkeSaUp(
            self.now, sa.uid, sa.name, sa.spi_i, sa.spi_r, sa.local, sa.remote, sa.initiator,
            sa.local_id, sa.remote_id, sa.suite.keyword(), sa.rekeyed_from,
        ))
        for ext in self.extensions:
            ext.established(sa)

    def _arm_ike_timers(self, sa: IkeSa) -> None:
        conn = sa.conn
        if conn is None:
            return
        rekey = self.jittered(conn.rekey_time, conn.rand_time)
        if rekey > 0:
            sa.rekey_timer = self.schedule(self.now + rekey, self._rekey_due, sa)
        if conn.reauth_time > 0:
            reauth = self.jittered(conn.reauth_time, conn.rand_time)
            sa.reauth_timer = self.schedule(self.now + reauth, self._reauth_due, sa)
        if conn.dpd_delay > 0:
            sa.dpd_timer = self.schedule(self.now + conn.dpd_delay, self._dpd_due, sa)
        if sa.nat_local and self.policy.settings.keep_alive > 0:
            sa.keepalive_timer = self.schedule(self.now + self.policy.settings.keep_alive,
                                               self._keepalive_due, sa)

    def _cancel_ike_timers(self, sa: IkeSa) -> None:
        for t in (sa.rekey_timer, sa.reauth_timer, sa.dpd_timer, sa.keepalive_timer):
            if t is not None:
                t.cancel()
        sa.rekey_timer = sa.reauth_timer = sa.dpd_timer = sa.keepalive_timer = None
        if sa.pending is not None and sa.pending.timer is not None:
            sa.pending.timer.cancel()

    def _rekey_due(self, sa: IkeSa) -> None:
        if sa.usable:
            self._queue_ike_rekey(sa)

    def _reauth_due(self, sa: IkeSa) -> None:
        if sa.usable and sa.conn is not None:
            self.counters["reauth"] += 1
            self.reestablish(sa, "reauth", make_before_break=True)

    def _queue_ike_rekey(self, sa: IkeSa) -> None:
        if _has_task(sa, "ike-rekey"):
            return
        self.queue_task(sa, IkeRekey(self, sa, _CCSA))

    def _queue_child_rekey(self, child: ChildSa) -> None:
        sa = child.ike
        if child.state != ChildState.INSTALLED:
            return
        for t in (*sa.queued, *sa.active):  # a rekey (``old``) or delete (``child``) of it
            if getattr(t, "old", None) is child or getattr(t, "child", None) is child:
                return
        self.queue_task(sa, ChildRekey(self, sa, _CCSA, child))

    def last_inbound(self, sa: IkeSa) -> float:
        """When protected traffic last arrived on the IKE SA or any of its CHILD SAs."""
        last = sa.last_in
        for child in sa.children:
            c = self.dataplane.counters(child.spi_in)
            if c is not None and c.last_in is not None and c.last_in > last:
                last = c.last_in
        return last

    def _dpd_due(self, sa: IkeSa) -> None:
        conn = sa.conn
        if conn is None or sa.state == IkeState.DESTROYED:
            return
        delay = conn.dpd_delay
        last = self.last_inbound(sa)
        if self.now - last >= delay - 1e-9:
            if sa.pending is None and not sa.queued:
                self.start_liveness_check(sa, "dpd")
            sa.dpd_timer = self.schedule(self.now + delay, self._dpd_due, sa)
        else:
            sa.dpd_timer = self.schedule(last + delay, self._dpd_due, sa)

    def start_liveness_check(self, sa: IkeSa, why: str) -> bool:
        """Queue an empty INFORMATIONAL unless a request is already outstanding."""
        if not sa.usable:
            return False
        if sa.pending is not None or any(t.kind == "liveness" for t in sa.queued):
            return False  # the outstanding request already tells us whether the peer lives
        self.counters["liveness-checks"] += 1
        self._events.append(ev.LivenessCheck(self.now, sa.uid, why))
        self.queue_task(sa, Liveness(self, sa, _INFO))
        return True

    def _keepalive_due(self, sa: IkeSa) -> None:
        if sa.state == IkeState.DESTROYED:
            return
        interval = self.policy.settings.keep_alive
        if self.now - sa.last_out >= interval - 1e-9:
            self.send_keepalive(sa.local, sa.remote)
            sa.last_out = self.now
            sa.keepalive_timer = self.schedule(self.now + interval, self._keepalive_due, sa)
        else:
            sa.keepalive_timer = self.schedule(sa.last_out + interval, self._keepalive_due, sa)

    def destroy_ike(self, sa: IkeSa, reason: str, *, restart: bool = True,
                    action: str | None = None) -> None:
        """Forget an IKE SA and its CHILD SAs at once (no Delete is sent here).

        ``action`` selects which configured reaction applies to the lost CHILD
        SAs: "dpd" (dpd_action), "close" (close_action), "restart" (always
        re-create), None (nothing).
        """
        if sa.state == IkeState.DESTROYED:
            return
        was_up = sa.auth_done
        sa.state = IkeState.DESTROYED
        self._cancel_ike_timers(sa)
        for t in (*sa.active, *sa.queued, *sa.passive):
            t.abandoned()
        pending_children = [t for t in (*sa.active, *sa.queued) if getattr(t, "config", None) is not None and t.kind == "child-create"]
        sa.active, sa.queued, sa.passive = [], [], []
        sa.pending = None
        for child in list(sa.children):
            self.remove_child(child, reason)
        same = self._by_identity.get((sa.remote_id, sa.local_id))
        if same is not None and sa in same:
            del same[sa]
            if not same:
                del self._by_identity[(sa.remote_id, sa.local_id)]
        if self.sas.get(sa.spi_local) is sa:
            del self.sas[sa.spi_local]
        if sa.half_open_key is not None:
            self.half_open.pop(sa.half_open_key, None)
        self._events.append(ev.IkeSaDown(self.now, sa.uid, sa.name, sa.spi_i, sa.spi_r, reason, was_up))
        self.counters["ike-down:" + reason] += 1
        for ext in self.extensions:
            ext.destroyed(sa, reason)
        if not was_up and reason == "dead-peer" and self._retry_initiation(sa, pending_children):
            return
        if not was_up:
            self._retire_replaced(sa, failed=True)
        if restart and action is not None and sa.conn is not None and (was_up or sa.initiator):
            self._react(sa, action, pending_children)

    def _retry_initiation(self, sa: IkeSa, pending_children: list[Task]) -> bool:
        """strongSwan's ``keyingtries``: a set-up the peer never answered is tried again.

        ``keyingtries = 0`` (``%forever``) retries without end, N allows N attempts in
        all. A make-before-break replacement in progress moves to the new attempt, so
        the SA it replaces goes only when a replacement is up.
        """
        conn = sa.conn
        if conn is None or not sa.initiator:
            return False
        tries: int = sa.ext_get("keyingtry") or 1
        if conn.keyingtries and tries >= conn.keyingtries:
            return False
        configs: list[ChildConfig] = []
        for t in pending_children:
            cfg: ChildConfig | None = getattr(t, "config", None)
            if cfg is not None and cfg not in configs:
                configs.append(cfg)
        self.counters["keyingtries"] += 1
        new = self._initiate(conn, configs)
        new.ext_set("keyingtry", tries + 1)
        replaces = sa.ext_get("replaces")
        if replaces is not None:
            sa.ext_set("replaces", None)
            new.ext_set("replaces", replaces)
        return True

    def _react(self, sa: IkeSa, action: str, pending_children: list[Task]) -> None:
        conn = sa.conn
        if conn is None:
            return
        restart: list[ChildConfig] = []
        lost: list[ChildConfig] = sa.ext_get("lost_children") or []
        for cfg in lost:
            wanted = (
                action == "restart"
                or (action == "dpd" and cfg.dpd_action == DpdAction.RESTART)
                or (action == "close" and cfg.close_action == CloseAction.START)
            )
            if wanted and cfg not in restart:
                restart.append(cfg)
        for t in pending_children:
            pending: ChildConfig | None = getattr(t, "config", None)
            if pending is not None and pending not in restart and action == "restart":
                restart.append(pending)
        if restart:
            self.counters["restarts"] += 1
            self._initiate(conn, restart)

    def reestablish(self, sa: IkeSa, reason: str, *, make_before_break: bool = False,
                    silent: bool = False) -> IkeSa | None:
        """Re-create a connection's tunnel (QCD teardown, reauth).

        CHILD configs that start on their own (start_action start, close/dpd
        action restart) are re-created at once; trap CHILDs wait for traffic
        (their trap policies stay installed). With ``make_before_break`` the
        old SA lives until the new one is up, then goes with a Delete (reauth,
        RFC 7296 §2.8.3) or, with ``silent``, without one (the peer is known to
        have lost it); a ``silent`` old SA also goes if the new one fails.
        """
        conn = sa.conn
        if conn is None:
            return None
        configs = [c.config for c in sa.children]
        auto = [c for c in configs if StartAction.START in c.start_action
                or c.close_action == CloseAction.START or c.dpd_action == DpdAction.RESTART]
        if make_before_break:
            wanted = configs or list(conn.children[:1])
            new = self._initiate(conn, wanted)
            if new.state == IkeState.DESTROYED:
                self._retire(sa, reason, silent, failed=True)
            else:
                new.ext_set("replaces", (sa, reason, silent))
            return new
        self.destroy_ike(sa, reason, restart=False)
        if auto or (sa.initiator and not configs):
            return self._initiate(conn, auto or list(conn.children[:1]))
        return None

    def _retire_replaced(self, new: IkeSa, *, failed: bool) -> None:
        entry: tuple[IkeSa, str, bool] | None = new.ext_get("replaces")
        if entry is not None:
            new.ext_set("replaces", None)
            self._retire(*entry, failed=failed)

    def _retire(self, old: IkeSa, reason: str, silent: bool, *, failed: bool) -> None:
        """The end of make-before-break for ``old`` (see :meth:`reestablish`)."""
        if old.state == IkeState.DESTROYED:
            return
        if silent:
            self.destroy_ike(old, reason, restart=False)
        elif not failed and old.usable and not _has_task(old, "ike-delete"):
            self.queue_task(old, IkeDelete(self, old, _INFO))

    def install_child(self, child: ChildSa, spec: Any) -> None:
        self.dataplane.install_child(spec)
        child.state = ChildState.INSTALLED
        child.installed_at = self.now
        self.children_in[child.spi_in] = child
        self.children_out[child.spi_out] = child
        if child not in child.ike.children:
            child.ike.children.append(child)
        assert child.suite is not None
        self._events.append(ev.ChildSaUp(
            self.now, child.ike.uid, child.uid, child.name, child.spi_in, child.spi_out,
            tuple(_sel_str(s) for s in child.local_ts), tuple(_sel_str(s) for s in child.remote_ts),
            child.suite.keyword(), child.rekeyed_from,
        ))
        self._arm_child_timers(child)
        for ext in self.extensions:
            ext.child_installed(child)

    def _arm_child_timers(self, child: ChildSa) -> None:
        cfg = child.config
        rekey = self.jittered(cfg.rekey_time, cfg.rand_time)
        if rekey > 0:
            child.rekey_timer = self.schedule(self.now + rekey, self._child_rekey_due, child)
        if cfg.life_time > 0:
            child.expire_timer = self.schedule(self.now + cfg.life_time, self._child_expire_due, child)

    def _child_rekey_due(self, child: ChildSa) -> None:
        if child.state == ChildState.INSTALLED and child.ike.usable:
            self._queue_child_rekey(child)

    def _child_expire_due(self, child: ChildSa) -> None:
        if child.state != ChildState.DESTROYED:
            if child.ike.usable:
                self.queue_task(child.ike, ChildDelete(self, child.ike, _INFO, child))
            else:
                self.remove_child(child, "expired")

    def remove_child(self, child: ChildSa, reason: str) -> None:
        if child.state == ChildState.DESTROYED:
            return
        installed = child.spi_in in self.children_in and self.children_in[child.spi_in] is child
        child.state = ChildState.DESTROYED
        for t in (child.rekey_timer, child.expire_timer):
            if t is not None:
                t.cancel()
        child.rekey_timer = child.expire_timer = None
        sa = child.ike
        if child in sa.children:
            sa.children.remove(child)
            lost = sa.ext_get("lost_children") or []
            lost.append(child.config)
            sa.ext_set("lost_children", lost)
        if installed:
            del self.children_in[child.spi_in]
            if self.children_out.get(child.spi_out) is child:
                del self.children_out[child.spi_out]
            self.dataplane.remove_child(child.spi_in)
            self._events.append(ev.ChildSaDown(self.now, sa.uid, child.uid, child.name,
                                               child.spi_in, child.spi_out, reason))
            for ext in self.extensions:
                ext.child_removed(child, reason)

    def adopt_children(self, old: IkeSa, new: IkeSa) -> None:
        """Move CHILD SAs to the IKE SA that replaced ``old`` (IKE rekey, §2.18)."""
        for child in old.children:
            child.ike = new
            new.children.append(child)
        old.children = []

    def wants_initial_contact(self, sa: IkeSa) -> bool:
        """INITIAL_CONTACT unless we already hold an IKE SA to this peer (RFC 7296 §2.4)."""
        conn = sa.conn
        if conn is None or conn.unique == UniquePolicy.NEVER:
            return False
        for other in self.sas.values():
            if other is not sa and other.conn is not None and other.conn.name == conn.name \
                    and other.remote[0] == sa.remote[0] and other.auth_done:
                return False
        return True

    def initial_contact(self, sa: IkeSa) -> None:
        """The peer has no other SA with us: ours with the same identities are stale."""
        if sa.conn is not None and sa.conn.unique == UniquePolicy.NEVER:
            return
        for other in list(self._by_identity.get((sa.remote_id, sa.local_id), ())):
            if other is sa or not other.auth_done or other.state == IkeState.DESTROYED:
                continue
            self.counters["initial-contact-deletes"] += 1
            self.destroy_ike(other, "initial-contact", restart=False)

    def _index_identity(self, sa: IkeSa) -> None:
        self._by_identity.setdefault((sa.remote_id, sa.local_id), {})[sa] = None

    def close_action(self, sa: IkeSa, child: ChildConfig) -> None:
        """The peer closed a CHILD SA: re-create or re-trap it as configured."""
        if child.close_action == CloseAction.START and sa.usable:
            self.queue_child_create(sa, child)

    def retry_child_rekey_later(self, child: ChildSa, delay: float = 10.0) -> None:
        child.rekey_timer = self.schedule(self.now + delay, self._child_rekey_due, child)

    def retry_ike_rekey_later(self, sa: IkeSa, delay: float = 10.0) -> None:
        if sa.rekey_timer is not None:
            sa.rekey_timer.cancel()
        sa.rekey_timer = self.schedule(self.now + delay, self._rekey_due, sa)

    def register_rekeyed(self, old: IkeSa, new: IkeSa) -> None:
        """Make an IKE SA created by a rekey reachable by its SPI."""
        self.reserved_spis.discard(new.spi_local)
        self._index_identity(new)
        self.sas[new.spi_local] = new

    def ike_rekey_done(self, old: IkeSa, new: IkeSa, *, initiator: bool,
                       nonces: tuple[bytes, bytes]) -> None:
        """A rekey produced ``new`` for ``old``; settle collisions (§2.8.2) and hand over."""
        prev: IkeSa | None = old.ext_get("successor")
        if prev is not None and prev.state != IkeState.DESTROYED:
            self.counters["ike-rekey-collisions"] += 1
            prev_nonces: tuple[bytes, bytes] = old.ext_get("successor_nonces")
            redundant, winner = (new, prev) if min(nonces) < min(prev_nonces) else (prev, new)
            old.ext_set("successor", winner)
            old.ext_set("successor_nonces", nonces if winner is new else prev_nonces)
            self.adopt_children(redundant, winner)
            self._activate(winner, old)
            if winner is new:  # extensions were told about the loser first: now the winner
                for ext in self.extensions:
                    ext.ike_rekeyed(old, new, initiator)
            redundant.state = IkeState.REKEYED
            if redundant.initiator:  # we created it: we delete it
                self.queue_task(redundant, IkeDelete(self, redundant, _INFO))
            else:
                # the peer created it and should delete it, but a peer that settled the
                # collision its own way never does (charon aborts its rekey when our Delete
                # of the old SA overtakes its response): forget it ourselves then
                self.schedule(self.now + 60.0, self._rekeyed_expired, redundant)
            if winner.initiator:
                self._delete_rekeyed(old)
            return
        old.ext_set("successor", new)
        old.ext_set("successor_nonces", nonces)
        old.state = IkeState.REKEYED
        self.adopt_children(old, new)
        self._activate(new, old)
        self.counters["ike-rekeys"] += 1
        for ext in self.extensions:
            ext.ike_rekeyed(old, new, initiator)
        if initiator:
            self._delete_rekeyed(old)
        else:
            # the peer deletes the old SA; forget it ourselves if it never does
            self.schedule(self.now + 60.0, self._rekeyed_expired, old)

    def _activate(self, new: IkeSa, old: IkeSa) -> None:
        if new.state == IkeState.ESTABLISHED:
            return
        new.state = IkeState.ESTABLISHED
        new.established_at = self.now
        self._cancel_ike_timers(old)
        self._arm_ike_timers(new)
        assert new.suite is not None
        self._events.append(ev.IkeSaUp(
            self.now, new.uid, new.name, new.spi_i, new.spi_r, new.local, new.remote,
            new.initiator, new.local_id, new.remote_id, new.suite.keyword(), old.uid,
        ))

    def _delete_rekeyed(self, old: IkeSa) -> None:
        if _has_task(old, "ike-delete"):
            return
        old.queued.insert(0, IkeDelete(self, old, _INFO))
        self._initiate_next(old)

    def _rekeyed_expired(self, old: IkeSa) -> None:
        if old.state == IkeState.REKEYED:
            self.destroy_ike(old, "rekeyed", restart=False)

    def _install_traps(self, conn: ConnectionConfig) -> None:
        for child in conn.children:
            if StartAction.TRAP in child.start_action:
                local_ts, remote_ts = self.policy.trap_selectors(conn, child)
                self.dataplane.install_trap(TrapSpec(conn.name, child.name, local_ts, remote_ts))

    def _addr(self, a: Address) -> Any:
        from ipaddress import ip_address

        return (ip_address(a[0]), a[1])


def _has_task(sa: IkeSa, kind: str) -> bool:
    """A task of this kind is queued or running on the SA."""
    return any(t.kind == kind for t in (*sa.queued, *sa.active))


@functools.lru_cache(maxsize=4096)
def _sel_str(s: Any) -> str:
    """A selector as text for events; cached, as 10,000 tunnels share few selector shapes."""
    if s.start == s.end:
        net = f"{s.start}/{32 if s.start.version == 4 else 128}"
    else:
        from ipaddress import summarize_address_range

        nets = list(summarize_address_range(s.start, s.end))
        net = str(nets[0]) if len(nets) == 1 else f"{s.start}..{s.end}"
    if s.protocol or (s.start_port, s.end_port) != (0, 65535):
        port = "" if (s.start_port, s.end_port) == (0, 65535) else (
            str(s.start_port) if s.start_port == s.end_port else f"{s.start_port}-{s.end_port}")
        return f"{net}[{s.protocol}{'/' + port if port else ''}]"
    return net
