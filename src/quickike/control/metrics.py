"""Prometheus metrics of a running engine, served over HTTP from the daemon's event loop.

Three sources, each read where it is cheapest and exact:

* **engine counters** (drop reasons, messages, retransmissions, cookies, ...)
  and **SA counts by state** are read at scrape time, so a scrape always
  agrees with ``swanctl --list-sas`` and nothing is counted twice;
* **engine events** feed the histograms (crash-detection time, tunnel
  re-establishment time, IKE set-up time) and the labelled liveness and QCD
  counters;
* a tiny engine :class:`~quickike.engine.extension.Extension` counts
  exchanges by type and role and remembers when each SA's oldest unanswered
  request left, which is when "the peer may be gone" started.

The HTTP endpoint runs on the asyncio loop that drives the engine (no
exporter thread): a scrape reads engine state between two engine steps, never
in the middle of one. prometheus-client is optional (``pip install
'quickike[metrics]'``) and imported only when metrics are enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..engine import events as ev
from ..engine.extension import Extension
from ..engine.sa import ChildState, IkeState

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..engine import Engine
    from ..engine.sa import IkeSa
    from ..wire.enums import ExchangeType
    from ..wire.message import Message

log = logging.getLogger("quickike.metrics")

PREFIX = "quickike"
#: IKE SA down reasons that mean "the peer lost its state or died" (not a delete or a rekey)
LOSS_REASONS = ("dead-peer", "qcd", "initial-contact")
#: losses QCD measures itself: its teardown and reestablished events carry the times
_QCD_LOSS = "qcd"
#: from milliseconds (QCD on a LAN) to minutes (DPD with charon's retransmission schedule)
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0, 120.0, 180.0, 300.0, 600.0)
#: lost tunnels waiting to come back; beyond this the oldest are forgotten
MAX_PENDING_RECOVERIES = 10_000
#: engine counters exported under their own names (the rest go to quickike_engine_events_total)
_SIMPLE_COUNTERS = {
    "rx": ("messages_received", "IKE messages received (before any check)"),
    "tx": ("messages_sent", "IKE datagrams sent, retransmissions excluded"),
    "retransmits": ("retransmissions", "IKE requests retransmitted"),
    "retransmit-timeouts": ("retransmit_timeouts", "requests abandoned after the last retransmit"),
    "cookies-sent": ("cookies_sent", "COOKIE challenges sent (RFC 7296 section 2.6)"),
    "ike-rekeys": ("ike_rekeys", "IKE SA rekeys completed"),
    "child-rekeys": ("child_rekeys", "CHILD SA rekeys completed (as initiator)"),
    "restarts": ("restarts", "connections re-initiated by dpd_action/close_action"),
    "tx-failed": ("send_failures", "datagrams the kernel refused to send"),
}
#: engine counters covered by event-driven metrics (not exported twice)
_FROM_EVENTS = frozenset({"liveness-checks"})
_QCD_COUNTERS = {
    "token-sent": "qcd_tokens_sent",
    "token-accepted": "qcd_tokens_verified",
    "token-rejected": "qcd_tokens_rejected",
    "spoof-suspected": "qcd_spoof_alarms",
}
_ASKED = "metrics.asked_at"


class MetricsUnavailable(Exception):
    """Metrics were enabled but cannot run (prometheus-client missing, port taken)."""


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MetricsUnavailable(
            "metrics are enabled (quickike.metrics.enable = yes) but the Python package "
            "prometheus-client is not installed: pip install 'quickike[metrics]'"
        ) from None
    return prometheus_client


class ExchangeCounter(Extension):
    """Counts exchanges and remembers when each SA's oldest unanswered request left.

    A plug-in rather than engine code: it adds no tasks and changes no
    decision, it only watches the hooks every exchange passes through.
    """

    name = "metrics"

    def __init__(self) -> None:
        self.engine: Engine | None = None
        self.exchanges: dict[tuple[str, str], int] = {}
        self.on_detected: Callable[[str, float], None] | None = None

    def attach(self, engine: Engine) -> None:
        self.engine = engine

    def _count(self, exchange: ExchangeType, role: str) -> None:
        key = (str(exchange), role)
        self.exchanges[key] = self.exchanges.get(key, 0) + 1

    def initiator_tasks(self, sa: IkeSa, exchange: ExchangeType, tasks: list[Any]) -> list[Any]:
        self._count(exchange, "initiator")
        if sa.ext_get(_ASKED) is None and self.engine is not None:
            sa.ext_set(_ASKED, self.engine.now)
        return []

    def responder_tasks(self, sa: IkeSa, exchange: ExchangeType, request: Message,
                        tasks: list[Any]) -> list[Any]:
        self._count(exchange, "responder")
        return []

    def protected_message(self, sa: IkeSa, msg: Message) -> None:
        if sa.ext is not None and sa.ext.get(_ASKED) is not None:
            sa.ext[_ASKED] = None  # the peer is alive: whatever we asked, it answers

    def destroyed(self, sa: IkeSa, reason: str) -> None:
        if reason not in LOSS_REASONS or reason == _QCD_LOSS or not sa.auth_done \
                or self.engine is None:
            return
        asked = sa.ext_get(_ASKED)
        since = asked if asked is not None else sa.last_in
        if self.on_detected is not None:
            self.on_detected(reason, max(0.0, self.engine.now - since))


class EngineMetrics:
    """The metric families of one engine; :meth:`observe` is a daemon observer."""

    def __init__(self, engine: Callable[[], Engine | None]) -> None:
        prom = _prometheus()
        self._engine = engine
        self.registry = prom.CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.extension = ExchangeCounter()
        self.extension.on_detected = self._detected
        self.crash_detection = prom.Histogram(
            f"{PREFIX}_crash_detection_seconds",
            "Time from the oldest unanswered request to the peer (or, if none, the last "
            "message from it) until its IKE SA was declared lost, by how it was detected",
            ["how"], buckets=TIME_BUCKETS, registry=reg)
        self.reestablish = prom.Histogram(
            f"{PREFIX}_tunnel_reestablish_seconds",
            "Time from losing a tunnel until it was up again (dead peer, INITIAL_CONTACT: "
            "a CHILD SA to the same peer identity; QCD: as its plug-in measures it)",
            ["how"], buckets=TIME_BUCKETS, registry=reg)
        self.ike_setup = prom.Histogram(
            f"{PREFIX}_ike_setup_seconds",
            "Time from creating an IKE SA until it was established (initiator and responder)",
            ["role"], buckets=TIME_BUCKETS, registry=reg)
        self.liveness = prom.Counter(
            f"{PREFIX}_liveness_checks", "Liveness checks (empty INFORMATIONAL) started, by why",
            ["why"], registry=reg)
        self.qcd = {
            name: prom.Counter(f"{PREFIX}_{name}", help_text, registry=reg)
            for name, help_text in (
                ("qcd_tokens_sent", "QCD tokens sent for IKE SPIs this side no longer knows"),
                ("qcd_tokens_verified", "QCD tokens received that matched a stored token"),
                ("qcd_tokens_rejected", "QCD tokens received that matched no stored token"),
                ("qcd_spoof_alarms", "QCD tokens that looked spoofed (RFC 6290 section 9)"),
            )
        }
        self.qcd_events = prom.Counter(
            f"{PREFIX}_qcd_events", "Every QCD plug-in event by kind", ["kind"], registry=reg)
        self.setup_failures = prom.Counter(
            f"{PREFIX}_setup_failures", "IKE and CHILD SA set-ups that failed, by SA kind",
            ["sa"], registry=reg)
        info = prom.Gauge(f"{PREFIX}_build_info", "quickike's version", ["version"],
                          registry=reg)
        info.labels(__version__).set(1)
        for how in LOSS_REASONS:  # every series exists from the first scrape on
            self.crash_detection.labels(how)
            self.reestablish.labels(how)
        for role in ("initiator", "responder"):
            self.ike_setup.labels(role)
        for kind in ("ike", "child"):
            self.setup_failures.labels(kind)
        start = prom.Gauge(f"{PREFIX}_start_time_seconds", "When the daemon started (epoch)",
                           registry=reg)
        start.set(time.time())
        #: IKE uid -> (connection, peer identity) while the SA is up
        self._tunnels: dict[int, tuple[str, str]] = {}
        #: (connection, peer identity) -> (engine time the tunnel was lost, how)
        self._lost: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()
        self._collector = _EngineCollector(self)
        reg.register(self._collector)

    @property
    def engine(self) -> Engine | None:
        return self._engine()

    def _detected(self, how: str, seconds: float) -> None:
        self.crash_detection.labels(how).observe(seconds)

    def observe(self, e: ev.Event) -> None:
        if isinstance(e, ev.IkeSaUp):
            self._tunnels[e.ike_uid] = (e.name, e.remote_id)
            if e.rekeyed_from is None:
                eng = self.engine
                sa = eng.sas.get(e.spi_i if e.initiator else e.spi_r) if eng else None
                if sa is not None:
                    self.ike_setup.labels("initiator" if e.initiator else "responder").observe(
                        max(0.0, e.time - sa.created_at))
        elif isinstance(e, ev.IkeSaDown):
            key = self._tunnels.pop(e.ike_uid, None)
            if key is not None and e.established and e.reason in LOSS_REASONS \
                    and e.reason != _QCD_LOSS:
                self._lost[key] = (e.time, e.reason)
                self._lost.move_to_end(key)
                while len(self._lost) > MAX_PENDING_RECOVERIES:
                    self._lost.popitem(last=False)
        elif isinstance(e, ev.ChildSaUp):
            if e.rekeyed_from is None:
                key = self._tunnels.get(e.ike_uid)
                lost = self._lost.pop(key, None) if key is not None else None
                if lost is not None:
                    self.reestablish.labels(lost[1]).observe(max(0.0, e.time - lost[0]))
        elif isinstance(e, ev.LivenessCheck):
            self.liveness.labels(e.why).inc()
        elif isinstance(e, ev.IkeSetupFailed):
            self.setup_failures.labels("ike").inc()
        elif isinstance(e, ev.ChildSetupFailed):
            self.setup_failures.labels("child").inc()
        elif isinstance(e, ev.ExtensionEvent) and e.source == "qcd":
            self._qcd(e)

    def _qcd(self, e: ev.ExtensionEvent) -> None:
        self.qcd_events.labels(e.kind).inc()
        name = _QCD_COUNTERS.get(e.kind)
        if name is not None:
            self.qcd[name].inc()
        if e.kind == "teardown":
            seconds = e.attrs.get("detection_time")
            if isinstance(seconds, int | float):
                self.crash_detection.labels(_QCD_LOSS).observe(max(0.0, float(seconds)))
        elif e.kind == "reestablished":
            seconds = e.attrs.get("reestablish_time")
            if isinstance(seconds, int | float):
                self.reestablish.labels(_QCD_LOSS).observe(max(0.0, float(seconds)))

    def render(self) -> tuple[bytes, str]:
        """(body, content type) of one scrape."""
        prom = _prometheus()
        return prom.generate_latest(self.registry), str(prom.CONTENT_TYPE_LATEST)


class _EngineCollector:
    """Reads engine counters, SA states and data-plane counters at scrape time."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics
        #: CHILD SA inbound SPI -> (bytes in, packets in, bytes out, packets out) at the last scrape
        self._seen: dict[bytes, tuple[int, int, int, int]] = {}
        #: totals of CHILD SAs gone since (monotonic counters survive rekeys and deletes)
        self._retired = [0, 0, 0, 0]

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        eng = self.metrics.engine
        if eng is None:
            return
        ike_states = dict.fromkeys((s.value for s in IkeState if s != IkeState.DESTROYED), 0)
        child_states = dict.fromkeys(
            (s.value for s in ChildState if s != ChildState.DESTROYED), 0)
        for sa in eng.ike_sas():
            if sa.state == IkeState.DESTROYED:
                continue
            ike_states[sa.state.value] += 1
            for child in sa.children:
                if child.state != ChildState.DESTROYED:
                    child_states[child.state.value] += 1
        ike = GaugeMetricFamily(f"{PREFIX}_ike_sas", "IKE SAs by state", labels=["state"])
        for state, n in ike_states.items():
            ike.add_metric([state], n)
        yield ike
        children = GaugeMetricFamily(f"{PREFIX}_child_sas", "CHILD SAs by state",
                                     labels=["state"])
        for state, n in child_states.items():
            children.add_metric([state], n)
        yield children
        yield GaugeMetricFamily(f"{PREFIX}_ike_sas_half_open",
                                "IKE SAs this side answered but that are not authenticated yet",
                                value=len(eng.half_open))

        drops = CounterMetricFamily(f"{PREFIX}_drops", "Datagrams the engine refused, by reason",
                                    labels=["reason"])
        downs = CounterMetricFamily(f"{PREFIX}_ike_sa_down", "IKE SAs gone, by reason",
                                    labels=["reason"])
        failed = CounterMetricFamily(f"{PREFIX}_task_failures",
                                     "Exchanges that failed, by the task that failed",
                                     labels=["task"])
        other = CounterMetricFamily(f"{PREFIX}_engine_events",
                                    "Other engine counters, by name", labels=["name"])
        simple: dict[str, int] = {}
        for key, value in sorted(eng.counters.items()):
            if key.startswith("drop:"):
                drops.add_metric([key[5:]], value)
            elif key.startswith("ike-down:"):
                downs.add_metric([key[9:]], value)
            elif key.startswith("failed:"):
                failed.add_metric([key[7:]], value)
            elif key in _SIMPLE_COUNTERS:
                simple[key] = value
            elif key not in _FROM_EVENTS:
                other.add_metric([key], value)
        yield from (drops, downs, failed, other)
        for key, (name, help_text) in _SIMPLE_COUNTERS.items():
            yield CounterMetricFamily(f"{PREFIX}_{name}", help_text, value=simple.get(key, 0))

        exchanges = CounterMetricFamily(f"{PREFIX}_exchanges",
                                        "IKE exchanges started (initiator) or answered "
                                        "(responder), retransmissions excluded",
                                        labels=["exchange", "role"])
        for (exchange, role), n in sorted(self.metrics.extension.exchanges.items()):
            exchanges.add_metric([exchange, role], n)
        yield exchanges
        yield from self._dataplane(eng)

    def _dataplane(self, eng: Engine) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily

        seen: dict[bytes, tuple[int, int, int, int]] = {}
        dp = eng.dataplane
        for spi in list(eng.children_in):
            c = dp.counters(spi)
            if c is not None:
                seen[spi] = (c.bytes_in, c.packets_in, c.bytes_out, c.packets_out)
        for spi, last in self._seen.items():
            if spi not in seen:
                for i, v in enumerate(last):
                    self._retired[i] += v
        self._seen = seen
        totals = list(self._retired)
        for values in seen.values():
            for i, v in enumerate(values):
                totals[i] += v
        packets = CounterMetricFamily(f"{PREFIX}_dataplane_packets",
                                      "ESP packets of CHILD SAs, by direction",
                                      labels=["direction"])
        octets = CounterMetricFamily(f"{PREFIX}_dataplane_bytes",
                                     "Payload bytes of CHILD SAs, by direction",
                                     labels=["direction"])
        octets.add_metric(["in"], totals[0])
        packets.add_metric(["in"], totals[1])
        octets.add_metric(["out"], totals[2])
        packets.add_metric(["out"], totals[3])
        yield packets
        yield octets
        stats = getattr(dp, "stats", None)
        if stats is not None and dataclasses.is_dataclass(stats):
            family = CounterMetricFamily(f"{PREFIX}_dataplane_events",
                                         "Data-plane packet counters, by what happened",
                                         labels=["counter"])
            for f in dataclasses.fields(stats):
                value = getattr(stats, f.name)
                if isinstance(value, int):
                    family.add_metric([f.name], value)
            yield family


