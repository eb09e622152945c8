"""quickike's daemon as the interop tests run it: ``python -m quickike run`` inside a namespace.

The daemon is a real process (tracked by PID through the lab, so cleanup is the lab's) with JSON
logs at debug level on stderr; every engine event is one JSON object per line (see
``quickike.control.logs``), so the tests read what quickike did from its own log: SAs up and
down with their suites and SPIs, every IKE message with its payload names, retransmissions,
liveness checks and dead peers, each with the engine's (monotonic) time.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from quickike.lab.charon import (
    IkeSaView,
    close_vici_session,
    decode_vici,
    open_vici_session,
    render_tree,
)
from quickike.lab.netns import LabError, LabProcess, Namespace

Record = dict[str, Any]
_counter = itertools.count()


class QuickikeError(LabError):
    """quickike did not do what a test waited for; the message ends with its log tail."""


class QuickikeDaemon:
    """One ``quickike run -c swanctl.conf`` in one namespace, with its own directory.

    The directory holds the configuration and, beside it, the swanctl-style credential
    folders (x509/, x509ca/, private/) where quickike finds certificates and keys.
    """

    def __init__(
        self,
        namespace: Namespace,
        *,
        connections: Mapping[str, Any],
        secrets: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        label: str = "qi",
    ) -> None:
        self.namespace = namespace
        self.label = label
        self.dir = namespace.lab.workdir / f"quickike-{label}-{next(_counter)}"
        for sub in ("x509", "x509ca", "private", "state"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path = self.dir / "swanctl.conf"
        daemon_settings: dict[str, Any] = {
            "state_dir": str(self.dir / "state"),
            "vici_socket": f"unix://{self.dir / 'state' / 'quickike.vici'}",
        }
        daemon_settings.update(settings or {})
        self.tree: dict[str, Any] = {
            "quickike": daemon_settings,
            "connections": dict(connections),
            "secrets": dict(secrets or {}),
        }
        self.vici_path = self.dir / "state" / "quickike.vici"
        self.process: LabProcess | None = None
        self._session: Any = None  # a vici.Session (the package has no type information)
        self._records: list[Record] = []
        self._offset = 0
        self._partial = b""
        namespace.lab.add_log(f"quickike {label} ({self.dir})", self.log_text)

    # -- life cycle ---------------------------------------------------------------------------

    def write_config(self) -> None:
        self.conf_path.write_text(render_tree(self.tree) + "\n")

    def start(self, timeout: float = 15.0) -> QuickikeDaemon:
        """Start the daemon and wait until its sockets are open ("listening on ...")."""
        self.write_config()
        argv = [sys.executable, "-m", "quickike", "run", "-c", str(self.conf_path),
                "--log-format", "json", "--log-level", "debug"]  # fmt: skip
        self.process = self.namespace.spawn(argv, label=f"quickike-{self.label}")
        self.wait_for(lambda r: str(r.get("msg", "")).startswith("listening on"),
                      timeout=timeout, what="sockets open")  # fmt: skip
        return self

    @property
    def stderr_path(self) -> Path:
        if self.process is None:
            raise QuickikeError(f"quickike {self.label} was never started")
        return self.process.stderr_path

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM (quickike sends a Delete for every SA and exits), SIGKILL after ``grace``."""
        self._drop_session()
        if self.process is None:
            return None
        return self.process.stop(grace)

    def sigterm(self) -> None:
        """SIGTERM without waiting: the test watches what the peer makes of the Deletes."""
        if self.process is not None:
            self.process.signal(signal.SIGTERM)

    # -- the control socket (charon's VICI protocol, driven with the same `vici` package) -------

    def session(self) -> Any:
        if self._session is None:
            self._session = open_vici_session(self.vici_path)
        return self._session

    def _drop_session(self) -> None:
        close_vici_session(self._session)
        self._session = None

    def list_sas(self) -> list[IkeSaView]:
        views = []
        for record in list(self.session().list_sas({})):
            for name, data in decode_vici(record).items():
                views.append(IkeSaView(name, data))
        return views

    def rekey(self, *, ike: str | None = None, child: str | None = None) -> int:
        """VICI ``rekey``: queues the exchange and returns at once (as charon's does)."""
        request = {k: v for k, v in (("ike", ike), ("child", child)) if v is not None}
        answer = decode_vici(self.session().rekey(request))
        return int(answer.get("matches", 0))

    def terminate(self, *, ike: str | None = None, child: str | None = None,
                  timeout: float = 10.0) -> list[str]:  # fmt: skip
        """VICI ``terminate``; waits for the Delete exchange and returns the log records."""
        request = {k: v for k, v in (("ike", ike), ("child", child)) if v is not None}
        request["timeout"] = str(int(timeout * 1000))
        return [str(decode_vici(r).get("msg", "")) for r in self.session().terminate(request)]

    def initiate(self, *, ike: str | None = None, child: str | None = None,
                 timeout: float = 10.0) -> list[str]:  # fmt: skip
        request = {k: v for k, v in (("ike", ike), ("child", child)) if v is not None}
        request["timeout"] = str(int(timeout * 1000))
        return [str(decode_vici(r).get("msg", "")) for r in self.session().initiate(request)]

    def stats(self) -> dict[str, Any]:
        return dict(decode_vici(self.session().stats()))

    # -- the log ------------------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except (FileNotFoundError, QuickikeError):
            return ""

    def records(self) -> list[Record]:
        """Every log record so far (non-JSON lines, e.g. a traceback, become ``{"raw": ...}``)."""
        if self.process is None:
            return []
        try:
            with self.stderr_path.open("rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return self._records
        self._offset += len(chunk)
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = {"raw": line.decode(errors="replace")}
            if not isinstance(record, dict):
                record = {"raw": line.decode(errors="replace")}
            self._records.append(record)
        return self._records

    def events(self, event: str | None = None, /, **match: Any) -> list[Record]:
        """Records of engine events called ``event`` (ike-up, child-down, message, ...) whose
        fields equal ``match``."""
        return [r for r in self.records() if _matches(r, event, match)]

    def messages(self, *, sent: bool | None = None, exchange: str | None = None,
                 response: bool | None = None) -> list[Record]:  # fmt: skip
        """The IKE message traces (debug level), optionally filtered."""
        out = []
        for r in self.events("message"):
            if sent is not None and r.get("sent") != sent:
                continue
            if exchange is not None and r.get("exchange") != exchange:
                continue
            if response is not None and r.get("response") != response:
                continue
            out.append(r)
        return out

    def wait_for(self, predicate: Callable[[Record], bool], *, timeout: float = 10.0,
                 what: str = "log record", after: int = 0) -> Record:  # fmt: skip
        """The first record (from index ``after`` on) that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout
        while True:
            records = self.records()
            for r in records[after:]:
                if predicate(r):
                    return r
            if not self.alive():
                raise QuickikeError(f"quickike {self.label} exited while waiting for {what}"
                                    + self.tail())  # fmt: skip
            if time.monotonic() > deadline:
                raise QuickikeError(f"quickike {self.label}: no {what} within {timeout} s"
                                    + self.tail())  # fmt: skip
            time.sleep(0.02)

    def wait_until(self, condition: Callable[[], bool], *, timeout: float = 10.0,
                   what: str = "condition") -> None:  # fmt: skip
        """Poll ``condition`` (which may ask the daemons anything) while quickike lives."""
        deadline = time.monotonic() + timeout
        while not condition():
            if not self.alive():
                raise QuickikeError(f"quickike {self.label} exited while waiting for {what}"
                                    + self.tail())  # fmt: skip
            if time.monotonic() > deadline:
                raise QuickikeError(f"quickike {self.label}: no {what} within {timeout} s"
                                    + self.tail())  # fmt: skip
            time.sleep(0.02)

    def wait_event(self, event: str, /, *, timeout: float = 10.0, after: int = 0,
                   **match: Any) -> Record:  # fmt: skip
        return self.wait_for(lambda r: _matches(r, event, match), timeout=timeout,
                             what=f"{event} event {match or ''}", after=after)  # fmt: skip

    def mark(self) -> int:
        """The number of records so far: pass as ``after`` to wait only for newer ones."""
        return len(self.records())

    def problems(self) -> list[Record]:
        """Records that mean a bug rather than a peer's fault: internal errors, tracebacks."""
        out = []
        for r in self.records():
            if "exc" in r or "raw" in r or "internal error" in str(r.get("msg", "")):
                out.append(r)
        return out

    def tail(self, lines: int = 40) -> str:
        text = "\n".join(self.log_text().splitlines()[-lines:])
        return f"\n--- quickike {self.label} log tail ---\n{text}"


def _matches(r: Record, event: str | None, match: Mapping[str, Any]) -> bool:
    if event is not None and r.get("event") != event:
        return False
    return all(r.get(k) == v for k, v in match.items())


def has_payload(record: Record, payload: str) -> bool:
    return payload in (record.get("payloads") or [])
