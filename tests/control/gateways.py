"""Real ``quickike run`` processes on loopback for the control-plane tests.

Gateway A lives on 127.0.0.1, B on 127.0.0.2, each with its own unprivileged
ports, temporary state directory and control socket. Processes are started and
stopped by PID (SIGTERM, then SIGKILL), also when a test fails; every wait is
a poll of a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import vici

from needs import unavailable

T = TypeVar("T")

PSK = "quickike control-plane test key, long enough"

CONF = """\
quickike {{
    port = {port}
    port_nat_t = {port_nat_t}
    state_dir = {state}
    retransmit_timeout = 0.5
    retransmit_tries = 4
{settings}
}}
connections {{
    site {{
        local_addrs = {me}
        remote_addrs = {peer}
        remote_port = {peer_port}
        proposals = aes128gcm16-prfsha256-x25519
{conn}
        local {{
            auth = psk
            id = {my_id}
        }}
        remote {{
            auth = psk
            id = {peer_id}
        }}
        children {{
            net {{
                local_ts = {my_net}
                remote_ts = {peer_net}
                esp_proposals = aes128gcm16-esn
{child}
            }}
        }}
    }}
{extra_conns}
}}
secrets {{
    ike-site {{
        id-a = gw-a.example
        id-b = gw-b.example
        secret = "{psk}"
    }}
{extra_secrets}
}}
"""

#: a connection A gets over VICI (swanctl --load-all, vici.load_conn); B has it in its file
EXTRA_B = """\
    extra {
        local_addrs = 127.0.0.2
        remote_addrs = 127.0.0.1
        proposals = aes256gcm16-prfsha384-ecp256
        local {
            auth = psk
            id = extra-b.example
        }
        remote {
            auth = psk
            id = extra-a.example
        }
        children {
            lan {
                local_ts = 10.6.0.0/16
                remote_ts = 10.5.0.0/16
                esp_proposals = aes256gcm16
            }
        }
    }
"""
EXTRA_SECRET_B = """\
    ike-extra {
        id-1 = extra-a.example
        id-2 = extra-b.example
        secret = 0x706f7765726564206279207377616e63746c
    }
