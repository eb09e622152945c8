"""The persistent CHILD SPI -> IKE SPIs map and the one-message answer to ESP (RFC 6290 §8.2)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from quickike.engine.config import StartAction
from quickike.qcd import MemoryChildSpiMap, SqliteChildSpiMap
from quickike.wire.message import decode_message

from .helpers import (
    A_IP,
    B_IP,
    auto_child,
    bring_up,
    esp_from,
    gateways,
    live,
    only_sa,
    peer_tokens,
    policy,
    qcd_events,
    story,
    traces,
)


def test_sqlite_map_is_durable_wal_and_private(tmp_path: Path) -> None:
    m = SqliteChildSpiMap.in_state_dir(str(tmp_path / "state"))
    path = tmp_path / "state" / "qcd-spi-map.sqlite"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    m.put(b"\x00\x00\x10\x01", b"i" * 8, b"r" * 8, 100.0)
    m.put(b"\x00\x00\x10\x02", b"I" * 8, b"R" * 8, 5.0)
    m.put(b"\x00\x00\x10\x01", b"j" * 8, b"s" * 8, 200.0)  # the IKE SA was rekeyed
    # a second process (the rebooted daemon) sees every committed row without a close
    other = sqlite3.connect(str(path))
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT count(*) FROM child_spi").fetchone()[0] == 2
    other.close()
    again = SqliteChildSpiMap(str(path))
    e = again.get(b"\x00\x00\x10\x01")
    assert e is not None and (e.spi_i, e.spi_r, e.updated) == (b"j" * 8, b"s" * 8, 200.0)
    assert again.purge(older_than=50.0) == 1 and again.get(b"\x00\x00\x10\x02") is None
    again.remove(b"\x00\x00\x10\x01")
    assert again.get(b"\x00\x00\x10\x01") is None
    again.close()
    m.close()


def _with_map(spi_map, **a_policy):
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),),
                           a_policy=policy(**a_policy), latency=0.010)
    gb.spi_map = spi_map
    gb.crash_and_reboot(net)  # B restarts with the map attached (no SAs yet)
    bring_up(net, ga, gb)
    return net, ga, gb


def test_map_follows_child_install_rekey_and_removal() -> None:
    m = MemoryChildSpiMap()
    net, _ga, gb = _with_map(m)
    sa_b = only_sa(gb)
    (spi,) = m.entries
    assert spi == sa_b.children[0].spi_in
    assert (m.entries[spi].spi_i, m.entries[spi].spi_r) == (sa_b.spi_i, sa_b.spi_r)
    assert gb.node.engine.rekey_child(sa_b.children[0].uid, net.now)
    net.advance(1.0)
    (spi2,) = m.entries
    assert spi2 != spi and spi2 == only_sa(gb).children[0].spi_in
    assert gb.node.engine.rekey_ike(sa_b.uid, net.now)
    net.advance(1.0)
    new = only_sa(gb)
    assert (m.entries[spi2].spi_i, m.entries[spi2].spi_r) == (new.spi_i, new.spi_r)
    gone = new.children[0].spi_in
    gb.node.engine.terminate_child(new.children[0].uid, net.now)
    net.advance(1.0)
    # the deleted CHILD's row is gone; A's close_action = start made a new CHILD, which has one
    assert gone not in m.entries
    assert set(m.entries) == {c.spi_in for c in only_sa(gb).children} != set()


def test_esp_after_reboot_answered_with_invalid_spi_and_token() -> None:
    """The default taker still asks first (require_pending): two round trips, but one answer."""
    m = MemoryChildSpiMap()
    net, ga, gb = _with_map(m)
    sa_a = only_sa(ga)
    spi_out = sa_a.children[0].spi_out
    token = peer_tokens(gb, sa_a)[0]
    b2 = gb.crash_and_reboot(net)
    since = net.now
    esp_from(ga, gb, net)
    net.advance(1.0)
    (first,) = [d for t, d in net.wire if t >= since and d.local[0] == B_IP][:1]
    msg = decode_message(first.data)
    # HDR(parent IKE SA's SPIs, I=1, R=0), N(INVALID_SPI), N(QCD_TOKEN)
    assert (msg.spi_i, msg.spi_r) == (sa_a.spi_i, sa_a.spi_r)
    assert msg.is_initiator and not msg.is_response
    assert [n.type for n in msg.notifies()] == [11, 16419]
    assert [n.data for n in msg.notifies()] == [spi_out, token]
    assert qcd_events(b2, "token-sent")[0].attrs["via"] == "invalid-spi"
    # the taker verified it, but took it as a reason to ask, not as proof
    rej = qcd_events(ga.node, "token-rejected")
    assert rej[0].attrs == {"via": "invalid-spi", "source": (B_IP, 500), "reason": "unsolicited",
                            "valid": True}
    assert qcd_events(ga.node, "teardown")[0].attrs["via"] == "invalid-ike-spi"


def test_map_saves_a_round_trip_for_a_taker_that_accepts_it() -> None:
    m = MemoryChildSpiMap()
    net, ga, gb = _with_map(m, require_pending=False)
    gb.crash_and_reboot(net)
    since = net.now
    esp_from(ga, gb, net)
    net.advance(1.0)
    tail = story(ga.node, since)
    assert tail[:3] == [("<-", "INFORMATIONAL", "req", "N(INVALID_SPI),N(QUICK_CRASH_DETECTION)"),
                        ("qcd", "token-accepted"), ("liveness", "qcd-verify")]
    (teardown,) = qcd_events(ga.node, "teardown")
    assert teardown.attrs["via"] == "invalid-spi"
    # one-way trip of the INVALID_SPI, then the acceptance wait (1.5 RTT of 20 ms)
    assert teardown.time - since == pytest.approx(0.010 + 0.030)
    assert len(live(ga)) == 1


def test_no_map_answer_for_a_child_whose_ike_sa_is_alive() -> None:
    m = MemoryChildSpiMap()
    net, _ga, gb = _with_map(m)
    sa_b = only_sa(gb)
    # the entry survives, but the parent IKE SA exists here: §9.2 forbids the token
    spi = sa_b.children[0].spi_in
    gb.node.engine.unknown_esp_spi(spi, (B_IP, 500), (A_IP, 500), net.now)
    net.step()
    assert gb.node.engine.counters["qcd:tokens-withheld-known-sa"] == 1
    sent = [t for t in traces(gb.node) if t.sent and t.payloads[:1] == ("N(INVALID_SPI)",)]
    assert sent and sent[-1].payloads == ("N(INVALID_SPI)",)


def test_sqlite_map_across_a_real_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "map.sqlite")
    net, ga, gb = _with_map(SqliteChildSpiMap(db))
    spi = only_sa(gb).children[0].spi_in
    gb.spi_map = SqliteChildSpiMap(db)  # the new process opens the file again
    b2 = gb.crash_and_reboot(net)
    esp_from(ga, gb, net)
    net.advance(1.0)
    assert qcd_events(b2, "token-sent")[0].attrs["spi"] == spi.hex()
    assert qcd_events(ga.node, "teardown")
    assert os.path.exists(db + "-wal") or os.path.getsize(db) > 0
