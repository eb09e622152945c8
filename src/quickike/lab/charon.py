"""strongSwan's charon as a real IKEv2 peer, one per namespace, driven through VICI.

Each `Charon` lives in a private directory with its own strongswan.conf (passed by
STRONGSWAN_CONF), swanctl.conf, VICI socket and log file, so several run side by side.
`charon-systemd` is used because it writes no pid file (`/usr/lib/ipsec/charon` refuses a
second copy) and stays in the foreground, which lets the lab own it by PID.

On this machine the kernel has no ESP, so ESP needs the `kernel-libipsec` plugin (userspace
ESP-in-UDP over a TUN device `ipsec0`); `CharonSettings.esp` adds it. kernel-libipsec makes
charon fake a NAT, so with it IKE_AUTH and ESP always move to port 4500.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quickike.lab.caps import CHARON_BINARY, SWANCTL_BINARY
from quickike.lab.netns import LabError, LabProcess, Namespace, run

if TYPE_CHECKING:
    import vici

CRYPTO_PLUGINS = (
    "random", "nonce", "openssl", "pem", "pkcs1", "x509", "pubkey",
    "hmac", "gcm", "aes", "sha1", "sha2", "kdf",
)  # fmt: skip
# Order matters: kernel-libipsec must come before kernel-netlink to provide the IPsec backend.
ESP_PLUGINS = ("kernel-libipsec",)
SYSTEM_PLUGINS = ("kernel-netlink", "socket-default", "vici", "updown")
SWANCTL_PLUGINS = ("pem", "pkcs1", "pkcs8", "x509", "pubkey", "openssl", "random")
CREDENTIAL_DIRS = (
    "x509", "x509ca", "x509aa", "x509ocsp", "x509crl", "x509ac",
    "pubkey", "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12",
)  # fmt: skip
# swanctl.conf keys whose comma-separated values VICI wants as lists.
LIST_KEYS = frozenset({
    "local_addrs", "remote_addrs", "vips", "pools", "proposals", "local_ts", "remote_ts",
    "esp_proposals", "ah_proposals", "certs", "cacerts", "pubkeys", "groups", "cert_policy",
})  # fmt: skip
SHARED_SECRET_TYPES = {"ike": "IKE", "eap": "EAP", "xauth": "XAUTH", "ntlm": "NTLM", "ppk": "PPK"}
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_.:/@%+,*=-]+$")
_dir_counter = itertools.count()

Tree = Mapping[str, Any]


class CharonError(LabError):
    """charon did not do what was asked; the message ends with the tail of its log."""


# -- configuration text -----------------------------------------------------------------------


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return ",".join(_format_value(v) for v in value)
    text = str(value)
    if "\n" in text:
        raise LabError(f"setting value contains a newline: {text!r}")
    if _SAFE_VALUE.match(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_tree(tree: Tree, indent: int = 0) -> str:
    """strongswan.conf / swanctl.conf syntax, one setting per line (`;` is no separator there)."""
    pad = "  " * indent
    lines: list[str] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            lines.append(f"{pad}{key} {{")
            body = render_tree(value, indent + 1)
            if body:
                lines.append(body)
            lines.append(f"{pad}}}")
        elif value is not None:
            lines.append(f"{pad}{key} = {_format_value(value)}")
    return "\n".join(lines)


@dataclass(slots=True)
class CharonSettings:
    """What goes into one charon's strongswan.conf; None leaves strongSwan's default."""

    esp: bool = True
    plugins: Sequence[str] | None = None
    log_levels: Mapping[str, int] = field(default_factory=lambda: {"default": 1, "ike": 2})
    port: int = 500
    port_nat_t: int = 4500
    retransmit_timeout: float | None = None
    retransmit_base: float | None = None
    retransmit_tries: int | None = None
    retransmit_jitter: int | None = None
    cookie_threshold: int | None = None
    fragment_size: int | None = None
    install_routes: bool = True
    extra: Tree = field(default_factory=dict)

    @classmethod
    def key_logging(cls, **kwargs: Any) -> CharonSettings:
        """Levels at which 5.9.8 logs the DH secret, SKEYSEED and every SK_* (test keys only)."""
        levels = {"default": 1, "ike": 4, "chd": 4, "cfg": 2, "enc": 2, "net": 2}
        return cls(log_levels=levels, **kwargs)

    def plugin_list(self) -> list[str]:
        if self.plugins is not None:
            return list(self.plugins)
        return [*CRYPTO_PLUGINS, *(ESP_PLUGINS if self.esp else ()), *SYSTEM_PLUGINS]

    def render(self, *, socket_path: Path, log_path: Path) -> str:
        daemon: dict[str, Any] = {
            "load_modular": False,
            "load": " ".join(self.plugin_list()),
            "port": self.port,
            "port_nat_t": self.port_nat_t,
            "install_routes": self.install_routes,
            "retransmit_timeout": self.retransmit_timeout,
            "retransmit_base": self.retransmit_base,
            "retransmit_tries": self.retransmit_tries,
            "retransmit_jitter": self.retransmit_jitter,
            "cookie_threshold": self.cookie_threshold,
            "fragment_size": self.fragment_size,
            # There is no journald here; keep charon-systemd from trying it.
            "journal": {"default": -1},
            "filelog": {
                "lab": {
                    "path": str(log_path),
                    "time_format": "%H:%M:%S",
                    "time_add_ms": True,
                    "append": True,
                    "flush_line": True,
                    **self.log_levels,
                }
            },
            "plugins": {"vici": {"socket": f"unix://{socket_path}"}},
        }
        _merge(daemon, self.extra)
        tree = {
            "charon-systemd": daemon,
            # Read by `swanctl` when run with the same STRONGSWAN_CONF: avoids a dozen
            # "plugin failed to load" lines from its compiled-in default list.
            "swanctl": {"load": " ".join(SWANCTL_PLUGINS)},
        }
        return render_tree(tree) + "\n"


def _merge(into: dict[str, Any], extra: Tree) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


# -- VICI message shapes ----------------------------------------------------------------------


def to_vici(tree: Tree) -> dict[str, Any]:
    """swanctl.conf-shaped connection settings in the shape VICI's load-conn wants."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out[key] = to_vici(value)
        elif isinstance(value, list | tuple):
            out[key] = [v if isinstance(v, str) else _format_value(v) for v in value]
        elif key in LIST_KEYS and isinstance(value, str):
            out[key] = [part.strip() for part in value.split(",") if part.strip()]
        elif isinstance(value, str):
            out[key] = value
        elif value is not None:
            out[key] = _format_value(value)
    return out


