"""The asyncio driver: sockets and the event loop's clock around one engine.

Everything protocol-related happens in the engine; this module moves bytes
between sockets and the engine, arms one loop timer for the engine's next
deadline, and hands engine events to observers (logs, VICI, metrics). The
loop's clock (monotonic) is the engine's clock.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import importlib
import logging
import os
import pkgutil
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..control.config import ConfigError, load_config
from ..control.config.errors import config_error
from ..control.logs import log_event, setup_logging
from ..control.metrics import EngineMetrics, MetricsServer, MetricsUnavailable
from ..control.vici.address import vici_socket_of
from ..control.vici.server import ServerError, ViciServer
from ..crypto.rng import SystemRandomSource
from ..dataplane.errors import DataPlaneError
from ..dataplane.tun import PacketIO
from ..engine import Datagram, Engine
from ..engine import events as ev
from ..engine.config import DataplaneKind, QuickikeConfig
from ..engine.dataplane import DataPlane, NullDataPlane, RecordingDataPlane
from ..engine.extension import Extension
from ..qcd import (
    FileSecretStore,
    QcdConfigError,
    QcdExtension,
    SecretStoreError,
    SqliteChildSpiMap,
    parse_qcd_settings,
)
from ..wire.framing import Kind, classify_marked
from .sockets import UdpSocket, source_address_for
from .vici_backend import (
    EngineBackend,
    QcdControl,
    SpiTagger,
    ViciLogHandler,
    find_qcd,
    socket_options,
)

if TYPE_CHECKING:
    from .dataplane_glue import UserspaceGlue

log = logging.getLogger("quickike.daemon")

Observer = Callable[[ev.Event], None]


class Daemon:
    """One running gateway: configuration, engine, sockets, observers."""

    def __init__(
        self,
        config: QuickikeConfig,
        *,
        config_path: str | None = None,
        state_dir: str | None = None,
        keylog: str | None = None,
        extensions: list[Extension] | None = None,
        dataplane: DataPlane | None = None,
        trace: bool = False,
        host: str = "",
        ipv6: bool = True,
        control: bool = False,
        tun: PacketIO | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.state_dir = state_dir or config.settings.state_dir
        self.keylog_path = keylog or config.settings.keylog
        self.host = host
        self.ipv6 = ipv6
        self.loop: asyncio.AbstractEventLoop | None = None
        self.sockets: dict[tuple[int, int], UdpSocket] = {}
        self.observers: list[Observer] = [log_event]
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._stopped: asyncio.Future[int] | None = None
        self._keylog_file: Any = None
        self._extensions = extensions or []
        self._dataplane = dataplane
        #: ``dataplane = userspace``: its TUN device (None: open the configured one)
        self._tun = tun
        self.glue: UserspaceGlue | None = None
        self._trace = trace
        self.engine: Engine | None = None
        self.started_at = time.time()
        #: VICI control socket, metrics and log forwarding (``quickike run``; not the demo)
        self.control = control
        self.backend: EngineBackend | None = None
        self.vici: ViciServer | None = None
        self.metrics: EngineMetrics | None = None
        self._metrics_server: MetricsServer | None = None
        self._log_hooks: tuple[logging.Handler, logging.Filter] | None = None

    # ------------------------------------------------------------------ life cycle

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def now(self) -> float:
        """The engine's clock (the event loop's monotonic time)."""
        return self._now()

    def _make_dataplane(self) -> DataPlane:
        if self._dataplane is not None:
            return self._dataplane
        kind = self.config.settings.dataplane
        if kind == DataplaneKind.USERSPACE:
            from .dataplane_glue import UserspaceGlue

            self.glue = UserspaceGlue(self, tun=self._tun)
            return self.glue.dataplane
        if kind == DataplaneKind.RECORDING:
            return RecordingDataPlane()
        return NullDataPlane()  # none: nothing kept per CHILD SA

    def _keylog(self, line: str) -> None:
        if self._keylog_file is not None:
            self._keylog_file.write(line + "\n")
            self._keylog_file.flush()

    async def start(self) -> None:
        """Open sockets and start the engine (start_action=start connections initiate)."""
        self.loop = asyncio.get_running_loop()
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        if self.keylog_path:
            fd = os.open(self.keylog_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._keylog_file = os.fdopen(fd, "a", encoding="ascii")
            log.warning("writing IKE keys to %s (Wireshark decryption table)", self.keylog_path)
        self.engine = Engine(
            self.config,
            rng=SystemRandomSource(),
            dataplane=self._make_dataplane(),
            extensions=self._extensions,
            trace=self._trace or logging.getLogger("quickike").isEnabledFor(logging.DEBUG),
            source_address=source_address_for,
            keylog=self._keylog if self._keylog_file is not None else None,
            epoch_offset=time.time() - self._now(),
            now=self._now(),
        )
        if self.control:
            await self._start_control()
        warm_up(self.config)
        s = self.config.settings
        families = [socket.AF_INET] + ([socket.AF_INET6] if self.ipv6 and socket.has_ipv6 else [])
        for family in families:
            host = self.host if (":" in self.host) == (family == socket.AF_INET6) else ""
            if self.host and not host:
                continue
            for port in dict.fromkeys((s.port, s.port_nat_t)):
                try:
                    sock = UdpSocket(family, port, marker=port != 500, host=host)
                except OSError as e:
                    if family == socket.AF_INET6:
                        log.info("no IPv6 socket on port %d: %s", port, e)
                        continue
                    hint = " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" \
                        if e.errno == errno.EACCES and port < 1024 else ""
                    raise OSError(e.errno, f"cannot bind UDP port {port}: {e.strerror}{hint}") from e
                self.sockets[(family, port)] = sock
                self.loop.add_reader(sock.fileno(), self._readable, sock)
        if self.glue is not None:
            self.glue.attach()  # reads TUN and the IPv4 NAT-T socket from now on
        log.info(
            "listening on %s",
            ", ".join(f"{'v6' if f == socket.AF_INET6 else 'v4'}:{p}" for f, p in self.sockets),
        )
        self.engine.start(self._now())
        self.pump()

    async def _start_control(self) -> None:
        """VICI socket, metrics endpoint and log forwarding, before any SA exists."""
        assert self.engine is not None and self.loop is not None
        backend = EngineBackend(self)
        self.backend = backend
        self.observers.append(backend.observe)
        settings = self.config.settings
        if settings.metrics.enable:
            try:
                metrics = EngineMetrics(lambda: self.engine)
                server = MetricsServer(metrics, settings.metrics.host, settings.metrics.port)
                await server.start()
            except MetricsUnavailable as e:
                log.error("metrics disabled: %s", e)
            else:
                self.engine.add_extension(metrics.extension)
                self.metrics, self._metrics_server = metrics, server
                self.observers.append(metrics.observe)
                backend.plugins.append("metrics")
        if find_qcd(self.engine) is not None:
            backend.plugins.insert(1, "qcd")
            backend.qcd = QcdControl(self.engine, self.pump)
        uri = vici_socket_of(self.config, self.state_dir)
        mode, gid = socket_options(self.config)
        try:
            vici = ViciServer(backend, uri, mode=mode)
        except ValueError as e:  # a tcp:// URI: not served (local control only)
            raise config_error(self.config, "quickike.vici_socket", str(e)) from None
        await vici.start()
        if gid is not None:
            os.chown(vici.path, -1, gid)
        self.vici = vici
        backend.events = vici
        handler = ViciLogHandler(vici, self.loop)
        tagger = SpiTagger(backend.ike_spis)
        root = logging.getLogger("quickike")
        root.addHandler(handler)
        root.addFilter(tagger)
        self._log_hooks = (handler, tagger)

    async def _stop_control(self) -> None:
        if self._log_hooks is not None:
            root = logging.getLogger("quickike")
            root.removeHandler(self._log_hooks[0])
            root.removeFilter(self._log_hooks[1])
            self._log_hooks = None
        vici, self.vici = self.vici, None
        if vici is not None:
            await vici.close()
        server, self._metrics_server = self._metrics_server, None
        if server is not None:
            await server.close()

    def close(self) -> None:
        if self.glue is not None:
            self.glue.close()
            self.glue = None
        if self.loop is not None:
            for sock in self.sockets.values():
                self.loop.remove_reader(sock.fileno())
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._keylog_file is not None:
            self._keylog_file.close()
            self._keylog_file = None

    async def serve(self, *, handle_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT (clean shutdown with Deletes); SIGHUP reloads."""
        try:
            await self.start()
        except BaseException:
            await self._stop_control()  # e.g. the UDP ports were taken: no socket left behind
            self.close()
            raise
        assert self.loop is not None
        self._stopped = self.loop.create_future()
        if handle_signals:
            self.loop.add_signal_handler(signal.SIGTERM, self.stop)
            self.loop.add_signal_handler(signal.SIGINT, self.stop)
            self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            return await self._stopped
        finally:
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    self.loop.remove_signal_handler(sig)
            await self._stop_control()
            self.close()

    def stop(self, code: int = 0) -> None:
        if self.engine is not None:
            log.info("shutting down: deleting SAs")
            self.engine.shutdown(self._now())
            self.pump()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(code)

    def reload(self) -> bool:
        """Re-read the configuration file (SIGHUP, VICI reload-settings); False if unusable."""
        if self.config_path is None or self.engine is None:
            return False
        try:
            config, warnings = load_config(self.config_path)
        except (ConfigError, OSError) as e:
            log.error("reload failed, keeping the old configuration: %s", e)
            return False
        for w in warnings:
            log.warning("%s", w)
        if self.glue is not None:
            try:
                self.glue.check(config)
            except ConfigError as e:
                log.error("reload failed, keeping the old configuration: %s", e)
                return False
        if self.backend is not None:
            config = self.backend.rebase(config)  # connections loaded over VICI stay
        self.config = config
        self.engine.load_config(config, self._now())
        log.info("configuration reloaded from %s", self.config_path)
        self.pump()
        return True

    # ------------------------------------------------------------------ I/O

    def _readable(self, sock: UdpSocket) -> None:
        eng = self.engine
        assert eng is not None
        now = self._now()
        try:
            batch = sock.receive()
        except OSError as e:
            log.warning("receive error on port %d: %s", sock.port, e)
            return
        port = sock.port
        for data, local_ip, src in batch:
            if sock.marker:
                kind, view = classify_marked(data)
                if kind is Kind.IKE:
                    eng.receive_datagram(bytes(view), (local_ip, port), src, now)
                elif kind is Kind.ESP:
                    self.esp_received(data, (local_ip, port), src, now)
                else:
                    eng.counters["rx-keepalive" if kind is Kind.KEEPALIVE else "drop:runt"] += 1
            else:
                eng.receive_datagram(data, (local_ip, port), src, now)
        self.pump()

    def esp_received(
        self, data: bytes, local: tuple[str, int], src: tuple[str, int], now: float
    ) -> None:
        """ESP in UDP arrived on the NAT-T port; a data plane that wants it overrides this."""
        handler = getattr(self.engine.dataplane if self.engine else None, "receive_esp", None)
        if handler is not None:
            handler(data, src)
            return
        assert self.engine is not None
        self.engine.counters["drop:esp-without-dataplane"] += 1

    def socket_for(self, d: Datagram) -> UdpSocket | None:
        family = socket.AF_INET6 if ":" in d.remote[0] else socket.AF_INET
        sock = self.sockets.get((family, d.local[1]))
        if sock is None:
            sock = self.sockets.get((family, self.config.settings.port))
        return sock

    def pump(self) -> None:
        """Send what the engine wants sent, deliver its events, re-arm its timer."""
        eng = self.engine
        if eng is None:
            return
        for d in eng.datagrams_to_send():
            sock = self.socket_for(d)
            if sock is None or not sock.send(d.data, d.local[0], d.remote):
                eng.counters["tx-failed"] += 1
        for e in eng.events():
            for obs in self.observers:
                try:
                    obs(e)
                except Exception:
                    log.exception("observer failed on %s", type(e).__name__)
        deadline = eng.get_timer()
        if deadline != self._deadline:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._deadline = deadline
            if deadline is not None and self.loop is not None:
                self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        if self.engine is not None:
            self.engine.handle_timer(self._now())
        self.pump()


