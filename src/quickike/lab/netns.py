"""Network namespaces, veth wires and processes inside them, all owned by one `Lab`.

Every namespace name starts with ``qi<pid>-`` so that what a crashed run left behind can be
recognised (its creator is dead) and swept by `sweep_stale_namespaces`, and so that two test
processes never collide. A `Lab` removes everything it created on `close()`, on leaving its
``with`` block (also through an exception), at interpreter exit and on SIGTERM: test traffic
must never outlive the test that made it.

Addresses are only ever taken from 10.200.0.0/16 and fd00:200::/48 (see `GatewayPair`), and no
namespace gets a default route, so nothing sent inside the lab can leave the machine.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

NAME_PREFIX = "qi"
STOP_GRACE_SECONDS = 5.0
_STALE_RE = re.compile(rf"^{NAME_PREFIX}(\d+)-")
_lab_counter = itertools.count()


class LabError(Exception):
    """The lab could not build or drive what a test asked for."""


class CommandError(LabError):
    """A command (usually `ip`) exited non-zero; carries its output for the failure message."""

    def __init__(self, argv: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        detail = (stderr or stdout).strip()
        super().__init__(f"{' '.join(self.argv)} exited {returncode}: {detail}")


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30.0,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a short command to completion; `check` turns a non-zero exit into `CommandError`."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            stdin=None if input_text is not None else subprocess.DEVNULL,
            env=None if env is None else dict(env),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout} s") from exc
    if check and done.returncode != 0:
        raise CommandError(argv, done.returncode, done.stdout, done.stderr)
    return done


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def namespace_pids(name: str) -> list[int]:
    done = run(["ip", "netns", "pids", name], check=False)
    return [int(tok) for tok in done.stdout.split() if tok.isdigit()]


def _kill_namespace_processes(name: str) -> None:
    """SIGKILL whatever still runs in a namespace of ours (children of what we spawned)."""
    for pid in namespace_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def sweep_stale_namespaces() -> list[str]:
    """Remove lab namespaces whose creating process is dead (a crashed or SIGKILLed run).

    Only names of the form ``qi<pid>-...`` with a dead <pid> are touched, so a lab that another
    live process is using is left alone.
    """
    removed = []
    for name in list_namespaces():
        match = _STALE_RE.match(name)
        if match is None or pid_alive(int(match.group(1))):
            continue
        _kill_namespace_processes(name)
        run(["ip", "netns", "delete", name], check=False)
        removed.append(name)
    return removed


@dataclass(slots=True)
class LabProcess:
    """A long-running process started by the lab, tracked by PID with its output in files."""

    argv: list[str]
    namespace: str | None
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int | None:
        """Exit status, or None if it still runs after `timeout` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signum)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> int:
        """SIGTERM, then SIGKILL if it is still there after `grace` seconds; returns the status."""
        self.signal(signal.SIGTERM)
        status = self.wait(grace)
        if status is None:
            return self.kill()
        return status

    def kill(self) -> int:
        self.signal(signal.SIGKILL)
        status = self.wait(10.0)
        if status is None:
            raise LabError(f"pid {self.pid} ({self.argv[0]}) survived SIGKILL")
        return status

    def output(self) -> str:
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            with contextlib.suppress(OSError):
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)


class Namespace:
    """One network namespace of a lab; all helpers act inside it."""

    def __init__(self, lab: Lab, name: str) -> None:
        self.lab = lab
        self.name = name

    def __repr__(self) -> str:
        return f"Namespace({self.name!r})"

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.name, *argv], check=check, timeout=timeout, env=env)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["ip", "-n", self.name, *args], check=check)

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> LabProcess:
        return self.lab.spawn(argv, namespace=self, env=env, label=label)

    def sysctl(self, key: str, value: str | int) -> None:
        self.run("sysctl", "-q", "-w", f"{key}={value}")

    def enable_forwarding(self) -> None:
        self.sysctl("net.ipv4.ip_forward", 1)
        self.sysctl("net.ipv6.conf.all.forwarding", 1)

    def link_up(self, ifname: str) -> None:
        self.ip("link", "set", ifname, "up")

    def add_address(self, ifname: str, cidr: str) -> None:
        """`nodad` on IPv6 so the address is usable at once instead of after DAD (~1-2 s)."""
        extra = ["nodad"] if ":" in cidr else []
        self.ip("address", "add", cidr, "dev", ifname, *extra)

    def add_route(
        self,
        destination: str,
        *,
        via: str | None = None,
        dev: str | None = None,
        table: str | int | None = None,
    ) -> None:
        if destination == "default" or destination.endswith("/0"):
            raise LabError("lab namespaces get no default route: traffic must not leave the lab")
        args = ["route", "add", destination]
        if via is not None:
            args += ["via", via]
        if dev is not None:
            args += ["dev", dev]
        if table is not None:
            args += ["table", str(table)]
        self.ip(*(["-6"] if ":" in destination else []), *args)

    def ping(self, address: str, *, count: int = 1, timeout: float = 2.0) -> bool:
        """True when every one of `count` echo requests got a reply within `timeout` seconds."""
        wait = max(1, round(timeout))
        done = self.run(
            "ping", "-n", "-q", "-c", str(count), "-W", str(wait), "-i", "0.2", address,
            check=False,
            timeout=timeout * count + 10,
        )  # fmt: skip
        return done.returncode == 0

    def pids(self) -> list[int]:
        return namespace_pids(self.name)