def decode_secret(secret: str | bytes) -> bytes:
    """swanctl's notation: ``0x`` hex, ``0s`` base64, anything else the literal string."""
    if isinstance(secret, bytes):
        return secret
    if secret.startswith("0x"):
        return bytes.fromhex(secret[2:])
    if secret.startswith("0s"):
        import base64

        return base64.b64decode(secret[2:])
    return secret.encode()


def shared_secret_message(section: str, body: Tree) -> dict[str, Any]:
    """A swanctl.conf ``secrets`` section (``ike-x { secret, id-* }``) as a load-shared request."""
    kind = section.split("-", 1)[0].split("_", 1)[0]
    if kind not in SHARED_SECRET_TYPES:
        raise LabError(f"secret {section!r}: only {sorted(SHARED_SECRET_TYPES)} load via VICI here")
    if "secret" not in body:
        raise LabError(f"secret {section!r} has no `secret`")
    owners = [str(v) for k, v in body.items() if k.startswith("id")]
    return {
        "id": section,
        "type": SHARED_SECRET_TYPES[kind],
        "data": decode_secret(body["secret"]),
        "owners": owners,
    }


def decode_vici(value: Any) -> Any:
    """VICI answers in bytes; tests want str (binary values stay bytes)."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    if isinstance(value, Mapping):
        return {k: decode_vici(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [decode_vici(v) for v in value]
    return value


def open_vici_session(path: Path, timeout: float = 30.0) -> vici.Session:
    """A `vici.Session` on the control socket at `path` (charon's or quickike's)."""
    import vici

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return vici.Session(sock)


def close_vici_session(session: vici.Session | None) -> None:
    """Close a session from `open_vici_session`, if any; a broken one is no error."""
    if session is not None:
        with contextlib.suppress(Exception):
            session.transport.close()


@dataclass(frozen=True, slots=True)
class IkeSaView:
    """One IKE SA from list-sas, decoded."""

    name: str
    data: Mapping[str, Any]

    @property
    def state(self) -> str:
        return str(self.data.get("state", ""))

    @property
    def uniqueid(self) -> int:
        return int(self.data.get("uniqueid", 0))

    @property
    def spi_i(self) -> str:
        return str(self.data.get("initiator-spi", ""))

    @property
    def spi_r(self) -> str:
        return str(self.data.get("responder-spi", ""))

    @property
    def children(self) -> list[Mapping[str, Any]]:
        kids = self.data.get("child-sas", {})
        return list(kids.values()) if isinstance(kids, Mapping) else []

    def child(self, name: str) -> Mapping[str, Any] | None:
        return next((c for c in self.children if c.get("name") == name), None)

    def child_state(self, name: str) -> str | None:
        kid = self.child(name)
        return None if kid is None else str(kid.get("state", ""))


# -- the daemon -------------------------------------------------------------------------------


class Charon:
    """One charon-systemd in one namespace with its own files and VICI socket."""

    def __init__(
        self,
        namespace: Namespace,
        *,
        settings: CharonSettings | None = None,
        connections: Tree | None = None,
        secrets: Tree | None = None,
        swanctl_text: str | None = None,
        label: str | None = None,
    ) -> None:
        if swanctl_text is not None and (connections or secrets):
            raise LabError("give swanctl.conf either as text or as connections/secrets, not both")
        self.namespace = namespace
        self.settings = settings if settings is not None else CharonSettings()
        self.connections: dict[str, Any] = dict(connections or {})
        self.secrets: dict[str, Any] = dict(secrets or {})
        self.swanctl_text = swanctl_text
        self.label = label or namespace.name.removeprefix(namespace.lab.prefix)
        self.dir = namespace.lab.workdir / f"charon-{self.label}-{next(_dir_counter)}"
        self.conf_path = self.dir / "strongswan.conf"
        self.swanctl_path = self.dir / "swanctl.conf"
        self.socket_path = self.dir / "charon.vici"
        self.log_path = self.dir / "charon.log"
        self.process: LabProcess | None = None
        self.generation = 0
        self._session: vici.Session | None = None
        namespace.lab.add_log(f"charon {self.label} ({self.log_path})", self.log_text)

    def __repr__(self) -> str:
        pid = self.process.pid if self.process else None
        return f"Charon({self.label!r}, ns={self.namespace.name!r}, pid={pid})"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise CharonError(f"charon {self.label} was never started")
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    # -- files --------------------------------------------------------------------------------

    def write_config(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for sub in CREDENTIAL_DIRS:
            (self.dir / sub).mkdir(exist_ok=True)
        (self.dir / "conf.d").mkdir(exist_ok=True)
        self.conf_path.write_text(
            self.settings.render(socket_path=self.socket_path, log_path=self.log_path)
        )
        if self.swanctl_text is not None:
            text = self.swanctl_text
        else:
            text = render_tree({"connections": self.connections, "secrets": self.secrets}) + "\n"
        self.swanctl_path.write_text(text)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self) -> list[str]:
        return self.log_text().splitlines()

    def _tail(self, lines: int = 40) -> str:
        out = self.process.output() if self.process else ""
        tail = "\n".join(self.log_lines()[-lines:])
        return (
            f"\n--- charon {self.label} log tail ---\n{tail}\n--- stdout/stderr ---\n{out[-2000:]}"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, *, timeout: float = 15.0, load: bool = True) -> Charon:
        """Start charon, wait until VICI answers, load the configuration (with retries)."""
        if self.alive():
            raise CharonError(f"charon {self.label} already runs as pid {self.pid}")
        self.write_config()
        self.socket_path.unlink(missing_ok=True)
        if self.log_path.exists():
            self.log_path.rename(self.dir / f"charon.{self.generation}.log")
        self.generation += 1
        env = {"STRONGSWAN_CONF": str(self.conf_path), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        self.process = self.namespace.spawn(
            [str(CHARON_BINARY)], env=env, label=f"charon-{self.label}"
        )
        deadline = time.monotonic() + timeout
        self._wait_for_vici(deadline)
        if load:
            self._retry_until(deadline, self.load)
        return self

    def _wait_for_vici(self, deadline: float) -> None:
        while True:
            if not self.alive():
                raise CharonError(
                    f"charon {self.label} exited with {self._status()}" + self._tail()
                )
            if self.socket_path.exists():
                try:
                    self.session().version()
                    return
                except OSError:
                    self._drop_session()
            if time.monotonic() > deadline:
                raise CharonError(f"charon {self.label}: VICI socket not ready" + self._tail())
            time.sleep(0.02)

    def _retry_until(self, deadline: float, action: Callable[[], object]) -> None:
        """Retry while the socket refuses (it can exist a moment before charon serves it).

        A refused configuration (CharonError) is final and raised at once.
        """
        while True:
            try:
                action()
                return
            except OSError as exc:
                self._drop_session()
                if time.monotonic() > deadline or not self.alive():
                    raise CharonError(
                        f"charon {self.label}: loading config failed: {exc}" + self._tail()
                    ) from exc
            time.sleep(0.05)

    def _status(self) -> str:
        code = self.process.returncode if self.process else None
        return "still running" if code is None else f"status {code}"

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM by PID, SIGKILL after `grace` seconds."""
        self._drop_session()
        if self.process is None:
            return None
        status = self.process.stop(grace)
        self.socket_path.unlink(missing_ok=True)
        return status

    def kill(self) -> int | None:
        """SIGKILL: a crash, no DELETE sent (for dead-peer and QCD tests)."""
        self._drop_session()
        if self.process is None:
            return None
        return self.process.kill()

    def restart(self, *, timeout: float = 15.0, crash: bool = False) -> Charon:
        """Stop (or crash, with `crash`) and start again with the same configuration; new PID."""
        if crash:
            self.kill()
        else:
            self.stop()
        return self.start(timeout=timeout)

    # -- VICI ---------------------------------------------------------------------------------

    def session(self, timeout: float = 30.0) -> vici.Session:
        if self._session is None:
            self._session = open_vici_session(self.socket_path, timeout)
        return self._session

    def _drop_session(self) -> None:
        close_vici_session(self._session)
        self._session = None

    def _call(self, what: str, fn: Callable[[vici.Session], Any]) -> Any:
        from vici.exception import CommandException, SessionException

        try:
            return fn(self.session())
        except (CommandException, SessionException) as exc:
            raise CharonError(f"charon {self.label}: {what}: {exc}" + self._tail()) from exc
        except OSError:
            self._drop_session()
            raise

    def load(self) -> None:
        """Load secrets and connections over VICI (swanctl.conf text goes through swanctl)."""
        if self.swanctl_text is not None:
            self.load_with_swanctl()
            return
        for section, body in self.secrets.items():
            shared = shared_secret_message(section, body)
            self._call(f"load-shared {section}", functools.partial(_load_shared, message=shared))
        for name, body in self.connections.items():
            conn = {name: to_vici(body)}
            self._call(f"load-conn {name}", functools.partial(_load_conn, message=conn))

    def load_with_swanctl(self) -> str:
        """`swanctl --load-all` against this charon's socket, exactly as an operator would."""
        done = run(
            [str(SWANCTL_BINARY), "--load-all", "--noprompt", "--file", str(self.swanctl_path),
             "--uri", f"unix://{self.socket_path}"],
            check=False,
            env={"STRONGSWAN_CONF": str(self.conf_path), "PATH": "/usr/sbin:/usr/bin:/bin"},
        )  # fmt: skip
        if done.returncode != 0:
            raise CharonError(
                f"swanctl --load-all failed ({done.returncode}): {done.stdout}{done.stderr}"
            )
        return done.stdout

    def version(self) -> dict[str, Any]:
        return dict(decode_vici(self._call("version", lambda s: s.version())))

    def initiate(
        self, child: str | None = None, *, ike: str | None = None, timeout: float = 10.0
    ) -> list[str]:
        """Initiate and wait for the result; returns charon's log lines for this initiation."""
        if child is None and ike is None:
            raise LabError("initiate needs a child or an ike name")
        request: dict[str, str] = {"timeout": str(int(timeout * 1000))}
        if child is not None:
            request["child"] = child
        if ike is not None:
            request["ike"] = ike
        return self._streamed("initiate", request)

    def terminate(
        self, *, ike: str | None = None, child: str | None = None, timeout: float = 10.0,
        force: bool = False,
    ) -> list[str]:  # fmt: skip
        request: dict[str, str] = {"timeout": str(int(timeout * 1000))}
        if ike is not None:
            request["ike"] = ike
        if child is not None:
            request["child"] = child
        if force:
            request["force"] = "yes"
        return self._streamed("terminate", request)

    def _streamed(self, command: str, request: Mapping[str, str]) -> list[str]:
        from vici.exception import CommandException, SessionException

        lines: list[str] = []
        session = self.session()
        try:
            for record in getattr(session, command)(dict(request)):
                lines.append(_log_line(record))
        except (CommandException, SessionException) as exc:
            joined = "\n".join(lines)
            raise CharonError(
                f"charon {self.label}: {command} {dict(request)} failed: {exc}\n{joined}"
                + self._tail()
            ) from exc
        except OSError:
            self._drop_session()
            raise
        return lines

    def list_sas(self, ike: str | None = None) -> list[IkeSaView]:
        request = {"ike": ike} if ike is not None else {}
        records = self._call("list-sas", lambda s: list(s.list_sas(request)))
        views = []
        for record in records:
            for name, data in decode_vici(record).items():
                views.append(IkeSaView(name, data))
        return views

    def list_conns(self) -> list[str]:
        records = self._call("list-conns", lambda s: list(s.list_conns()))
        return [name for record in records for name in decode_vici(record)]

    def wait_for(
        self,
        predicate: Callable[[list[IkeSaView]], bool],
        *,
        timeout: float = 10.0,
        interval: float = 0.02,
        what: str = "condition",
    ) -> list[IkeSaView]:
        """Poll list-sas until `predicate` holds; the answer comes from the real daemon."""
        deadline = time.monotonic() + timeout
        while True:
            sas = self.list_sas()
            if predicate(sas):
                return sas
            if time.monotonic() > deadline:
                summary = [(sa.name, sa.state, [c.get("state") for c in sa.children]) for sa in sas]
                raise CharonError(
                    f"charon {self.label}: {what} not reached within {timeout} s; SAs: {summary}"
                    + self._tail()
                )
            time.sleep(interval)

    def wait_established(
        self, ike: str, child: str | None = None, *, timeout: float = 10.0
    ) -> IkeSaView:
        def ready(sas: list[IkeSaView]) -> bool:
            return any(_is_up(sa, ike, child) for sa in sas)

        sas = self.wait_for(
            ready, timeout=timeout, what=f"IKE SA {ike} established (child {child})"
        )
        return next(sa for sa in sas if _is_up(sa, ike, child))