def warm_up(config: QuickikeConfig | None = None) -> None:
    """Do now what the first exchange would do on the way: import the engine's tasks, and
    run each configured key exchange once (OpenSSL sets up an algorithm on first use).

    About 13 ms that a restarted gateway would otherwise add to its peer's outage.
    """
    from ..crypto.algorithms import dh_alg
    from ..crypto.proposals import parse_proposals
    from ..crypto.rng import SystemRandomSource
    from ..engine import tasks
    from ..wire.enums import ProtocolId

    for info in pkgutil.iter_modules(tasks.__path__):
        importlib.import_module(f"{tasks.__name__}.{info.name}")
    groups: set[int] = set()
    for conn in config.connections.values() if config is not None else ():
        for text in conn.proposals:
            try:
                groups.update(int(s.dh[0]) for s in parse_proposals(text, ProtocolId.IKE) if s.dh)
            except ValueError:
                continue
    rng = SystemRandomSource()
    for group in groups:
        alg = dh_alg(group)
        if alg is not None:
            alg.generate(rng).shared(alg.generate(rng).public)


#: young-generation threshold of the cyclic garbage collector in a daemon process
GC_YOUNG_THRESHOLD = 10_000


def tune_gc() -> None:
    """Collect the young generation every 10,000 allocations instead of every 700.

    A gateway holds tens of thousands of long-lived objects (about 30 per IKE SA), and with
    CPython's default the collector's share of the CPU grew with them, from 6 % at 1,000
    IKE SAs to a third at 10,000 (an engine pair in one process, docs/benchmarks.md).
    Less frequent young collections bring it to a few percent; the full collections that
    still run when the heap grew by a quarter are untouched. Set once per daemon process (``quickike run``),
    never by tests or by programs that embed a Daemon.
    """
    gc.freeze()  # what start-up built (modules, configuration) lives as long as the process
    _, mid, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, mid, old)


