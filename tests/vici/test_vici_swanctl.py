"""strongSwan's real ``swanctl`` (5.9.8 on Debian 12) driving quickike's server.

These tests check swanctl's printed text, which is what an operator sees: if a key
or a value format differs from charon's, swanctl prints "(null)", blanks or nothing.
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vici_harness import ServerThread, require_swanctl

from quickike import __version__
from quickike.control.vici.shapes import child_updown_event, log_event

pytestmark = pytest.mark.strongswan

CONF = """\
connections {
    gw {
        local_addrs = 10.0.0.1
        remote_addrs = 10.0.0.2
        version = 2
        proposals = aes256gcm16-prfsha256-x25519
        rekey_time = 4h
        dpd_delay = 30s
        local {
            auth = psk
            id = gw1.example
        }
        remote {
            auth = psk
            id = gw2.example
        }
        children {
            net {
                local_ts = 10.1.0.0/16
                remote_ts = 10.2.0.0/16, 10.3.0.0/16
                esp_proposals = aes256gcm16
                rekey_time = 1h
                dpd_action = restart
            }
        }
    }
}
secrets {
    ike-gw {
        id-1 = gw1.example
        id-2 = gw2.example
        secret = 0x73656372657421
    }
}
"""

CONF_REPLACED = """\
connections {
    branch {
        remote_addrs = 10.0.0.3
        local {
            auth = psk
        }
        remote {
            auth = psk
        }
        children {
            lan {
                remote_ts = 10.4.0.0/16
            }
        }
    }
}
secrets {
    ike-branch {
        secret = "other secret"
    }
}
"""

#: credential folders swanctl expects beside swanctl.conf
CRED_DIRS = (
    "x509",
    "x509ca",
    "x509ocsp",
    "x509aa",
    "x509ac",
    "x509crl",
    "pubkey",
    "private",
    "rsa",
    "ecdsa",
    "bliss",
    "pkcs8",
    "pkcs12",
)


class Swanctl:
    def __init__(self, binary: str, uri: str, workdir: Path) -> None:
        self.binary = binary
        self.uri = uri
        self.workdir = workdir
        conf = workdir / "strongswan.conf"
        # a minimal swanctl plugin list: no noise about plugins this machine lacks
        conf.write_text("swanctl {\n  load = random nonce pem pkcs1 x509 pubkey openssl\n}\n")
        self.env = {**os.environ, "STRONGSWAN_CONF": str(conf)}

    def write_conf(self, text: str) -> Path:
        confdir = self.workdir / "swanctl"
        for sub in CRED_DIRS:
            (confdir / sub).mkdir(parents=True, exist_ok=True)
        path = confdir / "swanctl.conf"
        path.write_text(text)
        return path

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [self.binary, *args, "--uri", self.uri],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"swanctl {' '.join(args)} failed: {result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        stdbuf = shutil.which("stdbuf")
        if stdbuf is None:
            pytest.skip("stdbuf (coreutils) missing: cannot read swanctl's output line by line")
        return subprocess.Popen(
            [stdbuf, "-oL", self.binary, *args, "--uri", self.uri],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def swanctl(running: ServerThread, sock_dir: Path) -> Iterator[Swanctl]:
    yield Swanctl(require_swanctl(), f"unix://{running.path}", sock_dir)


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def test_version_and_stats(swanctl: Swanctl) -> None:
    out = swanctl("--version", "--daemon").stdout.strip()
    assert re.fullmatch(rf"strongSwan {re.escape(__version__)} quickike \(Linux, \S+, \S+\)", out)
    stats = lines(swanctl("--stats"))
    assert re.fullmatch(r"uptime: 0 seconds, since \w{3} \d\d \d\d:\d\d:\d\d \d{4}", stats[0])
    assert stats[1:] == [
        "worker threads: 1 total, 1 idle, working: 0/0/0/0",
        "job queues: 0/0/0/0",
        "jobs scheduled: 0",
        "IKE_SAs: 0 total, 0 half-open",
        "loaded plugins: quickike-engine qcd vici",
    ]


def test_load_all_list_conns_and_reload(swanctl: Swanctl, running: ServerThread) -> None:
    conf = swanctl.write_conf(CONF)
    result = swanctl("--load-all", "--file", str(conf))
    assert lines(result) == [
        "loaded ike secret 'ike-gw'",
        "no authorities found, 0 unloaded",
        "no pools found, 0 unloaded",
        "loaded connection 'gw'",
        "successfully loaded 1 connections, 0 unloaded",
    ]
    backend = running.backend
    assert list(backend.conns) == ["gw"]
    gw = backend.conns["gw"]
    assert gw["proposals"] == [b"aes256gcm16-prfsha256-x25519"]
    children = gw["children"]
    assert isinstance(children, dict) and isinstance(children["net"], dict)
    assert children["net"]["remote_ts"] == [b"10.2.0.0/16", b"10.3.0.0/16"]
    secret = backend.shared["ike-gw"]
    assert secret.data == b"secret!" and secret.owners == ("gw1.example", "gw2.example")

    assert lines(swanctl("--list-conns")) == [
        "gw: IKEv2, no reauthentication, rekeying every 14400s, dpd delay 30s",
        "  local:  10.0.0.1",
        "  remote: 10.0.0.2",
        "  local pre-shared key authentication:",
        "    id: gw1.example",
        "  remote pre-shared key authentication:",
        "    id: gw2.example",
        "  net: TUNNEL, rekeying every 3600s, dpd action is restart",
        "    local:  10.1.0.0/16",
        "    remote: 10.2.0.0/16 10.3.0.0/16",
    ]

    # a second file replaces everything: swanctl unloads what is no longer configured
    conf = swanctl.write_conf(CONF_REPLACED)
    result = swanctl("--load-all", "--file", str(conf))
    assert lines(result) == [
        "loaded ike secret 'ike-branch'",
        "no authorities found, 0 unloaded",
        "no pools found, 0 unloaded",
        "loaded connection 'branch'",
        "successfully loaded 1 connections, 1 unloaded",
    ]
    assert list(backend.conns) == ["branch"]
    assert list(backend.shared) == ["ike-branch"]
    assert backend.shared["ike-branch"].data == b"other secret"
    assert "unload-shared ike-gw" in backend.calls
    assert lines(swanctl("--list-conns"))[:3] == [
        "branch: IKEv2, no reauthentication, rekeying every 14400s",
        "  local:  %any",
        "  remote: 10.0.0.3",
    ]


def test_load_all_reports_rejected_connection(swanctl: Swanctl, running: ServerThread) -> None:
    conf = swanctl.write_conf(CONF.replace("version = 2", "version = 1"))
    result = swanctl("--load-all", "--file", str(conf), check=False)
    assert result.returncode != 0
    assert (
        "loading connection 'gw' failed: IKEv1 is not supported by quickike (connection 'gw')"
        in result.stderr
    )
    assert running.backend.conns == {}


def test_initiate_list_sas_rekey_terminate(swanctl: Swanctl, running: ServerThread) -> None:
    swanctl("--load-all", "--file", str(swanctl.write_conf(CONF)))
    backend = running.backend

    result = swanctl("--initiate", "--child", "net")
    sa = backend.sas[1]
    child = sa.children[1]
    assert lines(result) == [
        "[IKE] initiating IKE_SA gw[1] to 10.0.0.2",
        "[IKE] IKE_SA gw[1] established between 10.0.0.1[gw1.example]...10.0.0.2[gw2.example]",
        f"[CHD] CHILD_SA net{{1}} established with SPIs {child.spi_in:08x}_i "
        f"{child.spi_out:08x}_o and TS 10.1.0.0/16 === 10.2.0.0/16 10.3.0.0/16",
        "initiate completed successfully",
    ]

    def advance() -> None:  # two minutes pass and traffic flows
        backend.now += 120
        child.bytes_in, child.packets_in = 123456, 100
        child.bytes_out, child.packets_out = 654, 7

    running.call(advance)
    assert lines(swanctl("--list-sas")) == [
        f"gw: #1, ESTABLISHED, IKEv2, {sa.spi_i:016x}_i* {sa.spi_r:016x}_r",
        "  local  'gw1.example' @ 10.0.0.1[4500]",
        "  remote 'gw2.example' @ 10.0.0.2[4500]",
        "  AES_GCM_16-256/PRF_HMAC_SHA2_256/CURVE_25519",
        "  established 120s ago, rekeying in 14280s",
        "  net: #1, reqid 1, INSTALLED, TUNNEL-in-UDP, ESP:AES_GCM_16-256",
        "    installed 120s ago, rekeying in 3180s, expires in 3480s",
        f"    in  {child.spi_in:08x}, 123456 bytes,   100 packets,     3s ago",
        f"    out {child.spi_out:08x},    654 bytes,     7 packets",
        "    local  10.1.0.0/16",
        "    remote 10.2.0.0/16 10.3.0.0/16",
    ]
    assert swanctl("--list-sas", "--ike", "other").stdout == ""
    assert lines(swanctl("--list-sas", "--ike-id", "1"))[0].startswith("gw: #1, ESTABLISHED")

    old_spi = sa.spi_i
    assert lines(swanctl("--rekey", "--ike", "gw")) == ["rekey completed successfully"]
    assert sa.spi_i != old_spi
    assert lines(swanctl("--list-sas"))[0] == (
        f"gw: #1, ESTABLISHED, IKEv2, {sa.spi_i:016x}_i* {sa.spi_r:016x}_r"
    )

    result = swanctl("--initiate", "--child", "nope", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "initiate failed: CHILD_SA config 'nope' not found"

    result = swanctl("--terminate", "--ike", "gw")
    assert lines(result) == [
        "[IKE] deleting IKE_SA gw[1] between 10.0.0.1...10.0.0.2",
        "[IKE] IKE_SA gw[1] deleted",
        "terminate completed successfully",
    ]
    assert swanctl("--list-sas").stdout == ""
    result = swanctl("--terminate", "--ike", "gw", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "terminate failed: no matching SAs to terminate found"
    result = swanctl("--rekey", "--ike", "gw", check=False)
    assert result.stderr.strip() == "rekey failed: no matching SAs to rekey found"


def publish_until_printed(
    proc: subprocess.Popen[str], running: ServerThread, event: str, publish: Callable[[], None]
) -> str:
    """Publish until swanctl prints a line. libvici installs an event callback only after
    reading EVENT_CONFIRM, so an event sent right behind the confirmation can reach it
    before the callback exists and is dropped (charon has the same window). Retrying
    until output appears makes the test independent of that client-side race."""
    server = running.server
    assert server is not None and proc.stdout is not None
    while not running.call(server.has_listeners, event):
        pass
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        for _ in range(50):
            running.call(publish)
            if selector.select(0.2):
                return proc.stdout.readline()
    raise AssertionError(f"swanctl printed nothing for {event} events")


def test_log_and_monitor_sa_receive_events(swanctl: Swanctl, running: ServerThread) -> None:
    server = running.server
    assert server is not None
    proc = swanctl.popen("--log")
    try:
        line = publish_until_printed(
            proc,
            running,
            "log",
            lambda: server.publish_event(
                "log", log_event("QCD token accepted from 10.0.0.2", group="IKE", ike_name="gw")
            ),
        )
        assert line == "00[IKE] QCD token accepted from 10.0.0.2\n"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0

    swanctl("--load-all", "--file", str(swanctl.write_conf(CONF)))
    swanctl("--initiate", "--child", "net")
    backend = running.backend
    sa = backend.sas[1]
    proc = swanctl.popen("--monitor-sa")
    try:
        line = publish_until_printed(
            proc,
            running,
            "child-updown",
            lambda: server.publish_event(
                "child-updown",
                child_updown_event(backend.ike_view(sa), backend.child_view(sa.children[1]), True),
            ),
        )
        assert line == f"gw: #1, ESTABLISHED, IKEv2, {sa.spi_i:016x}_i* {sa.spi_r:016x}_r\n"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0