def _load_shared(session: vici.Session, message: dict[str, Any]) -> Any:
    return session.load_shared(message)


def _load_conn(session: vici.Session, message: dict[str, Any]) -> Any:
    return session.load_conn(message)


def _is_up(sa: IkeSaView, ike: str, child: str | None) -> bool:
    if sa.name != ike or sa.state != "ESTABLISHED":
        return False
    return child is None or sa.child_state(child) == "INSTALLED"


def _log_line(record: Mapping[str, Any]) -> str:
    decoded = decode_vici(record)
    return f"[{decoded.get('group', '')}] {decoded.get('msg', '')}"


def psk_gateway_configs(
    *,
    local_addr: str,
    remote_addr: str,
    local_id: str,
    remote_id: str,
    psk: str,
    proposals: str | Iterable[str] = "aes128gcm16-prfsha256-x25519",
    local_ts: str | None = None,
    remote_ts: str | None = None,
    esp_proposals: str = "aes128gcm16",
    encap: bool = True,
    conn: str = "gw",
    child: str = "net",
    extra: Tree | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(connections, secrets) for one side of a PSK site-to-site tunnel, ready for `Charon`.

    Without traffic selectors the child covers the two gateway addresses themselves.
    """
    props = proposals if isinstance(proposals, str) else ",".join(proposals)
    body: dict[str, Any] = {
        "version": 2,
        "local_addrs": local_addr,
        "remote_addrs": remote_addr,
        "proposals": props,
        "encap": encap,
        "local": {"auth": "psk", "id": local_id},
        "remote": {"auth": "psk", "id": remote_id},
        "children": {
            child: {
                "local_ts": local_ts or _host_ts(local_addr),
                "remote_ts": remote_ts or _host_ts(remote_addr),
                "esp_proposals": esp_proposals,
            }
        },
    }
    if extra:
        _merge(body, extra)
    secrets = {f"ike-{conn}": {"id-local": local_id, "id-remote": remote_id, "secret": psk}}
    return {conn: body}, secrets


def _host_ts(address: str) -> str:
    return f"{address}/128" if ":" in address else f"{address}/32"


def charon_process_ids(namespace: Namespace) -> list[int]:
    """PIDs of charon-systemd processes running inside `namespace` (for leak checks)."""
    found = []
    for pid in namespace.pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/exe").resolve().name == CHARON_BINARY.name:
                found.append(pid)
    return found


__all__ = [
    "Charon",
    "CharonError",
    "CharonSettings",
    "IkeSaView",
    "charon_process_ids",
    "close_vici_session",
    "decode_secret",
    "open_vici_session",
    "psk_gateway_configs",
    "render_tree",
    "shared_secret_message",
    "to_vici",
]