def lean_logging() -> None:
    """Skip what every log record computes and no quickike formatter prints.

    The caller's file and line (a stack walk per record), thread and process names: about
    a tenth of the cost of a log line, and a gateway logs several per IKE SA at level info.
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def load_or_exit(path: str) -> QuickikeConfig:
    try:
        config, warnings = load_config(path)
    except ConfigError as e:
        raise SystemExit(f"quickike: configuration error: {e}") from None
    except OSError as e:
        raise SystemExit(f"quickike: cannot read configuration: {e}") from None
    for w in warnings:
        log.warning("%s", w)
    return config


def run_daemon(
    path: str,
    *,
    state_dir: str | None = None,
    keylog: str | None = None,
    log_format: str | None = None,
    log_level: str | None = None,
) -> int:
    config = load_or_exit(path)
    s = config.settings
    setup_logging(log_level or s.log.level, log_format or s.log.format.value, s.log.file)
    lean_logging()
    tune_gc()
    state = state_dir or s.state_dir
    extensions = qcd_extensions(config, state)
    daemon = Daemon(config, config_path=path, state_dir=state, keylog=keylog,
                    extensions=extensions, control=True)
    try:
        return asyncio.run(daemon.serve())
    except (ConfigError, ServerError) as e:
        raise SystemExit(f"quickike: {e}") from None
    except (QcdConfigError, SecretStoreError) as e:  # a bad qcd_options key, an unusable store
        raise SystemExit(f"quickike: QCD cannot start: {e}") from None
    except OSError as e:
        raise SystemExit(f"quickike: cannot start: {e}") from None
    except DataPlaneError as e:  # no TUN device (not root, no CAP_NET_ADMIN), a bad SA
        raise SystemExit(f"quickike: data plane: {e}") from None


def qcd_extensions(config: QuickikeConfig, state_dir: str) -> list[Extension]:
    """The QCD plug-in with its secret store in ``state_dir``, if QCD is enabled.

    The store is only created here; it is opened (and the secret read or made)
    when the engine attaches the extension, so an unusable store stops the
    start with the store's own explanation.
    """
    if not config.settings.qcd.enable:
        return []
    try:
        policy = parse_qcd_settings(config.settings.qcd)
    except ValueError as e:
        raise SystemExit(f"quickike: configuration error: {e}") from None
    store = FileSecretStore.in_state_dir(state_dir, policy.secret_file)
    spi_map = (SqliteChildSpiMap.in_state_dir(state_dir, policy.child_spi_map_file)
               if policy.child_spi_map else None)
    return [QcdExtension(policy, store, spi_map)]