_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the calling thread inside network namespace ``name`` for the block.

    Sockets and TUN devices made inside stay in that namespace after the thread returns, so one
    process can talk from several namespaces (Python 3.11 has no os.setns, hence ctypes).
    """
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


def netns_socket(name: str, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket that lives in network namespace ``name``, made from this process."""
    with in_netns(name):
        return socket.socket(family, kind, proto)


@dataclass(frozen=True, slots=True)
class GatewayPair:
    """Gateway A and B joined by a veth "wire", optionally each with a protected host behind it.

    ``host_a (lan_a) -- gw_a ==wire== gw_b -- (lan_b) host_b``. The gateways forward, hosts
    route the far LAN via their gateway, and the gateways have no route to the far LAN, so a
    packet from host_a reaches host_b only through a tunnel that installs one.
    """

    gw_a: Namespace
    gw_b: Namespace
    host_a: Namespace | None = None
    host_b: Namespace | None = None
    wire_if: str = "wire"
    lan_if: str = "lan"
    wire_a: str = "10.200.0.1"
    wire_b: str = "10.200.0.2"
    wire_prefix: int = 24
    wire6_a: str = "fd00:200::1"
    wire6_b: str = "fd00:200::2"
    lan_a: str = "10.200.1.0/24"
    lan_b: str = "10.200.2.0/24"
    gw_a_lan: str = "10.200.1.1"
    gw_b_lan: str = "10.200.2.1"
    host_a_addr: str = "10.200.1.2"
    host_b_addr: str = "10.200.2.2"
    lan6_a: str = "fd00:200:1::/64"
    lan6_b: str = "fd00:200:2::/64"
    gw_a_lan6: str = "fd00:200:1::1"
    gw_b_lan6: str = "fd00:200:2::1"
    host_a_addr6: str = "fd00:200:1::2"
    host_b_addr6: str = "fd00:200:2::2"


