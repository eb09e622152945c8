"""The daemon's side of the VICI socket: engine state in charon's shapes.

:class:`EngineBackend` answers the commands of :mod:`quickike.control.vici`
from the running engine, and :meth:`EngineBackend.observe` (a daemon
observer) turns engine events into charon's ``ike-updown``, ``child-updown``,
``ike-rekey``, ``child-rekey`` and quickike's ``qcd`` events.

Why it keeps its own index of SAs: an engine event is delivered after the
engine has already moved on (a destroyed SA is no longer in the SA table), yet
charon's down events describe the SA that went down. The backend holds on to
the SA objects from their up event to their down event, which also makes
look-ups by unique id O(1) for the events of 10,000 tunnels.

Connections and secrets loaded over VICI are an overlay on the configuration
file: a SIGHUP or ``reload-settings`` re-reads the file and lays the overlay
on top again, as charon keeps VICI-loaded connections across reloads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..control.config import ConfigError
from ..control.config.errors import config_error
from ..control.config.loader import load_config_tree
from ..control.config.syntax import Section as ConfigSection
from ..control.config.syntax import Setting
from ..control.logs import record_fields
from ..control.vici.backend import (
    BackendError,
    EventSink,
    InitiateRequest,
    LogCallback,
    LogRecord,
    QcdEventKind,
    SaSelector,
    SharedSecret,
    TerminateRequest,
    TerminateResult,
)
from ..control.vici.protocol import Element, OutSection, Section
from ..control.vici.shapes import (
    AuthView,
    ChildConfigView,
    ChildSaView,
    ConnView,
    IkeSaView,
    child_rekey_event,
    child_updown_event,
    ike_rekey_event,
    ike_updown_event,
    log_event,
    qcd_event,
    stats_message,
    version_message,
)
from ..engine import events as ev
from ..engine.config import (
    AuthClass,
    ChildConfig,
    CloseAction,
    ConnectionConfig,
    DpdAction,
    IkeSecret,
    QuickikeConfig,
    Secrets,
    StartAction,
)
from ..engine.sa import ChildSa, ChildState, IkeSa, IkeState
from ..qcd import QcdExtension, SecretStoreError, connection_policy, find_extension, qcd_show
from ..wire.enums import DhGroup, EncrId, IntegId, PrfId

if TYPE_CHECKING:
    from ..crypto.proposals import Suite
    from ..engine import Engine
    from ..engine.dataplane import Selector
    from .daemon import Daemon

log = logging.getLogger("quickike.vici")

#: where VICI-loaded configuration says it came from (in errors and origins)
VICI_ORIGIN = "vici"

#: charon's names for the task kinds of quickike's engine (list-sa tasks-*)
_TASK_NAMES = {
    "ike-init": "IKE_INIT",
    "natd": "IKE_NATD",
    "ike-auth": "IKE_AUTH",
    "child-create": "CHILD_CREATE",
    "child-rekey": "CHILD_REKEY",
    "child-delete": "CHILD_DELETE",
    "ike-rekey": "IKE_REKEY",
    "ike-delete": "IKE_DELETE",
    "liveness": "IKE_DPD",
    "informational": "IKE_INFORMATIONAL",
}
_UNIQUE_NAMES = {"no": "UNIQUE_NO", "never": "UNIQUE_NEVER", "keep": "UNIQUE_KEEP",
                 "replace": "UNIQUE_REPLACE"}
_DPD_NAMES = {DpdAction.CLEAR: "clear", DpdAction.TRAP: "trap", DpdAction.RESTART: "restart"}
_CLOSE_NAMES = {CloseAction.NONE: "clear", CloseAction.TRAP: "trap", CloseAction.START: "restart"}
_PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 47: "gre", 50: "esp", 58: "ipv6-icmp",
                   132: "sctp"}
#: auth-section keys whose values swanctl replaces by file contents before sending
_CREDENTIAL_KEYS = ("certs", "cacerts", "pubkeys")
#: SA down reasons that are part of a rekey (charon publishes ike-rekey/child-rekey instead)
_REKEY_REASONS = frozenset({"rekeyed"})

#: ExtensionEvent kinds of the QCD plug-in -> the ``kind`` of quickike's ``qcd`` event
QCD_KINDS: Mapping[str, QcdEventKind] = MappingProxyType({
    "token-sent": QcdEventKind.TOKEN_SENT,
    "token-accepted": QcdEventKind.TOKEN_ACCEPTED,
    "token-rejected": QcdEventKind.TOKEN_REJECTED,
    "spoof-suspected": QcdEventKind.SPOOF_SUSPECTED,
})


# ---------------------------------------------------------------------- charon names


def encr_name(suite: Suite) -> str:
    return EncrId(int(suite.encr.id)).name


def integ_name(suite: Suite) -> str | None:
    return None if suite.integ is None else IntegId(int(suite.integ.id)).name


def prf_name(suite: Suite) -> str | None:
    return None if suite.prf is None else f"PRF_{PrfId(int(suite.prf.id)).name}"


def dh_name(suite: Suite) -> str | None:
    if suite.dh is None:
        return None
    name = DhGroup(int(suite.dh.id)).name
    return {"CURVE25519": "CURVE_25519", "CURVE448": "CURVE_448"}.get(name, name)


def selector_text(s: Selector) -> str:
    """A traffic selector as charon prints it: ``10.1.0.0/16``, ``10.0.0.1/32[tcp/80]``."""
    if s.start == s.end:
        net = f"{s.start}/{32 if s.start.version == 4 else 128}"
    else:
        nets = list(ipaddress.summarize_address_range(s.start, s.end))
        net = str(nets[0]) if len(nets) == 1 else f"{s.start}..{s.end}"
    full_ports = (s.start_port, s.end_port) == (0, 65535)
    if not s.protocol and full_ports:
        return net
    proto = _PROTOCOL_NAMES.get(s.protocol, str(s.protocol)) if s.protocol else "0"
    if full_ports:
        return f"{net}[{proto}]"
    if (s.start_port, s.end_port) == (65535, 0):
        port = "OPAQUE"
    elif s.start_port == s.end_port:
        port = str(s.start_port)
    else:
        port = f"{s.start_port}-{s.end_port}"
    return f"{net}[{proto}/{port}]"


def _remaining(timer: Any, now: float) -> int | None:
    if timer is None or timer.cancelled:
        return None
    return max(0, int(timer.when - now))


def _spi(data: bytes) -> int:
    return int.from_bytes(data, "big")


# ---------------------------------------------------------------------- waiting for events


class _Watch:
    """Follows the events of one initiate or terminate until it is decided."""

    __slots__ = ("future", "log")

    def __init__(self, log: LogCallback) -> None:
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.log = log

    def feed(self, e: ev.Event) -> bool:
        """Look at one event; True once the outcome is known."""
        raise NotImplementedError

    def succeed(self) -> bool:
        if not self.future.done():
            self.future.set_result(None)
        return True

    def fail(self, message: str) -> bool:
        if not self.future.done():
            self.future.set_exception(BackendError(message))
        return True


class _InitiateWatch(_Watch):
    __slots__ = ("child", "ike_uid", "name", "up")

    def __init__(self, log: LogCallback, ike_uid: int, name: str, child: str | None,
                 up: bool) -> None:
        super().__init__(log)
        self.ike_uid = ike_uid
        self.name = name
        self.child = child
        self.up = up  # the IKE SA was established already (a CHILD riding on it)

    def _record(self, msg: str, group: str, level: int) -> None:
        self.log(LogRecord(msg, group, level, self.name, self.ike_uid))

    def feed(self, e: ev.Event) -> bool:
        uid = self.ike_uid
        what = f"CHILD_SA '{self.child}'" if self.child else f"IKE_SA '{self.name}'"
        if isinstance(e, ev.IkeSaUp) and e.ike_uid == uid and not self.up:
            self.up = True
            self._record(
                f"IKE_SA {e.name}[{uid}] established between {e.local[0]}[{e.local_id}]..."
                f"{e.remote[0]}[{e.remote_id}]", "IKE", 0)
            return self.succeed() if self.child is None else False
        if isinstance(e, ev.ChildSaUp) and e.ike_uid == uid and e.name == self.child \
                and e.rekeyed_from is None:
            self._record(
                f"CHILD_SA {e.name}{{{e.child_uid}}} established with SPIs {e.spi_in.hex()}_i "
                f"{e.spi_out.hex()}_o and TS {' '.join(e.local_ts)} === {' '.join(e.remote_ts)}",
                "CHD", 0)
            return self.succeed()
        if isinstance(e, ev.IkeSetupFailed) and e.ike_uid == uid:
            self._record(f"establishing IKE_SA {e.name}[{uid}] failed: {e.reason}", "IKE", 0)
            return self.fail(f"establishing {what} failed: {e.reason}")
        if isinstance(e, ev.ChildSetupFailed) and e.ike_uid == uid and e.name == self.child:
            self._record(f"establishing CHILD_SA {e.name} failed: {e.reason}", "CHD", 0)
            return self.fail(f"establishing {what} failed: {e.reason}")
        if isinstance(e, ev.IkeSaDown) and e.ike_uid == uid:
            return self.fail(f"establishing {what} failed: IKE_SA went down ({e.reason})")
        if isinstance(e, ev.Retransmit) and e.ike_uid == uid:
            self._record(
                f"retransmit {e.attempt} of request with message ID {e.message_id}", "IKE", 1)
        elif isinstance(e, ev.MessageTrace) and e.ike_uid == uid:
            kind = "response" if e.response else "request"
            verb = "generating" if e.sent else "parsed"
            self._record(
                f"{verb} {e.exchange} {kind} {e.message_id} [ {' '.join(e.payloads)} ]", "ENC", 1)
        return False


class _TerminateWatch(_Watch):
    __slots__ = ("child_uid", "ike_uid", "text")

    def __init__(self, log: LogCallback, ike_uid: int, child_uid: int | None, text: str) -> None:
        super().__init__(log)
        self.ike_uid = ike_uid
        self.child_uid = child_uid
        self.text = text

    def feed(self, e: ev.Event) -> bool:
        if self.child_uid is not None and isinstance(e, ev.ChildSaDown) \
                and e.child_uid == self.child_uid:
            self.log(LogRecord(f"{self.text} closed", "CHD", 1, e.name, e.ike_uid))
            return self.succeed()
        if isinstance(e, ev.IkeSaDown) and e.ike_uid == self.ike_uid:
            group = "IKE" if self.child_uid is None else "CHD"
            self.log(LogRecord(f"{self.text} deleted", group, 1, e.name, e.ike_uid))
            return self.succeed()
        return False


# ---------------------------------------------------------------------- the backend


class EngineBackend:
    """:class:`~quickike.control.vici.backend.ViciBackend` over a running :class:`Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.events: EventSink | None = None
        #: the configuration as read from the file; VICI's overlay goes on top of it
        self.base: QuickikeConfig = daemon.config
        self.vici_conns: dict[str, ConnectionConfig] = {}
        self.vici_secrets: dict[str, IkeSecret] = {}
        self._anonymous_secrets: list[IkeSecret] = []
        self._ike: dict[int, IkeSa] = {}
        self._child: dict[int, ChildSa] = {}
        self._watches: list[_Watch] = []
        self._reqids: dict[tuple[str, str], int] = {}
        #: QCD's control hooks (``show()`` / ``rotate()``), set by the daemon when QCD runs
        self.qcd: QcdControl | None = None
        #: extra names for ``stats`` (``metrics`` when the exporter runs)
        self.plugins: list[str] = ["quickike-engine", "vici"]

    # ------------------------------------------------------------------ helpers

    @property
    def engine(self) -> Engine:
        engine = self.daemon.engine
        if engine is None:
            raise BackendError("the IKE engine is not running")
        return engine

    def _now(self) -> float:
        return self.daemon.now()

    def _reqid(self, child: ChildSa) -> int:
        if child.config.reqid:
            return child.config.reqid
        key = (child.ike.name, child.name)
        reqid = self._reqids.get(key)
        if reqid is None:
            reqid = self._reqids[key] = len(self._reqids) + 1
        return reqid

    def child_view(self, child: ChildSa, now: float) -> ChildSaView:
        suite = child.suite
        counters = self.engine.dataplane.counters(child.spi_in) if child.spi_in else None
        sa = child.ike
        state = child.state.value if child.state != ChildState.DESTROYED else "DELETING"
        return ChildSaView(
            name=child.name,
            uniqueid=child.uid,
            reqid=self._reqid(child),
            spi_in=_spi(child.spi_in),
            spi_out=_spi(child.spi_out),
            state=state,
            mode=child.mode.upper(),
            encap=bool(sa.nat_local or sa.nat_remote or (sa.conn is not None and sa.conn.encap)),
            encr_alg=encr_name(suite) if suite else None,
            encr_keysize=suite.encr.key_bits if suite else None,
            integ_alg=integ_name(suite) if suite else None,
            integ_keysize=(suite.integ.key_size * 8 if suite and suite.integ else None),
            dh_group=dh_name(suite) if suite else None,
            esn=bool(suite and suite.esn),
            bytes_in=counters.bytes_in if counters else 0,
            packets_in=counters.packets_in if counters else 0,
            use_in=(int(now - counters.last_in)
                    if counters and counters.last_in is not None else None),
            bytes_out=counters.bytes_out if counters else 0,
            packets_out=counters.packets_out if counters else 0,
            use_out=(int(now - counters.last_out)
                     if counters and counters.last_out is not None else None),
            rekey_time=_remaining(child.rekey_timer, now),
            life_time=_remaining(child.expire_timer, now),
            install_time=max(0, int(now - child.installed_at)),
            local_ts=[selector_text(s) for s in child.local_ts],
            remote_ts=[selector_text(s) for s in child.remote_ts],
        )

    def ike_view(self, sa: IkeSa, now: float, children: Iterable[ChildSa] | None = None
                 ) -> IkeSaView:
        suite = sa.suite
        state = sa.state.value if sa.state != IkeState.DESTROYED else "DELETING"
        kids = [c for c in sa.children if c.state != ChildState.DESTROYED] \
            if children is None else list(children)
        extra: dict[str, Any] = {}
        if sa.conn is not None:
            extra["qcd"] = "yes" if sa.conn.qcd and self.qcd is not None else "no"
        return IkeSaView(
            name=sa.name,
            uniqueid=sa.uid,
            local_host=sa.local[0],
            local_port=sa.local[1],
            remote_host=sa.remote[0],
            remote_port=sa.remote[1],
            initiator_spi=_spi(sa.spi_i),
            responder_spi=_spi(sa.spi_r),
            initiator=sa.initiator,
            local_id=sa.local_id,
            remote_id=sa.remote_id,
            state=state,
            nat_local=sa.nat_local,
            nat_remote=sa.nat_remote,
            nat_any=sa.nat_local or sa.nat_remote,
            encr_alg=encr_name(suite) if suite else None,
            encr_keysize=suite.encr.key_bits if suite else None,
            integ_alg=integ_name(suite) if suite else None,
            integ_keysize=(suite.integ.key_size * 8 if suite and suite.integ else None),
            prf_alg=prf_name(suite) if suite else None,
            dh_group=dh_name(suite) if suite else None,
            established=max(0, int(now - sa.established_at)) if sa.auth_done else None,
            rekey_time=_remaining(sa.rekey_timer, now),
            reauth_time=_remaining(sa.reauth_timer, now),
            tasks_queued=[_task_name(t) for t in sa.queued],
            tasks_active=[_task_name(t) for t in sa.active],
            tasks_passive=[_task_name(t) for t in sa.passive] if not sa.auth_done else [],
            children=[self.child_view(c, now) for c in kids],
            extra=extra,
        )

    # ------------------------------------------------------------------ queries

    def version(self) -> OutSection:
        return version_message("quickike", __version__)

    def stats(self) -> OutSection:
        eng = self.engine
        return stats_message(
            running_seconds=time.time() - self.daemon.started_at,
            started_at=self.daemon.started_at,
            ikesas_total=sum(1 for sa in eng.ike_sas() if sa.state != IkeState.DESTROYED),
            ikesas_half_open=len(eng.half_open),
            scheduled=len(eng.timers),
            plugins=self.plugins,
        )

    def list_sas(self) -> Iterable[OutSection]:
        now = self._now()
        for sa in self.engine.ike_sas():
            if sa.state != IkeState.DESTROYED:
                yield self.ike_view(sa, now).to_message()

    def list_conns(self) -> Iterable[OutSection]:
        for conn in self.daemon.config.connections.values():
            yield conn_view(conn).to_message()

    def get_conns(self) -> Sequence[str]:
        return list(self.vici_conns)

    def get_shared(self) -> Sequence[str]:
        return list(self.vici_secrets)

    def qcd_show(self) -> OutSection:
        if self.qcd is None:
            raise BackendError("QCD not available: " + self._qcd_absent())
        return dict(self.qcd.show())

    def qcd_rotate(self) -> OutSection:
        if self.qcd is None:
            raise BackendError("QCD not available: " + self._qcd_absent())
        return dict(self.qcd.rotate())

    def _qcd_absent(self) -> str:
        if not self.daemon.config.settings.qcd.enable:
            return "disabled in the configuration (quickike.qcd.enable = no)"
        return "this quickike build has no QCD plug-in"

    # ------------------------------------------------------------------ control

    def _find_conn(self, request: InitiateRequest) -> tuple[ConnectionConfig, ChildConfig | None]:
        conns = self.daemon.config.connections
        if request.child is None:
            assert request.ike is not None
            conn = conns.get(request.ike)
            if conn is None:
                raise BackendError(f"IKE_SA config '{request.ike}' not found")
            return conn, None
        for name, conn in conns.items():
            if request.ike is not None and name != request.ike:
                continue
            child = conn.child(request.child)
            if child is not None:
                return conn, child
        raise BackendError(f"CHILD_SA config '{request.child}' not found")

    async def initiate(self, request: InitiateRequest, log: LogCallback) -> None:
        conn, child = self._find_conn(request)
        eng = self.engine
        was_up = {sa.uid for sa in eng.ike_sas() if sa.usable}
        try:
            uid = eng.initiate(conn.name, child.name if child else None, self._now())
        except (KeyError, ValueError, OSError) as exc:
            raise BackendError(f"initiating '{conn.name}' failed: {exc}") from None
        riding = uid in was_up
        if riding:
            log(LogRecord(f"establishing CHILD_SA {child.name if child else ''}", "CHD", 1,
                          conn.name, uid))
        else:
            sa = eng.find_ike(uid)
            remote = sa.remote[0] if sa is not None else "?"
            log(LogRecord(f"initiating IKE_SA {conn.name}[{uid}] to {remote}", "IKE", 1,
                          conn.name, uid))
        watch = _InitiateWatch(log, uid, conn.name, child.name if child else None, riding)
        await self._watch([watch])

    async def terminate(self, request: TerminateRequest, log: LogCallback) -> TerminateResult:
        eng = self.engine
        now = self._now()
        targets = self._select(request.selector)
        started: list[_Watch] = []
        for sa, child in targets:
            if child is None:
                log(LogRecord(
                    f"deleting IKE_SA {sa.name}[{sa.uid}] between {sa.local[0]}[{sa.local_id}]..."
                    f"{sa.remote[0]}[{sa.remote_id}]", "IKE", 1, sa.name, sa.uid))
                watch = _TerminateWatch(log, sa.uid, None, f"IKE_SA {sa.name}[{sa.uid}]")
                ok = eng.terminate_ike(sa.uid, now, force=request.force)
            else:
                log(LogRecord(
                    f"closing CHILD_SA {child.name}{{{child.uid}}} with SPIs "
                    f"{child.spi_in.hex()}_i {child.spi_out.hex()}_o and TS "
                    f"{' '.join(selector_text(s) for s in child.local_ts)} === "
                    f"{' '.join(selector_text(s) for s in child.remote_ts)}",
                    "CHD", 1, sa.name, sa.uid))
                watch = _TerminateWatch(log, sa.uid, child.uid,
                                        f"CHILD_SA {child.name}{{{child.uid}}}")
                ok = eng.terminate_child(child.uid, now)
            if ok:
                started.append(watch)
        if not started:
            return TerminateResult(matches=len(targets), terminated=0)
        results = await self._watch(started, return_exceptions=True)
        done = sum(1 for r in results if not isinstance(r, BaseException))
        return TerminateResult(matches=len(targets), terminated=done)

    async def _watch(self, watches: list[_Watch], *, return_exceptions: bool = False
                     ) -> list[Any]:
        """Follow engine events until every watch is decided (or the command is cancelled)."""
        self._watches.extend(watches)
        try:
            self.daemon.pump()
            return list(await asyncio.gather(*(w.future for w in watches),
                                             return_exceptions=return_exceptions))
        finally:
            for w in watches:
                if w in self._watches:
                    self._watches.remove(w)
                w.future.cancel()  # a cancelled command: nobody will read the outcome

    def _select(self, selector: SaSelector) -> list[tuple[IkeSa, ChildSa | None]]:
        found: list[tuple[IkeSa, ChildSa | None]] = []
        for sa in self.engine.ike_sas():
            if sa.state in (IkeState.DESTROYED, IkeState.REKEYED):
                continue
            if selector.ike is not None and sa.name != selector.ike:
                continue
            if selector.ike_id is not None and sa.uid != selector.ike_id:
                continue
            if not selector.targets_children:
                found.append((sa, None))
                continue
            for child in sa.children:
                if child.state not in (ChildState.INSTALLED, ChildState.REKEYING):
                    continue
                if selector.child is not None and child.name != selector.child:
                    continue
                if selector.child_id is not None and child.uid != selector.child_id:
                    continue
                found.append((sa, child))
        return found

    def rekey(self, selector: SaSelector, reauth: bool) -> int:
        eng = self.engine
        now = self._now()
        matches = 0
        for sa, child in self._select(selector):
            if child is not None:
                matches += bool(eng.rekey_child(child.uid, now))
            elif reauth:
                matches += eng.reestablish(sa, "reauth", make_before_break=True) is not None
            else:
                matches += bool(eng.rekey_ike(sa.uid, now))
        self.daemon.pump()
        return matches

    def reload_settings(self) -> None:
        if not self.daemon.reload():
            raise BackendError("reloading the configuration failed; see the daemon's log")

    # ------------------------------------------------------------------ configuration

    def rebase(self, base: QuickikeConfig) -> QuickikeConfig:
        """A new file configuration: remember it and return it with the VICI overlay on top."""
        self.base = base
        return self.effective()

    def effective(self) -> QuickikeConfig:
        base = self.base
        if not self.vici_conns and not self.vici_secrets and not self._anonymous_secrets:
            return base
        connections = dict(base.connections)
        connections.update(self.vici_conns)
        secrets = Secrets(
            ike=(*self.vici_secrets.values(), *self._anonymous_secrets, *base.secrets.ike),
            private=base.secrets.private,
        )
        return dataclasses.replace(
            base, connections=MappingProxyType(connections), secrets=secrets
        )

    def _apply(self) -> None:
        config = self.effective()
        self.daemon.config = config
        self.engine.load_config(config, self._now())
        self.daemon.pump()

    def _load_tree(self, root: ConfigSection, what: str) -> QuickikeConfig:
        try:
            config, warnings = load_config_tree(root)
        except ConfigError as exc:
            raise BackendError(exc.message) from None
        for w in warnings:
            log.warning("%s: %s", what, w.message)
        return config

    def load_conn(self, name: str, config: Section) -> None:
        _refuse_credentials(name, config)
        root = ConfigSection("", VICI_ORIGIN, 0)
        settings = ConfigSection("quickike", VICI_ORIGIN, 0)
        settings.settings["port"] = Setting("port", str(self.daemon.config.settings.port),
                                            VICI_ORIGIN, 0)
        root.sections["quickike"] = settings
        conns = ConfigSection("connections", VICI_ORIGIN, 0)
        conns.sections[name] = _config_section(name, config, f"connection '{name}'")
        root.sections["connections"] = conns
        conn = self._load_tree(root, f"load-conn {name}").connections[name]
        self._check_qcd_options(conn)
        old = self.daemon.config.connections.get(name)
        self.vici_conns[name] = conn
        self._apply()
        log.info("vici: loaded connection '%s'", name)
        if old != conn:
            starting = [c.name for c in conn.children if StartAction.START in c.start_action]
            for child in starting:
                try:
                    self.engine.initiate(name, child, self._now())
                except (KeyError, ValueError) as exc:
                    log.warning("vici: start_action of '%s/%s' not run: %s", name, child, exc)
            if starting:
                self.daemon.pump()

    def _check_qcd_options(self, conn: ConnectionConfig) -> None:
        """A bad ``qcd_options`` key is refused here, as at start, not switched off later."""
        ext = find_qcd(self.engine)
        if ext is None:
            return
        try:
            connection_policy(conn, ext.policy)
        except ValueError as exc:
            raise BackendError(str(exc)) from None

    def unload_conn(self, name: str) -> None:
        conn = self.vici_conns.pop(name, None)
        if conn is None:
            if name in self.base.connections:
                raise BackendError(
                    f"connection '{name}' comes from the configuration file; remove it there"
                )
            raise BackendError(f"unloading connection '{name}' failed, not found")
        self._apply()
        # like charon: undo start actions, closing the tunnels they started
        if any(StartAction.START in c.start_action for c in conn.children):
            now = self._now()
            for sa in self.engine.ike_sas():
                if sa.conn == conn and sa.state != IkeState.DESTROYED:
                    self.engine.terminate_ike(sa.uid, now)
            self.daemon.pump()
        log.info("vici: unloaded connection '%s'", name)

    def load_shared(self, secret: SharedSecret) -> None:
        if secret.type != "ike":
            raise BackendError(
                f"{secret.type.upper()} secrets are not supported by quickike (only IKE PSKs)"
            )
        section_name = "ike-vici"
        root = ConfigSection("", VICI_ORIGIN, 0)
        secrets = ConfigSection("secrets", VICI_ORIGIN, 0)
        sec = ConfigSection(section_name, VICI_ORIGIN, 0)
        sec.settings["secret"] = Setting("secret", "0x" + secret.data.hex(), VICI_ORIGIN, 0)
        for i, owner in enumerate(secret.owners):
            sec.settings[f"id-{i}"] = Setting(f"id-{i}", owner, VICI_ORIGIN, 0)
        secrets.sections[section_name] = sec
        root.sections["secrets"] = secrets
        what = f"shared secret '{secret.id}'" if secret.id else "shared secret"
        loaded = self._load_tree(root, f"load-shared {secret.id or ''}").secrets.ike[0]
        loaded = dataclasses.replace(loaded, name=secret.id or "vici", origin=VICI_ORIGIN)
        if secret.id is None:
            self._anonymous_secrets.append(loaded)
        else:
            self.vici_secrets[secret.id] = loaded
        self._apply()
        log.info("vici: loaded %s", what)

    def unload_shared(self, secret_id: str) -> None:
        if self.vici_secrets.pop(secret_id, None) is None:
            raise BackendError(f"unloading shared secret '{secret_id}' failed, not found")
        self._apply()

    # ------------------------------------------------------------------ events

    def observe(self, e: ev.Event) -> None:
        """Daemon observer: keep the SA index, decide watches, publish charon's events."""
        for watch in list(self._watches):
            if watch.feed(e) and watch in self._watches:
                self._watches.remove(watch)
        if isinstance(e, ev.IkeSaUp):
            self._ike_up(e)
        elif isinstance(e, ev.IkeSaDown):
            self._ike_down(e)
        elif isinstance(e, ev.ChildSaUp):
            self._child_up(e)
        elif isinstance(e, ev.ChildSaDown):
            self._child_down(e)
        elif isinstance(e, ev.ExtensionEvent) and e.source == "qcd":
            self._qcd(e)

    def _listening(self, name: str) -> EventSink | None:
        sink = self.events
        return sink if sink is not None and sink.has_listeners(name) else None

    def _ike_up(self, e: ev.IkeSaUp) -> None:
        eng = self.engine
        sa = eng.sas.get(e.spi_i if e.initiator else e.spi_r)
        if sa is None or sa.uid != e.ike_uid:
            return
        self._ike[sa.uid] = sa
        if e.rekeyed_from is not None:
            old = self._ike.get(e.rekeyed_from)
            sink = self._listening("ike-rekey")
            if sink is not None and old is not None:
                now = self._now()
                sink.publish_event("ike-rekey", ike_rekey_event(
                    self.ike_view(old, now, ()), self.ike_view(sa, now, ())))
            return
        sink = self._listening("ike-updown")
        if sink is not None:
            sink.publish_event("ike-updown", ike_updown_event(self.ike_view(sa, self._now()), True))

    def _ike_down(self, e: ev.IkeSaDown) -> None:
        sa = self._ike.pop(e.ike_uid, None)
        if sa is None or not e.established or e.reason in _REKEY_REASONS:
            return
        sink = self._listening("ike-updown")
        if sink is not None:
            sink.publish_event("ike-updown", ike_updown_event(
                self.ike_view(sa, self._now(), ()), False))

    def _child_up(self, e: ev.ChildSaUp) -> None:
        child = self.engine.children_in.get(e.spi_in)
        if child is None or child.uid != e.child_uid:
            return
        self._child[child.uid] = child
        now = self._now()
        if e.rekeyed_from is not None:
            old = self._child.get(e.rekeyed_from)
            sink = self._listening("child-rekey")
            if sink is not None and old is not None:
                sink.publish_event("child-rekey", child_rekey_event(
                    self.ike_view(child.ike, now, ()), self.child_view(old, now),
                    self.child_view(child, now)))
            return
        sink = self._listening("child-updown")
        if sink is not None:
            sink.publish_event("child-updown", child_updown_event(
                self.ike_view(child.ike, now, ()), self.child_view(child, now), True))

    def _child_down(self, e: ev.ChildSaDown) -> None:
        child = self._child.pop(e.child_uid, None)
        if child is None or e.reason in _REKEY_REASONS:
            return
        sink = self._listening("child-updown")
        if sink is not None:
            now = self._now()
            sink.publish_event("child-updown", child_updown_event(
                self.ike_view(child.ike, now, ()), self.child_view(child, now), False))

    def _qcd(self, e: ev.ExtensionEvent) -> None:
        sink = self._listening("qcd")
        if sink is None:
            return
        sa = self._ike.get(e.ike_uid) if e.ike_uid is not None else None
        attrs = e.attrs
        remote = attrs.get("remote") or attrs.get("source")
        host: str | None = sa.remote[0] if sa is not None else None
        port: int | None = sa.remote[1] if sa is not None else None
        if isinstance(remote, tuple | list) and len(remote) == 2:
            host, port = str(remote[0]), int(remote[1])
        spi_i = _spi_attr(attrs.get("spi_i"), sa.spi_i if sa is not None else None)
        spi_r = _spi_attr(attrs.get("spi_r"), sa.spi_r if sa is not None else None)
        detail = attrs.get("reason") or attrs.get("evidence") or attrs.get("via")
        known = QCD_KINDS.get(e.kind)
        message = qcd_event(
            known or QcdEventKind.TOKEN_SENT,
            ike_name=sa.name if sa is not None else None,
            ike_uniqueid=e.ike_uid,
            remote_host=host,
            remote_port=port,
            initiator_spi=spi_i,
            responder_spi=spi_r,
            msg=f"QCD {e.kind}" + (f" ({detail})" if detail else ""),
        )
        # quickike's plug-in reports more than the four kinds of the QcdEventKind table
        # (teardown, reestablished, token-given, ...): same shape, their own kind names
        message["kind"] = known.value if known is not None else e.kind
        for key in ("detection_time", "reestablish_time", "mode", "generation"):
            value = attrs.get(key)
            if isinstance(value, float):
                message[key.replace("_", "-")] = f"{value:.6f}"
            elif isinstance(value, int | str):
                message[key.replace("_", "-")] = value
        sink.publish_event("qcd", message)

    def ike_spis(self, uid: int) -> tuple[bytes, bytes] | None:
        """SPIs of an established IKE SA by unique id (for log lines)."""
        sa = self._ike.get(uid)
        return None if sa is None else (sa.spi_i, sa.spi_r)


def _spi_attr(value: object, fallback: bytes | None) -> int | None:
    """An SPI from a QCD event attribute (bytes or hex text) or the SA's own."""
    if isinstance(value, bytes) and len(value) == 8:
        return _spi(value)
    if isinstance(value, str) and len(value) == 16:
        try:
            return int(value, 16)
        except ValueError:
            pass
    return _spi(fallback) if fallback is not None else None


def _task_name(task: Any) -> str:
    kind = str(getattr(task, "kind", type(task).__name__))
    return _TASK_NAMES.get(kind, kind.upper().replace("-", "_"))


# ---------------------------------------------------------------------- QCD


def find_qcd(engine: Engine) -> QcdExtension | None:
    """The engine's running QCD plug-in, or None (not added, or disabled)."""
    ext = find_extension(engine)
    return ext if ext is not None and ext.enabled else None


def _vici_value(value: object) -> Any:
    """QCD status values in VICI form: yes/no, text numbers, sections for lists."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, int | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _vici_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return {str(i): _vici_value(v) for i, v in enumerate(value, 1)}
    return None if value is None else str(value)


class QcdControl:
    """``qcd-show`` and ``qcd-rotate`` on the engine's QCD plug-in."""

    def __init__(self, engine: Engine, pump: Callable[[], None]) -> None:
        self.engine = engine
        self.pump = pump

    def show(self) -> dict[str, Any]:
        status = qcd_show(self.engine).as_dict()
        sas: list[dict[str, Any]] = list(status.pop("sas", ()))  # type: ignore[call-overload]
        out: dict[str, Any] = {k: _vici_value(v) for k, v in status.items() if v is not None}
        out["sas"] = {f"{sa['name']}-{sa['ike_uid']}": _vici_value(sa) for sa in sas}
        return out

    def rotate(self) -> dict[str, Any]:
        ext = find_qcd(self.engine)
        if ext is None:
            raise BackendError("QCD not available: the plug-in is not running")
        try:
            secrets = ext.rotate()
        except SecretStoreError as exc:
            raise BackendError(f"QCD secret rotation failed: {exc}") from None
        self.pump()  # tokens of SAs whose generation was dropped are replaced now
        current = secrets.current
        return {"generation": current.number, "fingerprint": current.fingerprint,
                "kept": [str(n) for n in sorted(secrets.numbers())]}


# ---------------------------------------------------------------------- list-conns


def conn_view(conn: ConnectionConfig) -> ConnView:
    """A loaded connection in charon's list-conn shape."""

    def auth(a: Any) -> AuthView:
        ident = a.id
        return AuthView(
            auth_class="pre-shared key" if a.auth == AuthClass.PSK else "public key",
            id=None if ident is None or ident.is_any else str(ident),
            certs=list(a.certs),
            cacerts=list(a.cacerts),
        )

    return ConnView(
        name=conn.name,
        local_addrs=[str(a) for a in conn.local_addrs],
        remote_addrs=[str(a) for a in conn.remote_addrs],
        version="IKEv2",
        reauth_time=int(conn.reauth_time),
        rekey_time=int(conn.rekey_time),
        unique=_UNIQUE_NAMES.get(conn.unique.value, "UNIQUE_NO"),
        dpd_delay=int(conn.dpd_delay),
        dpd_timeout=int(conn.dpd_timeout),
        local_auths=[auth(a) for a in conn.local],
        remote_auths=[auth(a) for a in conn.remote],
        children=[
            ChildConfigView(
                name=c.name,
                mode=c.mode.value.upper(),
                rekey_time=int(c.rekey_time),
                rekey_bytes=c.rekey_bytes,
                rekey_packets=c.rekey_packets,
                dpd_action=_DPD_NAMES[c.dpd_action],
                close_action=_CLOSE_NAMES[c.close_action],
                local_ts=[str(t) for t in c.local_ts],
                remote_ts=[str(t) for t in c.remote_ts],
            )
            for c in conn.children
        ],
        extra={"qcd": "yes" if conn.qcd else "no"},
    )


# ---------------------------------------------------------------------- VICI -> section tree


def _text(value: bytes, where: str) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise BackendError(f"{where}: value is not UTF-8 text") from None
    if "\n" in text or "\0" in text:
        raise BackendError(f"{where}: value contains a line break or NUL")
    return text


def _config_section(name: str, message: Mapping[str, Element], where: str,
                    depth: int = 0) -> ConfigSection:
    """The swanctl.conf section a VICI message stands for (lists become comma lists)."""
    sec = ConfigSection(name, VICI_ORIGIN, 0)
    for key, value in message.items():
        label = f"{where}: '{key}'"
        if isinstance(value, dict):
            sec.sections[key] = _config_section(key, value, where, depth + 1)
        elif isinstance(value, list):
            items = [_text(v, label) for v in value]
            if any("," in item for item in items):
                raise BackendError(f"{label}: list items must not contain commas")
            if items:
                sec.settings[key] = Setting(key, ", ".join(items), VICI_ORIGIN, 0)
        else:
            sec.settings[key] = Setting(key, _text(value, label), VICI_ORIGIN, 0)
    return sec


def _refuse_credentials(name: str, config: Section) -> None:
    """swanctl sends certificate and key *contents*; quickike reads them from files only."""
    for key, value in config.items():
        if not isinstance(value, dict) or not key.lower().startswith(("local", "remote")):
            continue
        for cred in _CREDENTIAL_KEYS:
            if value.get(cred):
                raise BackendError(
                    f"connection '{name}': {key}.{cred} cannot be loaded over VICI (swanctl "
                    "sends certificate contents); configure certificates in quickike's "
                    "configuration file"
                )


# ---------------------------------------------------------------------- log forwarding

#: event names of quickike.control.logs -> charon's debug groups
_EVENT_GROUPS = {
    "ike-up": "IKE", "ike-down": "IKE", "ike-failed": "IKE", "liveness": "IKE",
    "dead-peer": "IKE", "retransmit": "IKE", "child-up": "CHD", "child-down": "CHD",
    "child-failed": "CHD", "message": "ENC", "drop": "NET",
}
_LOGGER_GROUPS = (
    ("quickike.engine", "IKE"), ("quickike.qcd", "IKE"), ("quickike.daemon", "DMN"),
    ("quickike.dataplane", "ESP"), ("quickike.vici", "CFG"), ("quickike.control", "CFG"),
)


class ViciLogHandler(logging.Handler):
    """Forwards the daemon's log records as VICI ``log`` events while someone listens.

    Records may come from any thread (the data plane's); they are handed to the
    event loop, and a record produced while publishing (the server logging that
    it dropped a slow client) is not forwarded again.
    """

    def __init__(self, sink: EventSink, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink
        self.loop = loop
        self._thread = threading.get_ident()
        self._busy = False

    def emit(self, record: logging.LogRecord) -> None:
        if self._busy or not self.sink.has_listeners("log"):
            return
        try:
            fields = record_fields(record) or {}
            group = _EVENT_GROUPS.get(str(fields.get("event", "")))
            if group is None:
                group = next((g for prefix, g in _LOGGER_GROUPS
                              if record.name.startswith(prefix)), "DMN")
            if str(fields.get("event", "")).startswith("qcd-"):
                group = "IKE"
            level = 2 if record.levelno < logging.INFO else (
                1 if record.levelno < logging.ERROR else 0)
            uid = fields.get("ike_uid")
            message = log_event(
                record.getMessage(), group=group, level=level,
                ike_name=fields.get("name") if uid is not None else None,
                ike_uniqueid=uid if isinstance(uid, int) else None,
            )
        except Exception:
            self.handleError(record)
            return
        if threading.get_ident() == self._thread:
            self._publish(message)
        else:
            self.loop.call_soon_threadsafe(self._publish, message)

    def _publish(self, message: OutSection) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            self.sink.publish_event("log", message)
        finally:
            self._busy = False


class SpiTagger(logging.Filter):
    """Adds the IKE SPIs to the structured fields of every event that names an IKE SA.

    Engine events about CHILD SAs, retransmissions or QCD carry only the IKE
    SA's unique id; with the SPIs on every JSON line, one tunnel's story can be
    followed by either (and matched with captures and the peer's logs).
    """

    def __init__(self, lookup: Callable[[int], tuple[bytes, bytes] | None]) -> None:
        super().__init__()
        self.lookup = lookup

    def filter(self, record: logging.LogRecord) -> bool:
        fields = getattr(record, "qi_fields", None)
        if isinstance(fields, dict):
            if "spi_i" not in fields:
                uid = fields.get("ike_uid")
                if isinstance(uid, int):
                    spis = self.lookup(uid)
                    if spis is not None:
                        fields["spi_i"], fields["spi_r"] = spis[0].hex(), spis[1].hex()
            return True
        event = getattr(record, "qi_event", None)
        uid = getattr(event, "ike_uid", None)
        if isinstance(uid, int) and not hasattr(event, "spi_i"):
            # looked up now (the SA may be gone by the time a formatter runs), formatted later
            record.qi_spis = self.lookup(uid)
        return True


def socket_options(config: QuickikeConfig) -> tuple[int, int | None]:
    """(mode, group id) of the socket file from ``quickike { vici { mode, group } }``."""
    raw = config.settings.extra.get("vici", {})
    mode_text = raw.get("mode") if isinstance(raw, Mapping) else None
    group_text = raw.get("group") if isinstance(raw, Mapping) else None
    mode = 0o600
    if isinstance(mode_text, str):
        try:
            mode = int(mode_text, 8)
        except ValueError:
            raise config_error(config, "quickike.vici.mode",
                               f"'{mode_text}' is not an octal mode") from None
        if mode & ~0o777 or mode & 0o007:
            raise config_error(config, "quickike.vici.mode",
                               f"{mode_text} must be at most 0770 (never world access)")
    gid: int | None = None
    if isinstance(group_text, str) and group_text:
        import grp

        try:
            gid = int(group_text) if group_text.isdigit() else grp.getgrnam(group_text).gr_gid
        except KeyError:
            raise config_error(config, "quickike.vici.group",
                               f"no group named '{group_text}'") from None
    return mode, gid

