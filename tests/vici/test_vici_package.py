"""The PyPI ``vici`` package (strongSwan's own Python client) driving quickike's server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import vici
from vici.exception import CommandException, EventUnknownException
from vici_harness import ServerThread

from quickike import __version__
from quickike.control.vici.backend import QcdEventKind

CONN = {
    "gw": {
        "local_addrs": ["10.0.0.1"],
        "remote_addrs": ["10.0.0.2"],
        "version": "2",
        "proposals": ["aes256gcm16-prfsha256-x25519"],
        "local": {"auth": "psk", "id": "gw1.example"},
        "remote": {"auth": "psk", "id": "gw2.example"},
        "children": {
            "net": {
                "local_ts": ["10.1.0.0/16"],
                "remote_ts": ["10.2.0.0/16"],
                "esp_proposals": ["aes256gcm16"],
            }
        },
    }
}


def session(path: Path) -> vici.Session:
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(10)
    sock.connect(str(path))
    return vici.Session(sock)


@pytest.fixture
def sess(running: ServerThread) -> Iterator[vici.Session]:
    s = session(running.path)
    yield s
    s.transport.close()


def test_version_and_stats(sess: vici.Session) -> None:
    version = sess.version()
    assert version["daemon"] == b"quickike"
    assert version["version"] == __version__.encode()
    assert set(version) == {"daemon", "version", "sysname", "release", "machine"}
    stats = sess.stats()
    assert stats["ikesas"] == {"total": b"0", "half-open": b"0"}
    assert stats["uptime"]["running"] == b"0 seconds"
    assert stats["plugins"] == [b"quickike-engine", b"qcd", b"vici"]
    assert set(stats["workers"]["active"]) == {"critical", "high", "medium", "low"}


def test_load_list_get_and_unload_conns(sess: vici.Session, running: ServerThread) -> None:
    sess.load_conn(CONN)
    assert running.backend.conns["gw"]["proposals"] == [b"aes256gcm16-prfsha256-x25519"]
    assert sess.get_conns() == {"conns": [b"gw"]}
    conns = list(sess.list_conns())
    assert len(conns) == 1
    gw = conns[0]["gw"]
    assert gw["local_addrs"] == [b"10.0.0.1"]
    assert gw["version"] == b"IKEv2"
    assert gw["local-1"]["class"] == b"pre-shared key"
    assert gw["remote-1"]["id"] == b"gw2.example"
    assert gw["children"]["net"]["mode"] == b"TUNNEL"
    assert gw["children"]["net"]["remote-ts"] == [b"10.2.0.0/16"]
    with pytest.raises(CommandException, match="IKEv1 is not supported"):
        sess.load_conn({"old": {"version": "1"}})
    sess.unload_conn({"name": "gw"})
    assert sess.get_conns() == {"conns": []}
    with pytest.raises(CommandException, match="not found"):
        sess.unload_conn({"name": "gw"})


def test_initiate_streams_log_then_list_sas_and_terminate(
    sess: vici.Session, running: ServerThread
) -> None:
    sess.load_conn(CONN)
    logs = list(sess.initiate({"child": "net", "timeout": 5000, "loglevel": 1}))
    messages = [entry["msg"].decode() for entry in logs]
    assert messages[0] == "initiating IKE_SA gw[1] to 10.0.0.2"
    assert messages[-1].startswith("CHILD_SA net{1} established with SPIs")
    assert {entry["group"] for entry in logs} == {b"IKE", b"CHD"}

    sas = list(sess.list_sas())
    assert len(sas) == 1
    ike = sas[0]["gw"]
    assert ike["state"] == b"ESTABLISHED"
    assert ike["version"] == b"2"
    assert ike["initiator"] == b"yes"
    assert len(ike["initiator-spi"]) == 16
    assert ike["local-port"] == b"4500"
    assert ike["qcd"] == b"yes"
    child = ike["child-sas"]["net-1"]
    assert child["name"] == b"net" and child["reqid"] == b"1"
    assert child["encap"] == b"yes" and child["protocol"] == b"ESP"
    assert child["local-ts"] == [b"10.1.0.0/16"]
    assert len(child["spi-in"]) == 8
    assert list(sess.list_sas({"ike": "other"})) == []

    with pytest.raises(CommandException, match="CHILD_SA config 'nope' not found"):
        list(sess.initiate({"child": "nope"}))

    logs = list(sess.terminate({"ike": "gw", "timeout": 5000}))
    assert [entry["msg"] for entry in logs][-1] == b"IKE_SA gw[1] deleted"
    assert list(sess.list_sas()) == []
    assert running.call(lambda: dict(running.backend.sas)) == {}
    with pytest.raises(CommandException, match="no matching SAs to terminate found"):
        list(sess.terminate({"ike": "gw"}))


def test_rekey(sess: vici.Session) -> None:
    sess.load_conn(CONN)
    list(sess.initiate({"child": "net"}))
    before = next(iter(sess.list_sas()))["gw"]["initiator-spi"]
    assert sess.rekey({"ike": "gw"}) == {"success": b"yes", "matches": b"1"}
    after = next(iter(sess.list_sas()))["gw"]["initiator-spi"]
    assert after != before
    assert sess.rekey({"child": "net"})["matches"] == b"1"
    assert list(next(iter(sess.list_sas()))["gw"]["child-sas"]) == ["net-2"]
    with pytest.raises(CommandException, match="no matching SAs to rekey"):
        sess.rekey({"ike": "nope"})


def test_shared_secrets(sess: vici.Session, running: ServerThread) -> None:
    sess.load_shared({"id": "ike-gw", "type": "IKE", "data": "s3cret", "owners": ["gw1", "gw2"]})
    assert sess.get_shared() == {"keys": [b"ike-gw"]}
    stored = running.backend.shared["ike-gw"]
    assert stored.data == b"s3cret" and stored.owners == ("gw1", "gw2")
    sess.unload_shared({"id": "ike-gw"})
    assert sess.get_shared() == {"keys": []}
    sess.reload_settings()
    assert running.backend.reload_count == 1


def test_listen_for_sa_and_qcd_events(running: ServerThread) -> None:
    control = session(running.path)
    control.load_conn(CONN)
    watcher = session(running.path)
    events = watcher.listen(["ike-updown", "child-updown", "qcd"], timeout=10)
    # listen() registers lazily, on the first next(): consume in a thread and wait until
    # the server has all three registrations before causing events
    received: list[tuple[bytes, dict[str, Any]]] = []
    done = threading.Event()

    def consume() -> None:
        for name, message in events:
            if name is None:
                break
            received.append((name, message))
            if len(received) == 4:
                break
        events.close()  # unregisters, on the still-open socket
        done.set()

    thread = threading.Thread(target=consume)
    thread.start()
    server = running.server
    assert server is not None
    while not running.call(server.has_listeners, "qcd"):
        pass  # registrations are sent in order; qcd is the last one
    list(control.initiate({"child": "net"}))
    running.call(running.backend.emit_qcd, QcdEventKind.TOKEN_ACCEPTED)
    list(control.terminate({"ike": "gw"}))
    assert done.wait(10)
    thread.join(10)
    names = [name for name, _ in received]
    assert names == [b"ike-updown", b"child-updown", b"qcd", b"ike-updown"]
    up, child_up, qcd, down = (message for _, message in received)
    assert up["up"] == b"yes" and "child-sas" not in up["gw"]
    assert child_up["up"] == b"yes" and list(child_up["gw"]["child-sas"]) == ["net-1"]
    assert qcd["kind"] == b"token-accepted" and qcd["ikesa-name"] == b"gw"
    assert "up" not in down and down["gw"]["uniqueid"] == b"1"
    control.transport.close()
    watcher.transport.close()


def test_unknown_event_and_command(sess: vici.Session) -> None:
    with pytest.raises(EventUnknownException):
        list(sess.listen(["no-such-event"]))
    with pytest.raises(vici.exception.SessionException):
        sess.request("no-such-command")