class Lab:
    """Owner of namespaces, links and processes; cleans all of them up, whatever happens."""

    def __init__(self, *, workdir: Path | None = None, keep_workdir: bool = False) -> None:
        self.prefix = f"{NAME_PREFIX}{os.getpid()}-{next(_lab_counter)}"
        self._own_workdir = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix=f"{self.prefix}-")) if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.keep_workdir = keep_workdir
        self.namespaces: list[Namespace] = []
        self.processes: list[LabProcess] = []
        self._logs: dict[str, Callable[[], str]] = {}
        self._closed = False
        self._lock = threading.RLock()
        _register(self)

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- building ---------------------------------------------------------------------------

    def add_namespace(self, label: str) -> Namespace:
        """Create namespace ``<prefix><label>`` with loopback up."""
        self._check_open()
        name = f"{self.prefix}{label}"
        run(["ip", "netns", "add", name])
        ns = Namespace(self, name)
        self.namespaces.append(ns)
        ns.link_up("lo")
        return ns

    def connect(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        """A veth pair with one end in each namespace, both up.

        Created directly inside the namespaces, so the interface names only need to be unique
        there and nothing ever appears in the caller's namespace.
        """
        self._check_open()
        run(["ip", "link", "add", a_if, "netns", a.name, "type", "veth",
             "peer", "name", b_if, "netns", b.name])  # fmt: skip
        a.link_up(a_if)
        b.link_up(b_if)

    def gateway_pair(self, *, hosts: bool = False, ipv6: bool = True) -> GatewayPair:
        gw_a = self.add_namespace("gwa")
        gw_b = self.add_namespace("gwb")
        host_a = self.add_namespace("hosta") if hosts else None
        host_b = self.add_namespace("hostb") if hosts else None
        pair = GatewayPair(gw_a, gw_b, host_a, host_b)
        self.connect(gw_a, pair.wire_if, gw_b, pair.wire_if)
        gw_a.add_address(pair.wire_if, f"{pair.wire_a}/{pair.wire_prefix}")
        gw_b.add_address(pair.wire_if, f"{pair.wire_b}/{pair.wire_prefix}")
        if ipv6:
            gw_a.add_address(pair.wire_if, f"{pair.wire6_a}/64")
            gw_b.add_address(pair.wire_if, f"{pair.wire6_b}/64")
        sides = (
            (gw_a, host_a, pair.gw_a_lan, pair.host_a_addr, pair.lan_a, pair.lan_b,
             pair.gw_a_lan6, pair.host_a_addr6, pair.lan6_b),
            (gw_b, host_b, pair.gw_b_lan, pair.host_b_addr, pair.lan_b, pair.lan_a,
             pair.gw_b_lan6, pair.host_b_addr6, pair.lan6_a),
        )  # fmt: skip
        for gw, host, gw_ip, host_ip, lan, far_lan, gw_ip6, host_ip6, far_lan6 in sides:
            if host is None:
                continue
            plen = lan.split("/")[1]
            self.connect(gw, pair.lan_if, host, pair.lan_if)
            gw.add_address(pair.lan_if, f"{gw_ip}/{plen}")
            host.add_address(pair.lan_if, f"{host_ip}/{plen}")
            host.add_route(far_lan, via=gw_ip)
            if ipv6:
                gw.add_address(pair.lan_if, f"{gw_ip6}/64")
                host.add_address(pair.lan_if, f"{host_ip6}/64")
                host.add_route(far_lan6, via=gw_ip6)
            gw.enable_forwarding()
        return pair

    # -- processes --------------------------------------------------------------------------

    def spawn(
        self,
        argv: Sequence[str],
        *,
        namespace: Namespace | None = None,
        env: Mapping[str, str] | None = None,
        label: str | None = None,
    ) -> LabProcess:
        """Start a long-running process (inside `namespace` if given) and track it by PID.

        `ip netns exec` execs the command, so the PID is the command's own. Output goes to
        files in the workdir (pipes could fill up and block a chatty daemon).
        """
        self._check_open()
        argv = list(argv)
        tag = label or Path(argv[0]).name
        index = len(self.processes)
        stdout_path = self.workdir / f"proc{index}-{tag}.out"
        stderr_path = self.workdir / f"proc{index}-{tag}.err"
        full = argv if namespace is None else ["ip", "netns", "exec", namespace.name, *argv]
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            popen = subprocess.Popen(
                full,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=None if env is None else dict(env),
                start_new_session=True,
            )
        proc = LabProcess(argv, None if namespace is None else namespace.name, popen,
                          stdout_path, stderr_path)  # fmt: skip
        with self._lock:
            self.processes.append(proc)
        return proc

    # -- failure reports --------------------------------------------------------------------

    def add_log(self, name: str, reader: Callable[[], str]) -> None:
        """Register a log that `describe()` includes (charon logs, captures, ...)."""
        self._logs[name] = reader

    def describe(self, tail_lines: int = 60) -> str:
        """The end of every registered log and process output, for a test failure message."""
        parts = [f"lab {self.prefix} workdir {self.workdir}"]
        for name, reader in self._logs.items():
            try:
                text = reader()
            except Exception as exc:
                text = f"<unreadable: {exc}>"
            parts.append(f"--- {name} (last {tail_lines} lines) ---")
            parts.extend(text.splitlines()[-tail_lines:])
        for proc in self.processes:
            status = "running" if proc.alive() else f"exit {proc.returncode}"
            out = proc.output().splitlines()[-10:]
            parts.append(f"--- pid {proc.pid} {' '.join(proc.argv[:3])} ({status}) ---")
            parts.extend(out)
        return "\n".join(parts)

    # -- cleanup ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process (SIGTERM, SIGKILL after 5 s), delete every namespace.

        Safe to call twice and from a signal handler; keeps going past individual failures
        so that one stuck piece cannot leave the rest behind.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._stop_processes()
            for ns in reversed(self.namespaces):
                with contextlib.suppress(LabError):
                    _kill_namespace_processes(ns.name)
                    run(["ip", "netns", "delete", ns.name], check=False)
            if self._own_workdir and not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            _unregister(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def _stop_processes(self) -> None:
        running = [p for p in self.processes if p.alive()]
        for proc in running:
            proc.signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for proc in running:
            if proc.wait(max(0.0, deadline - time.monotonic())) is None:
                with contextlib.suppress(LabError):
                    proc.kill()

    def _check_open(self) -> None:
        if self._closed:
            raise LabError(f"lab {self.prefix} is closed")


# -- process-wide safety net: atexit and SIGTERM -----------------------------------------------

_live: set[Lab] = set()
_live_lock = threading.Lock()
_handlers_installed = False
_previous_sigterm: Callable[[int, FrameType | None], object] | int | None = None


def live_labs() -> Iterator[Lab]:
    with _live_lock:
        return iter(list(_live))


def close_all() -> None:
    for lab in list(live_labs()):
        with contextlib.suppress(Exception):
            lab.close()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    close_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    # Die of SIGTERM as the process would have without us, so the parent sees the right status.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_handlers() -> None:
    global _handlers_installed, _previous_sigterm
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(close_all)
    if threading.current_thread() is not threading.main_thread():
        return
    current = signal.getsignal(signal.SIGTERM)
    if current is signal.SIG_IGN:
        return
    _previous_sigterm = None if current is signal.SIG_DFL else current
    signal.signal(signal.SIGTERM, _on_sigterm)


def _register(lab: Lab) -> None:
    _install_handlers()
    with _live_lock:
        _live.add(lab)


def _unregister(lab: Lab) -> None:
    with _live_lock:
        _live.discard(lab)
