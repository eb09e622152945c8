"""The asyncio driver: sockets and the event loop's clock around one engine.

Everything protocol-related happens in the engine; this module moves bytes
between sockets and the engine, arms one loop timer for the engine's next
deadline, and hands engine events to observers (logs, VICI, metrics). The
loop's clock (monotonic) is the engine's clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from ..control.config import ConfigError, load_config
from ..control.logs import log_event, setup_logging
from ..crypto.rng import SystemRandomSource
from ..engine import Datagram, Engine
from ..engine import events as ev
from ..engine.config import DataplaneKind, QuickikeConfig
from ..engine.dataplane import DataPlane, RecordingDataPlane
from ..engine.extension import Extension
from ..wire.framing import Kind, classify_marked
from .sockets import UdpSocket, source_address_for

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
        self._trace = trace
        self.engine: Engine | None = None
        self.started_at = time.time()

    # ------------------------------------------------------------------ life cycle

    def _now(self) -> float:
        assert self.loop is not None
        return self.loop.time()

    def _make_dataplane(self) -> DataPlane:
        if self._dataplane is not None:
            return self._dataplane
        kind = self.config.settings.dataplane
        if kind == DataplaneKind.USERSPACE:
            from ..dataplane.userspace import UserspaceDataPlane  # noqa: F401  (wired by run())

            raise ConfigError("dataplane = userspace needs quickike run's TUN set-up")
        return RecordingDataPlane()

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
                    raise
                self.sockets[(family, port)] = sock
                self.loop.add_reader(sock.fileno(), self._readable, sock)
        log.info(
            "listening on %s",
            ", ".join(f"{'v6' if f == socket.AF_INET6 else 'v4'}:{p}" for f, p in self.sockets),
        )
        self.engine.start(self._now())
        self.pump()

    def close(self) -> None:
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
        await self.start()
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
            self.close()

    def stop(self, code: int = 0) -> None:
        if self.engine is not None:
            log.info("shutting down: deleting SAs")
            self.engine.shutdown(self._now())
            self.pump()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(code)

    def reload(self) -> None:
        if self.config_path is None or self.engine is None:
            return
        try:
            config, warnings = load_config(self.config_path)
        except ConfigError as e:
            log.error("reload failed, keeping the old configuration: %s", e)
            return
        for w in warnings:
            log.warning("%s", w)
        self.config = config
        self.engine.load_config(config, self._now())
        log.info("configuration reloaded from %s", self.config_path)
        self.pump()

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
    daemon = Daemon(config, config_path=path, state_dir=state_dir, keylog=keylog)
    return asyncio.run(daemon.serve())
