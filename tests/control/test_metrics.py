"""Metrics from engine events and counters, and the HTTP endpoint, without a daemon."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from quickike.control.metrics import (
    EngineMetrics,
    ExchangeCounter,
    MetricsServer,
    MetricsUnavailable,
)
from quickike.engine import events as ev
from quickike.engine.config import QuickikeConfig
from quickike.engine.engine import Engine
from quickike.engine.sa import IkeSa
from quickike.wire.enums import ExchangeType

A = ("192.0.2.1", 500)
B = ("192.0.2.2", 500)


def samples(metrics: EngineMetrics) -> dict[str, float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def ike_up(uid: int, t: float, remote_id: str = "peer.example") -> ev.IkeSaUp:
    return ev.IkeSaUp(t, uid, "gw", b"i" * 8, b"r" * 8, A, B, True, "me.example", remote_id,
                      "aes128gcm16-prfsha256-x25519")


def child_up(uid: int, child: int, t: float, rekeyed_from: int | None = None) -> ev.ChildSaUp:
    return ev.ChildSaUp(t, uid, child, "net", b"\x00\x00\x01\x00", b"\x00\x00\x02\x00",
                        ("10.1.0.0/16",), ("10.2.0.0/16",), "aes128gcm16-esn", rekeyed_from)


def test_histograms_follow_a_tunnel_through_loss_and_recovery() -> None:
    m = EngineMetrics(lambda: None)
    m.observe(ike_up(1, 10.0))
    m.observe(child_up(1, 1, 10.0))
    m.observe(child_up(1, 2, 50.0, rekeyed_from=1))  # a rekey is no recovery
    m.observe(ev.IkeSaDown(100.0, 1, "gw", b"i" * 8, b"r" * 8, "dead-peer"))
    m.observe(ike_up(2, 103.0))
    m.observe(child_up(2, 3, 103.5))
    # QCD reports its own times
    m.observe(ev.ExtensionEvent(200.0, "qcd", "token-accepted", 2))
    m.observe(ev.ExtensionEvent(200.0, "qcd", "teardown", 2, {"detection_time": 0.012}))
    m.observe(ev.IkeSaDown(200.1, 2, "gw", b"i" * 8, b"r" * 8, "qcd"))
    m.observe(ev.ExtensionEvent(200.1, "qcd", "reestablished", 3, {"reestablish_time": 0.02}))
    m.observe(ike_up(3, 200.1))
    m.observe(child_up(3, 4, 200.1))
    m.observe(ev.ExtensionEvent(201.0, "qcd", "token-rejected", None))
    m.observe(ev.ExtensionEvent(201.0, "qcd", "spoof-suspected", 3))
    m.observe(ev.LivenessCheck(150.0, 2, "dpd"))
    m.observe(ev.LivenessCheck(151.0, 2, "hint-invalid-spi"))
    m.observe(ev.IkeSetupFailed(300.0, "gw", "peer not responding"))
    # a deleted tunnel that comes back is no recovery either
    m.observe(ev.IkeSaDown(400.0, 3, "gw", b"i" * 8, b"r" * 8, "deleted"))
    m.observe(ike_up(4, 401.0))
    m.observe(child_up(4, 5, 401.0))
    s = samples(m)
    assert s['quickike_tunnel_reestablish_seconds_count{how="dead-peer"}'] == 1
    assert s['quickike_tunnel_reestablish_seconds_sum{how="dead-peer"}'] == pytest.approx(3.5)
    assert s['quickike_tunnel_reestablish_seconds_count{how="qcd"}'] == 1
    assert s['quickike_tunnel_reestablish_seconds_sum{how="qcd"}'] == pytest.approx(0.02)
    assert s['quickike_tunnel_reestablish_seconds_bucket{how="qcd",le="0.025"}'] == 1
    assert s['quickike_crash_detection_seconds_count{how="qcd"}'] == 1
    assert s['quickike_crash_detection_seconds_sum{how="qcd"}'] == pytest.approx(0.012)
    assert s['quickike_crash_detection_seconds_count{how="initial-contact"}'] == 0
    assert s["quickike_qcd_tokens_verified_total"] == 1
    assert s["quickike_qcd_tokens_rejected_total"] == 1
    assert s["quickike_qcd_spoof_alarms_total"] == 1
    assert s["quickike_qcd_tokens_sent_total"] == 0
    assert s['quickike_qcd_events_total{kind="teardown"}'] == 1
    assert s['quickike_liveness_checks_total{why="dpd"}'] == 1
    assert s['quickike_liveness_checks_total{why="hint-invalid-spi"}'] == 1
    assert s['quickike_setup_failures_total{sa="ike"}'] == 1
    assert "quickike_ike_sas" not in str(s)  # no engine: no state gauges, and no crash


class _Sa:
    """Just what ExchangeCounter reads of an IKE SA."""

    def __init__(self, last_in: float) -> None:
        self.ext: dict[str, Any] | None = None
        self.auth_done = True
        self.last_in = last_in

    def ext_get(self, key: str) -> Any:
        return None if self.ext is None else self.ext.get(key)

    def ext_set(self, key: str, value: Any) -> None:
        self.ext = {**(self.ext or {}), key: value}


def test_detection_time_runs_from_the_oldest_unanswered_request() -> None:
    seen: list[tuple[str, float]] = []
    counter = ExchangeCounter()
    counter.on_detected = lambda how, t: seen.append((how, t))
    engine = Engine(QuickikeConfig(), now=0.0)
    counter.attach(engine)
    sa: Any = _Sa(last_in=5.0)
    engine.now = 100.0
    counter.initiator_tasks(sa, ExchangeType.INFORMATIONAL, [])  # the DPD probe leaves
    engine.now = 101.0
    counter.initiator_tasks(sa, ExchangeType.INFORMATIONAL, [])  # still unanswered
    engine.now = 265.0
    counter.destroyed(sa, "dead-peer")
    assert seen == [("dead-peer", 165.0)]
    # an answer resets the clock; without an open request it runs from the last message
    counter.protected_message(sa, None)  # type: ignore[arg-type]
    counter.destroyed(sa, "initial-contact")
    assert seen[-1] == ("initial-contact", 260.0)
    counter.destroyed(sa, "deleted")  # not a loss
    counter.destroyed(sa, "qcd")  # QCD measures itself
    assert len(seen) == 2
    assert counter.exchanges == {("INFORMATIONAL", "initiator"): 2}


def test_scrape_reads_engine_counters_and_states() -> None:
    engine = Engine(QuickikeConfig(), now=0.0)
    m = EngineMetrics(lambda: engine)
    engine.counters.update({"drop:bad-icv": 3, "ike-down:dead-peer": 2, "failed:ike-auth": 1,
                            "retransmits": 7, "cookies-sent": 4, "rx": 10, "tx": 11,
                            "qcd:tokens-sent": 5, "liveness-checks": 9})
    sa = IkeSa(1, None, True, b"a" * 8, b"b" * 8, A, B, 0.0)
    engine.sas[sa.spi_local] = sa
    s = samples(m)
    assert s['quickike_drops_total{reason="bad-icv"}'] == 3
    assert s['quickike_ike_sa_down_total{reason="dead-peer"}'] == 2
    assert s['quickike_task_failures_total{task="ike-auth"}'] == 1
    assert s["quickike_retransmissions_total"] == 7
    assert s["quickike_cookies_sent_total"] == 4
    assert s["quickike_messages_received_total"] == 10
    assert s['quickike_engine_events_total{name="qcd:tokens-sent"}'] == 5
    assert 'quickike_engine_events_total{name="liveness-checks"}' not in s
    assert s['quickike_ike_sas{state="CONNECTING"}'] == 1
    assert s['quickike_ike_sas{state="ESTABLISHED"}'] == 0
    assert s["quickike_ike_sas_half_open"] == 0
    assert s['quickike_dataplane_bytes_total{direction="in"}'] == 0


def test_missing_prometheus_client_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MetricsUnavailable, match=r"pip install 'quickike\[metrics\]'"):
        EngineMetrics(lambda: None)


async def _http(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


def test_http_endpoint_serves_metrics_beside_a_stalled_client() -> None:
    async def main() -> None:
        server = MetricsServer(EngineMetrics(lambda: None), "127.0.0.1", 0)
        await server.start()
        try:
            # a client that connects and says nothing must not hold up the next scrape
            _, stalled = await asyncio.open_connection("127.0.0.1", server.port)
            reply = await asyncio.wait_for(
                _http(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), 5)
            head, _, body = reply.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.0 200 OK")
            assert b"quickike_build_info" in body
            head_only = await _http(server.port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
            assert head_only.startswith(b"HTTP/1.0 200 OK") and head_only.endswith(b"\r\n\r\n")
            assert (await _http(server.port, b"POST /metrics HTTP/1.0\r\n\r\n")).startswith(
                b"HTTP/1.0 405")
            assert (await _http(server.port, b"GET /other HTTP/1.0\r\n\r\n")).startswith(
                b"HTTP/1.0 404")
            assert (await _http(server.port, b"\r\n\r\n")).startswith(b"HTTP/1.0 400")
            stalled.close()
        finally:
            await server.close()

    asyncio.run(main())


def test_port_in_use_is_reported() -> None:
    async def main() -> None:
        first = MetricsServer(EngineMetrics(lambda: None), "127.0.0.1", 0)
        await first.start()
        try:
            second = MetricsServer(EngineMetrics(lambda: None), "127.0.0.1", first.port)
            with pytest.raises(MetricsUnavailable, match="cannot listen for metrics"):
                await second.start()
        finally:
            await first.close()

    asyncio.run(main())
