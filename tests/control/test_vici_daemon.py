"""The PyPI ``vici`` package and a Prometheus scraper watching quickike through a crash.

Gateway B is SIGKILLed and restarted with the same state directory (so with
the same QCD secret). A's dead-peer check reaches the rebooted B, which
answers with a QCD token; A verifies it, rebuilds the tunnel at once and
tells its listeners (ike-updown, child-updown, qcd) and its metrics.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from vici.exception import CommandException

from quickike import __version__

from .gateways import (
    EXTRA_B,
    EXTRA_SECRET_B,
    Gateway,
    Pair,
    established,
    free_tcp_port,
    scrape,
    wait_until,
)

#: A checks its peer after 1 s of silence and re-creates the tunnel when it is lost
CRASH_CONN = "        dpd_delay = 1s"
CRASH_CHILD = "                dpd_action = restart"

Event = tuple[str, dict[str, Any]]


def collect(stream: Iterator[tuple[Any, Any]], sink: list[Event], until: Any,
            timeout: float = 20.0) -> None:
    """Read events from a ``Session.listen`` generator until ``until(sink)`` holds."""
    deadline = time.monotonic() + timeout
    while not until(sink):
        if time.monotonic() > deadline:
            raise AssertionError(f"events so far: {[(n, m.get('kind')) for n, m in sink]}")
        name, message = next(stream)
        if name is not None:
            sink.append((name.decode(), message))


def crash_and_reboot(gw: Gateway) -> None:
    gw.kill()
    gw.start()


def test_vici_package_and_events_across_a_peer_crash(pair: Pair) -> None:
    a, b = pair
    a.conn, a.child = CRASH_CONN, CRASH_CHILD
    b.extra_conns, b.extra_secrets = EXTRA_B, EXTRA_SECRET_B
    a.start()
    b.start()
    sess = a.session()
    try:
        version = sess.version()
        assert version["daemon"] == b"quickike" and version["version"] == __version__.encode()
        assert sess.stats()["ikesas"] == {"total": b"0", "half-open": b"0"}
        assert [list(c) for c in sess.list_conns()] == [["site"]]
        assert list(sess.list_sas()) == []

        # configuration over the package: a connection and its PSK, used, then unloaded
        sess.load_conn({"extra": {
            "local_addrs": ["127.0.0.1"], "remote_addrs": ["127.0.0.2"],
            "remote_port": str(b.port), "proposals": ["aes256gcm16-prfsha384-ecp256"],
            "local": {"auth": "psk", "id": "extra-a.example"},
            "remote": {"auth": "psk", "id": "extra-b.example"},
            "children": {"lan": {"local_ts": ["10.5.0.0/16"], "remote_ts": ["10.6.0.0/16"],
                                 "esp_proposals": ["aes256gcm16"]}},
        }})
        sess.load_shared({"id": "ike-extra", "type": "IKE", "data": b"powered by swanctl",
                          "owners": ["extra-a.example", "extra-b.example"]})
        assert sess.get_conns() == {"conns": [b"extra"]}
        assert sess.get_shared() == {"keys": [b"ike-extra"]}
        list(sess.initiate({"child": "lan", "timeout": 10000}))
        assert established(a, "extra")
        list(sess.terminate({"ike": "extra", "timeout": 10000}))
        sess.unload_conn({"name": "extra"})
        sess.unload_shared({"id": "ike-extra"})
        assert sess.get_conns() == {"conns": []}
        with pytest.raises(CommandException, match="IKEv1 is not supported"):
            sess.load_conn({"old": {"version": "1"}})
        with pytest.raises(CommandException, match=r"connections\.q\.qcd_options\.accept_delay"):
            sess.load_conn({"q": {"qcd_options": {"accept_delay": "forever"}}})

        logs = list(sess.initiate({"child": "net", "timeout": 10000, "loglevel": 0}))
        assert [m["msg"].decode().split(" ")[0] for m in logs] == ["IKE_SA", "CHILD_SA"]
        sas = list(sess.list_sas())
        assert len(sas) == 1
        sa = sas[0]["site"]
        assert sa["state"] == b"ESTABLISHED" and sa["initiator"] == b"yes"
        assert sa["encr-alg"] == b"AES_GCM_16" and sa["dh-group"] == b"CURVE_25519"
        assert sa["qcd"] == b"yes"
        child = next(iter(sa["child-sas"].values()))
        assert child["state"] == b"INSTALLED" and child["local-ts"] == [b"10.1.0.0/16"]
        old_uid = sa["uniqueid"]
        old_spis = (sa["initiator-spi"], sa["responder-spi"])

        assert sess.rekey({"child": "net"})["matches"] == b"1"
        with pytest.raises(CommandException, match="no matching SAs to rekey"):
            sess.rekey({"ike": "nope"})
        wait_until(lambda: [c["uniqueid"] for c in
                            next(iter(sess.list_sas()))["site"]["child-sas"].values()]
                   == [str(int(child["uniqueid"]) + 1).encode()],
                   what="the rekeyed CHILD SA")

        # listen on a second session while B crashes and reboots
        watcher = a.session()
        events: list[Event] = []
        stream = watcher.listen(["ike-updown", "child-updown", "qcd", "ike-rekey"],
                                timeout=0.2)
        next(stream)  # registered (the first read may time out)
        crash_and_reboot(b)

        def recovered(got: list[Event]) -> bool:
            ups = [m for n, m in got if n == "ike-updown" and m.get("up") == b"yes"]
            downs = [m for n, m in got if n == "ike-updown" and m.get("up") is None]
            kinds = {m["kind"] for n, m in got if n == "qcd"}
            child_up = [m for n, m in got if n == "child-updown" and m.get("up") == b"yes"]
            return bool(ups and downs and child_up and b"reestablished" in kinds)

        collect(stream, events, recovered)
        stream.close()
        watcher.transport.close()

        qcd = [m for n, m in events if n == "qcd"]
        kinds = [m["kind"] for m in qcd]
        assert kinds.index(b"token-accepted") < kinds.index(b"teardown") \
            < kinds.index(b"reestablished")
        accepted = qcd[kinds.index(b"token-accepted")]
        assert accepted["ikesa-uniqueid"] == old_uid
        assert accepted["remote-host"] == b"127.0.0.2"
        assert (accepted["initiator-spi"], accepted["responder-spi"]) == old_spis
        teardown = qcd[kinds.index(b"teardown")]
        # the retransmission schedule alone would give up after 11 s
        assert float(teardown["detection-time"]) < 5.0
        down = next(m for n, m in events if n == "ike-updown" and m.get("up") is None)
        assert down["site"]["uniqueid"] == old_uid
        up = next(m for n, m in events if n == "ike-updown" and m.get("up") == b"yes")
        assert up["site"]["uniqueid"] != old_uid and up["site"]["state"] == b"ESTABLISHED"
        assert (up["site"]["initiator-spi"], up["site"]["responder-spi"]) != old_spis

        # both sides agree on the new tunnel
        new = wait_until(lambda: established(a), what="A's new tunnel")[0]
        wait_until(lambda: [s for s in established(b)
                            if s["initiator-spi"] == new["initiator-spi"]],
                   what="B (rebooted) to hold the same tunnel")

        # terminate through the package, and the end is streamed as control-log
        logs = list(sess.terminate({"ike": "site", "timeout": 10000}))
        assert logs[-1]["msg"].decode().endswith("deleted")
        assert list(sess.list_sas()) == []
    finally:
        sess.transport.close()


def test_metrics_move_across_crash_recovery(pair: Pair) -> None:
    a, b = pair
    port = free_tcp_port()
    a.conn, a.child = CRASH_CONN, CRASH_CHILD + "\n                start_action = start"
    a.settings = f"    metrics {{\n        enable = yes\n        listen = 127.0.0.1:{port}\n    }}"
    b.start()
    a.start()
    wait_until(lambda: established(a), what="the tunnel")
    before = scrape(port)
    assert before['quickike_ike_sas{state="ESTABLISHED"}'] == 1
    assert before['quickike_child_sas{state="INSTALLED"}'] == 1
    assert before['quickike_exchanges_total{exchange="IKE_SA_INIT",role="initiator"}'] == 1
    assert before['quickike_exchanges_total{exchange="IKE_AUTH",role="initiator"}'] == 1
    assert before['quickike_ike_setup_seconds_count{role="initiator"}'] == 1
    assert before['quickike_crash_detection_seconds_count{how="qcd"}'] == 0
    assert before['quickike_tunnel_reestablish_seconds_count{how="qcd"}'] == 0
    assert before["quickike_qcd_tokens_verified_total"] == 0
    assert before[f'quickike_build_info{{version="{__version__}"}}'] == 1

    crash_and_reboot(b)
    recovered = 'quickike_tunnel_reestablish_seconds_count{how="qcd"}'
    after = wait_until(lambda: (m := scrape(port))[recovered] >= 1 and m,
                       timeout=20, what="the re-establishment to be measured")
    wait_until(lambda: established(a), what="the new tunnel")
    assert after['quickike_crash_detection_seconds_count{how="qcd"}'] == 1
    assert 0 < after['quickike_crash_detection_seconds_sum{how="qcd"}'] < 5.0
    assert after['quickike_tunnel_reestablish_seconds_sum{how="qcd"}'] < 5.0
    assert after["quickike_qcd_tokens_verified_total"] == 1
    assert after["quickike_qcd_tokens_rejected_total"] == 0
    assert after['quickike_liveness_checks_total{why="dpd"}'] >= 1
    assert after['quickike_ike_sa_down_total{reason="qcd"}'] == 1
    assert after['quickike_exchanges_total{exchange="IKE_SA_INIT",role="initiator"}'] == 2
    assert after['quickike_exchanges_total{exchange="INFORMATIONAL",role="initiator"}'] >= 1
    assert after["quickike_messages_sent_total"] > before["quickike_messages_sent_total"]
    assert after['quickike_ike_sas{state="ESTABLISHED"}'] == 1

    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/secrets", timeout=5)
    assert info.value.code == 404