"""
#: a swanctl.conf-shaped strongswan.conf for swanctl itself: only the plug-ins it needs
SWANCTL_STRONGSWAN_CONF = "swanctl {\n  load = random nonce pem pkcs1 x509 pubkey openssl\n}\n"
#: credential folders swanctl expects beside swanctl.conf
CRED_DIRS = ("x509", "x509ca", "x509ocsp", "x509aa", "x509ac", "x509crl", "pubkey", "private",
             "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12")


def wait_until(cond: Callable[[], T], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.02) -> T:
    """Poll ``cond`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def require_swanctl() -> str:
    path = shutil.which("swanctl") or ("/usr/sbin/swanctl"
                                       if os.path.exists("/usr/sbin/swanctl") else None)
    if path is None:
        unavailable("swanctl not installed (scripts/install-lab-deps installs strongswan-swanctl)")
    assert path is not None
    return path


def _udp_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_udp_pair(host: str) -> int:
    """A port p such that p and p+1 are free for UDP on ``host``."""
    for _ in range(200):
        port = random.randrange(20000, 60000, 2)
        if _udp_free(host, port) and _udp_free(host, port + 1):
            return port
    raise RuntimeError("no free UDP port pair")


def free_tcp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    """One ``quickike run`` process and its files."""

    name: str  # "a" or "b"
    host: str
    port: int
    workdir: Path
    net: str
    settings: str = ""
    conn: str = ""
    child: str = ""
    extra_conns: str = ""
    extra_secrets: str = ""
    peer: Gateway | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Path:
        return self.workdir / self.name

    @property
    def socket_path(self) -> Path:
        return self.state / "quickike.vici"

    @property
    def uri(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / f"{self.name}.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def conf_text(self) -> str:
        peer = self.peer
        assert peer is not None
        return CONF.format(
            port=self.port, port_nat_t=self.port + 1, state=self.state, me=self.host,
            peer=peer.host, peer_port=peer.port, my_id=f"gw-{self.name}.example",
            peer_id=f"gw-{peer.name}.example", my_net=self.net, peer_net=peer.net,
            settings=self.settings, conn=self.conn, child=self.child,
            extra_conns=self.extra_conns, extra_secrets=self.extra_secrets, psk=PSK,
        )

    def start(self, timeout: float = 15.0) -> None:
        assert self.proc is None, "already running"
        self.conf_path.write_text(self.conf_text())
        self.starts += 1
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "quickike", "run", "-c", str(self.conf_path),
                 "--log-format", "json"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, **self.env},
            )
        wait_until(self._ready, timeout, f"gateway {self.name}'s control socket")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"gateway {self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            try:
                s.connect(str(self.socket_path))
            except OSError:
                return False
        # the control socket opens before the UDP ports are bound: a peer initiating at once
        # would meet a closed port and only get through on its retransmission
        listening = [r for r in self.log_records()
                     if str(r.get("msg", "")).startswith("listening on")]  # fmt: skip
        return len(listening) >= self.starts  # the log file is shared by every start

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (clean shutdown with Deletes), SIGKILL if it hangs; returns the exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return proc.returncode

    def kill(self) -> None:
        """A crash: SIGKILL, no Deletes sent, nothing cleaned up."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                obj = json.loads(line)
                if isinstance(obj, dict):
                    records.append(obj)
        return records

    def session(self) -> vici.Session:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(20)
        sock.connect(str(self.socket_path))
        return vici.Session(sock)

    def sas(self) -> list[dict[str, Any]]:
        s = self.session()
        try:
            return list(s.list_sas())
        finally:
            s.transport.close()


def established(gw: Gateway, conn: str = "site") -> list[dict[str, Any]]:
    """The gateway's ESTABLISHED IKE SAs of ``conn`` that carry an INSTALLED CHILD SA."""
    found = []
    for entry in gw.sas():
        body = entry.get(conn)
        if body is None or body.get("state") != b"ESTABLISHED":
            continue
        children = body.get("child-sas", {})
        if any(c.get("state") == b"INSTALLED" for c in children.values()):
            found.append(body)
    return found


@dataclass
class Pair:
    a: Gateway
    b: Gateway
    workdir: Path

    def __iter__(self) -> Iterator[Gateway]:
        return iter((self.a, self.b))

    def describe(self) -> str:
        return "\n".join(f"--- gateway {gw.name} log ---\n{gw.log_tail()}" for gw in self)


def make_pair(workdir: Path) -> Pair:
    a = Gateway("a", "127.0.0.1", free_udp_pair("127.0.0.1"), workdir, "10.1.0.0/16")
    b = Gateway("b", "127.0.0.2", free_udp_pair("127.0.0.2"), workdir, "10.2.0.0/16")
    a.peer, b.peer = b, a
    return Pair(a, b, workdir)


class Swanctl:
    """The real swanctl binary pointed at one gateway's socket."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        conf = workdir / "strongswan.conf"
        conf.write_text(SWANCTL_STRONGSWAN_CONF)
        self.env = {**os.environ, "STRONGSWAN_CONF": str(conf)}

    def write_conf(self, text: str, name: str = "swanctl") -> Path:
        confdir = self.workdir / name
        for sub in CRED_DIRS:
            (confdir / sub).mkdir(parents=True, exist_ok=True)
        path = confdir / "swanctl.conf"
        path.write_text(text)
        return path

    def run(self, gw: Gateway, *args: str, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.binary, *args, "--uri", gw.uri], env=self.env,
                                capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(
                f"swanctl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result


def scrape(port: int) -> dict[str, float]:
    """One Prometheus scrape as {'name{label="v",...}': value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def quickike_cli(*args: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quickike", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})
