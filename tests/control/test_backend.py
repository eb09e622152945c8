"""The daemon's VICI backend in-process: swanctl.conf keys over VICI, overlay, QCD stub."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from quickike.control.config import ConfigError, load_config_text, parse_identity
from quickike.control.vici.address import vici_socket_of
from quickike.control.vici.backend import BackendError, SharedSecret
from quickike.control.vici.client import CommandFailed, ViciClient
from quickike.control.vici.protocol import Section
from quickike.daemon.daemon import Daemon
from quickike.daemon.vici_backend import (
    EngineBackend,
    SpiTagger,
    ViciLogHandler,
    selector_text,
    socket_options,
)
from quickike.engine.config import DpdAction, IpsecMode, StartAction
from quickike.engine.dataplane import Selector

from .gateways import free_udp_pair

T = TypeVar("T")

FILE_CONF = """\
quickike {{
    port = {port}
    port_nat_t = {nat}
    state_dir = {state}
    qcd {{
        enable = no
    }}
}}
connections {{
    file-conn {{
        remote_addrs = 127.0.0.9
        local {{
            auth = psk
        }}
        remote {{
            auth = psk
        }}
        children {{
            c {{
            }}
        }}
    }}
}}
"""

GW: Section = {
    "local_addrs": [b"127.0.0.1"],
    "remote_addrs": [b"127.0.0.5", b"127.0.0.6"],  # loopback only: start_action sends
    "remote_port": b"9",
    "version": b"2",
    "proposals": [b"aes256gcm16-prfsha384-ecp384", b"aes128-sha256-modp2048"],
    "dpd_delay": b"30s",
    "local": {"auth": b"psk", "id": b"gw1.example"},
    "remote": {"auth": b"psk", "id": b"C=CH, O=strongSwan, CN=peer"},
    "children": {
        "net": {
            "local_ts": [b"10.1.0.0/16"],
            "remote_ts": [b"10.2.0.0/16", b"10.3.0.0/24[tcp/443]"],
            "esp_proposals": [b"aes256gcm16"],
            "mode": b"transport",
            "rekey_time": b"1h",
            "dpd_action": b"restart",
        },
    },
}


def with_daemon(workdir: Path, body: Callable[[Daemon, EngineBackend], Awaitable[T]]) -> T:
    """Run ``body`` against a started in-process daemon with its control socket."""
    port = free_udp_pair("127.0.0.1")
    conf = workdir / "quickike.conf"
    conf.write_text(FILE_CONF.format(port=port, nat=port + 1, state=workdir / "state"))
    config, _ = load_config_text(conf.read_text(), str(conf))

    async def main() -> T:
        daemon = Daemon(config, config_path=str(conf), host="127.0.0.1", ipv6=False,
                        control=True)
        await daemon.start()
        try:
            assert daemon.backend is not None
            return await body(daemon, daemon.backend)
        finally:
            await daemon._stop_control()
            daemon.close()

    return asyncio.run(main())


def test_load_conn_means_what_swanctl_conf_means(workdir: Path) -> None:
    async def body(daemon: Daemon, backend: EngineBackend) -> None:
        backend.load_conn("gw", GW)
        conn = daemon.config.connections["gw"]
        assert [str(a) for a in conn.remote_addrs] == ["127.0.0.5", "127.0.0.6"]
        assert conn.proposals == ("aes256gcm16-prfsha384-ecp384", "aes128-sha256-modp2048")
        assert conn.dpd_delay == 30.0
        assert conn.local_port == daemon.config.settings.port  # the daemon's port, as in a file
        assert str(conn.remote[0].id) == "C=CH, O=strongSwan, CN=peer"
        child = conn.children[0]
        assert child.mode is IpsecMode.TRANSPORT and child.dpd_action is DpdAction.RESTART
        assert child.rekey_time == 3600.0
        assert [str(t) for t in child.remote_ts] == ["10.2.0.0/16", "10.3.0.0/24[tcp/443]"]
        assert daemon.engine is not None and daemon.engine.policy.connection("gw") is conn
        assert backend.get_conns() == ["gw"]
        listed = [name for message in backend.list_conns() for name in message]
        assert listed == ["file-conn", "gw"]
        # replacing keeps one entry; unloading returns to the file's configuration
        backend.load_conn("gw", {**GW, "remote_addrs": [b"127.0.0.7"]})
        assert [str(a) for a in daemon.config.connections["gw"].remote_addrs] == ["127.0.0.7"]
        backend.unload_conn("gw")
        assert list(daemon.config.connections) == ["file-conn"]
        assert daemon.engine.policy.connection("gw") is None

    with_daemon(Path(workdir), body)


@pytest.mark.parametrize(("message", "error"), [
    ({"version": b"1"}, "connections.bad.version: IKEv1 is not supported by quickike"),
    ({"proposals": [b"aes999-nothing"]}, "connections.bad.proposals: invalid proposal"),
    ({"local": {"auth": b"eap-md5"}}, "EAP and XAuth authentication are not supported"),
    ({"local": {"auth": b"pubkey", "certs": [b"-----BEGIN CERTIFICATE-----"]}},
     "local.certs cannot be loaded over VICI"),
    ({"remote_addrs": [b"10.0.0.1,10.0.0.2"]}, "list items must not contain commas"),
    ({"local_addrs": [b"\xff\xfe"]}, "value is not UTF-8 text"),
    ({"remote_addrs": b"10.0.0.1\nfoo = bar"}, "line break"),
    ({"children": {"c": {"mode": b"beet"}}}, "mode 'beet' is not supported"),
])
def test_load_conn_refusals_name_the_key(workdir: Path, message: Section, error: str) -> None:
    async def body(daemon: Daemon, backend: EngineBackend) -> None:
        with pytest.raises(BackendError, match="^.*" + error.replace("(", r"\(")) as info:
            backend.load_conn("bad", message)
        assert "vici:0" not in str(info.value)
        assert "bad" not in daemon.config.connections
        assert backend.get_conns() == []

    with_daemon(Path(workdir), body)


def test_start_action_start_initiates_on_load(workdir: Path) -> None:
    async def body(daemon: Daemon, backend: EngineBackend) -> None:
        eng = daemon.engine
        assert eng is not None
        conn = {**GW, "children": {"net": {"start_action": b"start", "local_ts": [b"10.1.0.0/16"],
                                           "remote_ts": [b"10.2.0.0/16"]}}}
        backend.load_conn("gw", conn)
        assert daemon.config.connections["gw"].children[0].start_action is StartAction.START
        assert [sa.name for sa in eng.ike_sas()] == ["gw"]
        backend.load_conn("gw", conn)  # unchanged: no second tunnel
        assert [sa.name for sa in eng.ike_sas()] == ["gw"]
        backend.unload_conn("gw")  # undoes the start action, as charon does
        assert [sa.name for sa in eng.ike_sas()] == []

    with_daemon(Path(workdir), body)


def test_shared_secrets_and_the_file_overlay(workdir: Path) -> None:
    async def body(daemon: Daemon, backend: EngineBackend) -> None:
        backend.load_shared(SharedSecret("ike-gw", "ike", b"s3cret\x00bytes",
                                         ("gw1.example", "C=CH, O=strongSwan, CN=peer")))
        backend.load_shared(SharedSecret(None, "ike", b"anonymous"))
        me, _ = parse_identity("gw1.example")
        peer, _ = parse_identity("C=CH, O=strongSwan, CN=peer")
        assert daemon.config.secrets.psk(me, peer) == b"s3cret\x00bytes"
        assert backend.get_shared() == ["ike-gw"]  # anonymous secrets have no id to list
        with pytest.raises(BackendError, match="EAP secrets are not supported"):
            backend.load_shared(SharedSecret("eap-x", "eap", b"x"))
        backend.load_conn("gw", GW)

        # a reload re-reads the file and lays the VICI overlay on top again
        assert daemon.reload() is True
        assert set(daemon.config.connections) == {"file-conn", "gw"}
        assert daemon.config.secrets.psk(me, peer) == b"s3cret\x00bytes"
        assert daemon.config_path is not None
        Path(daemon.config_path).write_text("connections {\n  broken {\n")
        assert daemon.reload() is False
        with pytest.raises(BackendError, match="reloading the configuration failed"):
            backend.reload_settings()
        assert set(daemon.config.connections) == {"file-conn", "gw"}  # the old one stays

        with pytest.raises(BackendError, match="comes from the configuration file"):
            backend.unload_conn("file-conn")
        with pytest.raises(BackendError, match="'nope' failed, not found"):
            backend.unload_conn("nope")
        backend.unload_shared("ike-gw")
        assert daemon.config.secrets.psk(me, peer) == b"anonymous"
        with pytest.raises(BackendError, match="not found"):
            backend.unload_shared("ike-gw")

    with_daemon(Path(workdir), body)


def test_qcd_commands_without_qcd_say_why(workdir: Path) -> None:
    async def body(daemon: Daemon, backend: EngineBackend) -> None:
        for call in (backend.qcd_show, backend.qcd_rotate):
            with pytest.raises(BackendError, match=r"QCD not available: disabled in the "
                                                   r"configuration \(quickike.qcd.enable = no\)"):
                call()
        assert "qcd" not in backend.plugins

    with_daemon(Path(workdir), body)


def test_selector_text_as_charon_prints_it() -> None:
    ip = ipaddress.ip_address
    assert selector_text(Selector(ip("10.1.0.0"), ip("10.1.255.255"))) == "10.1.0.0/16"
    assert selector_text(Selector(ip("10.0.0.1"), ip("10.0.0.1"), 6, 80, 80)) == \
        "10.0.0.1/32[tcp/80]"
    assert selector_text(Selector(ip("10.0.0.0"), ip("10.0.0.255"), 17)) == "10.0.0.0/24[udp]"
    assert selector_text(Selector(ip("10.0.0.1"), ip("10.0.0.9"))) == "10.0.0.1..10.0.0.9"
    assert selector_text(Selector(ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
                                  0, 1024, 65535)) == "::/0[0/1024-65535]"
    assert selector_text(Selector(ip("10.0.0.1"), ip("10.0.0.1"), 50, 65535, 0)) == \
        "10.0.0.1/32[esp/OPAQUE]"


def test_socket_location_and_mode(workdir: Path) -> None:
    base = "quickike {\n  state_dir = /srv/qi\n%s}\n"
    config, _ = load_config_text(base % "")
    assert vici_socket_of(config, "/run/other") == "unix:///run/other/quickike.vici"
    assert socket_options(config) == (0o600, None)
    config, _ = load_config_text(base % "  vici_socket = unix:///run/q.vici\n")
    assert vici_socket_of(config, "/run/other") == "unix:///run/q.vici"
    config, _ = load_config_text(base % "  vici {\n    mode = 0660\n    group = 0\n  }\n")
    assert socket_options(config) == (0o660, 0)
    for bad, why in (("0666", "never world access"), ("rw", "not an octal mode")):
        config, _ = load_config_text(base % f"  vici {{\n    mode = {bad}\n  }}\n")
        with pytest.raises(ConfigError, match=why):
            socket_options(config)
    config, _ = load_config_text(base % "  vici {\n    group = no-such-group-here\n  }\n")
    with pytest.raises(ConfigError, match="no group named"):
        socket_options(config)


class _Sink:
    def __init__(self, listening: bool = True) -> None:
        self.listening = listening
        self.published: list[tuple[str, dict[str, object]]] = []

    def has_listeners(self, name: str) -> bool:
        return self.listening

    def publish_event(self, name: str, message: dict[str, object]) -> None:
        self.published.append((name, dict(message)))
        logging.getLogger("quickike.control.vici.server").warning("dropping a slow client")


def test_log_records_become_vici_log_events() -> None:
    async def main() -> None:
        sink = _Sink()
        handler = ViciLogHandler(sink, asyncio.get_running_loop())
        root = logging.getLogger("quickike")  # where the daemon attaches it
        root.addHandler(handler)
        logger = logging.getLogger("quickike.test-vici-log")
        logger.setLevel(logging.DEBUG)
        try:
            logger.info("child up", extra={"qi_fields": {"event": "child-up", "ike_uid": 7,
                                                         "name": "gw"}})
            logger.debug("plain detail")
            # the server's own warning while publishing is not forwarded again (no loop)
            assert len(sink.published) == 2
            # records from other threads arrive through the loop
            thread = threading.Thread(target=logger.error, args=("from a thread",))
            thread.start()
            thread.join()
            await asyncio.sleep(0)
            sink.listening = False
            logger.info("nobody listens")
        finally:
            root.removeHandler(handler)
        names = {name for name, _ in sink.published}
        assert names == {"log"}
        first, second, third = (m for _, m in sink.published)
        assert (first["group"], first["level"], first["ikesa-uniqueid"], first["ikesa-name"],
                first["msg"]) == ("CHD", 1, 7, "gw", "child up")
        assert (second["group"], second["level"], second["msg"]) == ("DMN", 2, "plain detail")
        assert (third["level"], third["msg"]) == (0, "from a thread")

    asyncio.run(main())


def test_spi_tagger_adds_the_ike_spis_to_child_events() -> None:
    tagger = SpiTagger(lambda uid: (b"\x01" * 8, b"\x02" * 8) if uid == 3 else None)
    record = logging.LogRecord("quickike", logging.INFO, __file__, 1, "x", None, None)
    record.qi_fields = {"event": "child-up", "ike_uid": 3}
    assert tagger.filter(record)
    assert record.qi_fields == {"event": "child-up", "ike_uid": 3,
                                "spi_i": "0101010101010101", "spi_r": "0202020202020202"}
    record.qi_fields = {"event": "ike-up", "ike_uid": 3, "spi_i": "aa", "spi_r": "bb"}
    tagger.filter(record)
    assert record.qi_fields["spi_i"] == "aa"  # the event's own SPIs win
    record.qi_fields = {"event": "liveness", "ike_uid": 4}
    tagger.filter(record)
    assert "spi_i" not in record.qi_fields


def test_initiate_timeout_over_the_socket(workdir: Path) -> None:
    """A peer that never answers: the command returns at its timeout, the SA keeps trying."""
    dead_port = free_udp_pair("127.0.0.3")

    async def body(daemon: Daemon, backend: EngineBackend) -> None:
        backend.load_conn("dead", {
            "local_addrs": [b"127.0.0.1"], "remote_addrs": [b"127.0.0.3"],
            "remote_port": str(dead_port).encode(),
            "local": {"auth": b"psk"}, "remote": {"auth": b"psk"},
            "children": {"probe": {"remote_ts": [b"10.9.0.0/16"]}},
        })
        assert daemon.vici is not None
        lines: list[str] = []

        def blocking() -> str:
            with ViciClient(daemon.vici.path) as client:  # type: ignore[union-attr]
                try:
                    client.initiate("probe", timeout_ms=300, on_log=lambda r: lines.append(
                        str(r["msg"])))
                except CommandFailed as exc:
                    return exc.errmsg
            return "succeeded?"

        errmsg = await asyncio.get_running_loop().run_in_executor(None, blocking)
        assert errmsg == "CHILD_SA 'probe' not established after 300ms"
        assert lines == ["initiating IKE_SA dead[1] to 127.0.0.3"]
        assert daemon.engine is not None
        assert [sa.state.value for sa in daemon.engine.ike_sas()] == ["CONNECTING"]

    with_daemon(Path(workdir), body)