# ---------------------------------------------------------------------- HTTP endpoint

_MAX_REQUEST = 16 * 1024
_CLIENT_TIMEOUT = 10.0


class MetricsServer:
    """``GET /metrics`` over HTTP/1.0 on the daemon's loop: one scrape, one connection."""

    def __init__(self, metrics: EngineMetrics, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.metrics = metrics
        self.host = host
        self.port = port
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(
                self._serve, self.host, self.port, limit=_MAX_REQUEST)
        except OSError as exc:
            raise MetricsUnavailable(
                f"cannot listen for metrics on {self.host}:{self.port}: {exc.strerror or exc}"
            ) from None
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback:
            log.warning("metrics: listening on %s:%d, which is not a loopback address; the "
                        "endpoint has no authentication", self.host, self.port)
        log.info("metrics: serving http://%s:%d/metrics", self.host, self.port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.gather(*self._clients, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            await asyncio.wait_for(self._answer(reader, writer), _CLIENT_TIMEOUT)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("metrics: request failed")
        finally:
            writer.close()
            if task is not None:
                self._clients.discard(task)

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) < 2:
            await self._reply(writer, 400, b"bad request\n")
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await self._reply(writer, 405, b"method not allowed\n")
            return
        if target not in ("/metrics", "/"):
            await self._reply(writer, 404, b"try /metrics\n")
            return
        body, content_type = self.metrics.render()
        await self._reply(writer, 200, body, content_type, head_only=method == "HEAD")

    async def _reply(self, writer: asyncio.StreamWriter, status: int, body: bytes,
                     content_type: str = "text/plain; charset=utf-8", *,
                     head_only: bool = False) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found",
                  405: "Method Not Allowed"}[status]
        header = (f"HTTP/1.0 {status} {reason}\r\nContent-Type: {content_type}\r\n"
                  f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        writer.write(header.encode("latin-1") + (b"" if head_only else body))
        await writer.drain()
