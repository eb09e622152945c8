"""quickike's own synchronous client against the server."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
from vici_harness import ServerThread

from quickike.control.vici.address import default_socket_path, socket_path_from_uri
from quickike.control.vici.backend import QcdEventKind
from quickike.control.vici.client import (
    CommandFailed,
    ConnectionLost,
    DaemonNotRunning,
    UnknownCommand,
    UnknownEvent,
    ViciClient,
)
from quickike.control.vici.protocol import OutSection, TextSection, ViciError, as_text
from quickike.control.vici.shapes import qcd_event

CONN: OutSection = {
    "gw": {
        "remote_addrs": ["10.0.0.2"],
        "children": {"net": {"local_ts": ["10.1.0.0/16"], "remote_ts": ["10.2.0.0/16"]}},
    }
}


def test_missing_socket_is_daemon_not_running(sock_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match="is the quickike daemon running"):
        ViciClient(sock_path).connect()


def test_stale_socket_is_daemon_not_running(sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(os.fspath(sock_path))
    stale.close()
    with pytest.raises(DaemonNotRunning, match="refuses connections"):
        ViciClient(f"unix://{sock_path}").connect()


def test_addresses() -> None:
    assert default_socket_path("/var/lib/quickike") == Path("/var/lib/quickike/quickike.vici")
    assert socket_path_from_uri("unix:///run/q.vici") == Path("/run/q.vici")
    assert socket_path_from_uri("/run/q.vici") == Path("/run/q.vici")
    with pytest.raises(ValueError):
        socket_path_from_uri("tcp://127.0.0.1:4502")
    with pytest.raises(ValueError):
        socket_path_from_uri("unix://")


def test_commands(running: ServerThread) -> None:
    with ViciClient(running.path) as client:
        assert client.version()["daemon"] == "quickike"
        client.request("load-conn", CONN)
        lines: list[TextSection] = []
        reply = client.initiate("net", on_log=lines.append)
        assert reply == {"success": "yes"}
        assert [line["group"] for line in lines] == ["IKE", "IKE", "CHD"]
        sas = client.list_sas()
        assert [list(sa) for sa in sas] == [["gw"]]
        assert client.list_sas(ike="gw", ike_id=2) == []
        assert list(client.list_conns()[0]) == ["gw"]
        assert client.stats()["ikesas"] == {"total": "1", "half-open": "0"}
        assert client.rekey(ike="gw") == {"success": "yes", "matches": "1"}
        assert client.qcd_show()["token-generation"] == "1"
        assert client.qcd_rotate()["token-generation"] == "2"
        reply = client.terminate(ike="gw", force=True)
        assert reply == {"success": "yes", "matches": "1", "terminated": "1"}
        assert client.list_sas() == []
        with pytest.raises(CommandFailed) as failed:
            client.terminate(ike="gw")
        assert failed.value.errmsg == "no matching SAs to terminate found"
        with pytest.raises(UnknownCommand):
            client.request("no-such-command")
        with pytest.raises(UnknownEvent):
            client.register("no-such-event")
        assert client.version()["daemon"] == "quickike"  # still in step after errors


def test_listen_ends_after_idle_timeout(running: ServerThread) -> None:
    server = running.server
    assert server is not None
    with ViciClient(running.path) as client:
        got: list[tuple[str, TextSection]] = []
        registered = threading.Event()

        def publish_when_registered() -> None:  # from this thread, as a daemon thread would
            while not running.call(server.has_listeners, "qcd"):
                pass
            registered.set()
            server.publish_event_threadsafe(
                "qcd", qcd_event(QcdEventKind.SPOOF_SUSPECTED, msg="QCD spoof-suspected")
            )

        thread = threading.Thread(target=publish_when_registered)
        thread.start()
        for name, message in client.listen(["qcd"], idle_timeout=0.5):
            got.append((name, as_text(message)))
        thread.join(10)
        assert registered.is_set()
        assert got == [("qcd", {"kind": "spoof-suspected", "msg": "QCD spoof-suspected"})]
        assert not running.call(server.has_listeners, "qcd")  # unregistered on the way out
        assert client.version()["daemon"] == "quickike"


def test_dropped_connection_is_connection_lost(running: ServerThread) -> None:
    server = running.server
    assert server is not None
    client = ViciClient(running.path)
    client.connect()
    assert client.version()["daemon"] == "quickike"
    running.run(server.close())
    with pytest.raises(ConnectionLost):
        client.version()
    with pytest.raises(DaemonNotRunning):
        client.version()  # reconnect attempt: the socket is gone
    assert issubclass(DaemonNotRunning, ViciError)
