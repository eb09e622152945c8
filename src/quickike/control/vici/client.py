"""A small synchronous VICI client for quickike's own CLI.

Plain blocking sockets, no asyncio: ``quickike status`` should start fast and
read like a script. Works against quickike and against charon alike, except
for the ``qcd-*`` commands.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from .address import socket_path_from_uri
from .protocol import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    OutSection,
    OutValue,
    Packet,
    PacketType,
    Section,
    TextSection,
    ViciError,
    as_text,
    decode_packet,
    encode_packet,
    frame_length,
)

#: seconds a plain request may take; streamed initiate/terminate default to no limit
DEFAULT_TIMEOUT = 10.0


class DaemonNotRunning(ViciError):
    """Nothing listens on the control socket."""


class ConnectionLost(ViciError):
    """The daemon closed the connection (or it timed out) in the middle of an exchange."""


class UnknownCommand(ViciError):
    """The daemon does not know the command (CMD_UNKNOWN)."""


class UnknownEvent(ViciError):
    """The daemon does not know the event name (EVENT_UNKNOWN)."""


class CommandFailed(ViciError):
    """The daemon answered ``success = no``; ``errmsg`` is its explanation."""

    def __init__(self, command: str, errmsg: str, response: Section) -> None:
        super().__init__(f"{command} failed: {errmsg}")
        self.command = command
        self.errmsg = errmsg
        self.response = response


@dataclass(slots=True)
class StreamResult:
    """Events received during a streamed command (unless a callback took them) and the
    final response."""

    events: list[Section]
    response: Section


EventCallback = Callable[[Section], None]


class _Unset(enum.Enum):
    UNSET = 0


#: "use the client's default timeout" (None already means "no timeout")
_UNSET = _Unset.UNSET
Timeout = float | None | _Unset


class ViciClient:
    """One connection to the daemon. Use as a context manager, or call :meth:`connect`."""

    def __init__(
        self,
        target: str | os.PathLike[str],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_packet_size: int = MAX_PACKET_SIZE,
    ) -> None:
        self.path = socket_path_from_uri(target)
        self.timeout = timeout
        self.max_packet_size = max_packet_size
        self._sock: socket.socket | None = None

    # ------------------------------------------------------------------ connection

    def connect(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(os.fspath(self.path))
        except FileNotFoundError:
            sock.close()
            raise DaemonNotRunning(
                f"no control socket at {self.path}: is the quickike daemon running?"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise DaemonNotRunning(
                f"control socket {self.path} refuses connections: the daemon is not running"
            ) from None
        except PermissionError:
            sock.close()
            raise ViciError(
                f"permission denied on {self.path}: run as root or as the daemon's user"
            ) from None
        except OSError as exc:
            sock.close()
            raise DaemonNotRunning(
                f"cannot connect to {self.path}: {exc.strerror or exc}"
            ) from None
        self._sock = sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> ViciClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ packets

    def _socket(self) -> socket.socket:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        return self._sock

    def _send(self, frame: bytes) -> None:
        try:
            self._socket().sendall(frame)
        except OSError as exc:
            self.close()
            raise ConnectionLost(f"sending to the daemon failed: {exc}") from None

    def _recv_exactly(self, count: int) -> bytes:
        """Read ``count`` octets. A timeout before the first octet propagates as
        TimeoutError (the stream is still in step); after it, the connection is lost."""
        sock = self._socket()
        chunks = bytearray()
        while len(chunks) < count:
            try:
                chunk = sock.recv(count - len(chunks))
            except TimeoutError:
                if not chunks:
                    raise
                self.close()
                raise ConnectionLost("timed out in the middle of a packet") from None
            except OSError as exc:
                self.close()
                raise ConnectionLost(f"reading from the daemon failed: {exc}") from None
            if not chunk:
                self.close()
                raise ConnectionLost("the daemon closed the connection")
            chunks += chunk
        return bytes(chunks)

    def _recv(self) -> Packet:
        header = self._recv_exactly(HEADER_SIZE)
        try:
            payload = self._recv_exactly(frame_length(header, self.max_packet_size))
        except TimeoutError:
            self.close()
            raise ConnectionLost("timed out in the middle of a packet") from None
        except ViciError:
            self.close()
            raise
        try:
            return decode_packet(payload, self.max_packet_size)
        except ViciError:
            self.close()
            raise

    def _with_timeout(self, timeout: Timeout) -> None:
        self._socket().settimeout(self.timeout if isinstance(timeout, _Unset) else timeout)

    # ------------------------------------------------------------------ exchanges

    def _subscription(self, ptype: PacketType, event: str) -> None:
        self._send(encode_packet(ptype, event))
        while True:
            packet = self._recv()
            if packet.type is PacketType.EVENT:
                continue  # an event already in flight for an earlier registration
            if packet.type is PacketType.EVENT_CONFIRM:
                return
            if packet.type is PacketType.EVENT_UNKNOWN:
                raise UnknownEvent(f"the daemon knows no event {event!r}")
            raise ConnectionLost(f"unexpected {packet.type.name} answering registration")

    def register(self, event: str) -> None:
        self._subscription(PacketType.EVENT_REGISTER, event)

    def unregister(self, event: str) -> None:
        self._subscription(PacketType.EVENT_UNREGISTER, event)

    def request(
        self,
        command: str,
        message: OutSection | None = None,
        *,
        check: bool = True,
        on_event: Callable[[str, Section], None] | None = None,
        timeout: Timeout = _UNSET,
    ) -> Section:
        """Send a command and return its response; events arriving meanwhile go to
        ``on_event``. With ``check``, ``success = no`` raises :class:`CommandFailed`."""
        self._with_timeout(timeout)
        try:
            self._send(encode_packet(PacketType.CMD_REQUEST, command, message or {}))
            while True:
                try:
                    packet = self._recv()
                except TimeoutError:
                    self.close()
                    raise ConnectionLost(f"no answer to {command} within the timeout") from None
                if packet.type is PacketType.EVENT:
                    if on_event is not None:
                        on_event(packet.name or "", packet.message)
                    continue
                if packet.type is PacketType.CMD_UNKNOWN:
                    raise UnknownCommand(f"the daemon does not know the command {command!r}")
                if packet.type is PacketType.CMD_RESPONSE:
                    break
                raise ConnectionLost(f"unexpected {packet.type.name} answering {command}")
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.timeout)
        response = packet.message
        if check and response.get("success") == b"no":
            errmsg = response.get("errmsg", b"")
            text = errmsg.decode("utf-8", "replace") if isinstance(errmsg, bytes) else ""
            raise CommandFailed(command, text or "no reason given", response)
        return response

    def streamed_request(
        self,
        command: str,
        event: str,
        message: OutSection | None = None,
        *,
        on_event: EventCallback | None = None,
        check: bool = True,
        timeout: Timeout = _UNSET,
    ) -> StreamResult:
        """A command that streams ``event`` events before its response (list-sas,
        initiate, ...): register, request, unregister."""
        events: list[Section] = []

        def collect(name: str, body: Section) -> None:
            if name != event:
                return
            if on_event is not None:
                on_event(body)
            else:
                events.append(body)

        self.register(event)
        try:
            response = self.request(
                command, message, check=check, on_event=collect, timeout=timeout
            )
        finally:
            if self._sock is not None:
                self.unregister(event)
        return StreamResult(events, response)

    def listen(
        self, events: Sequence[str], *, idle_timeout: float | None = None
    ) -> Iterator[tuple[str, Section]]:
        """Yield ``(name, message)`` for the given events until ``idle_timeout`` seconds
        pass without one (``None``: forever) or the caller stops iterating."""
        for name in events:
            self.register(name)
        try:
            self._socket().settimeout(idle_timeout)
            while True:
                try:
                    packet = self._recv()
                except TimeoutError:
                    return
                if packet.type is PacketType.EVENT:
                    yield packet.name or "", packet.message
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.timeout)
                for name in events:
                    self.unregister(name)

    # ------------------------------------------------------------------ commands

    def version(self) -> TextSection:
        return as_text(self.request("version"))

    def stats(self) -> TextSection:
        return as_text(self.request("stats"))

    def list_sas(self, ike: str | None = None, ike_id: int | None = None) -> list[TextSection]:
        result = self.streamed_request("list-sas", "list-sa", {"ike": ike, "ike-id": ike_id})
        return [as_text(event) for event in result.events]

    def list_conns(self, ike: str | None = None) -> list[TextSection]:
        result = self.streamed_request("list-conns", "list-conn", {"ike": ike})
        return [as_text(event) for event in result.events]

    def initiate(
        self,
        child: str | None = None,
        ike: str | None = None,
        *,
        timeout_ms: int = 0,
        loglevel: int = 1,
        on_log: Callable[[TextSection], None] | None = None,
        socket_timeout: float | None = None,
    ) -> TextSection:
        """Initiate and wait (``timeout_ms`` as charon: 0 = until done, -1 = do not wait)."""
        message: dict[str, OutValue] = {
            "child": child,
            "ike": ike,
            "timeout": timeout_ms,
            "loglevel": loglevel,
        }
        return self._controlled("initiate", message, on_log, socket_timeout)

    def terminate(
        self,
        *,
        ike: str | None = None,
        child: str | None = None,
        ike_id: int | None = None,
        child_id: int | None = None,
        force: bool = False,
        timeout_ms: int = 0,
        loglevel: int = 1,
        on_log: Callable[[TextSection], None] | None = None,
        socket_timeout: float | None = None,
    ) -> TextSection:
        message: dict[str, OutValue] = {
            **_selection(ike, child, ike_id, child_id),
            "force": "yes" if force else None,
            "timeout": timeout_ms,
            "loglevel": loglevel,
        }
        return self._controlled("terminate", message, on_log, socket_timeout)

    def _controlled(
        self,
        command: str,
        message: OutSection,
        on_log: Callable[[TextSection], None] | None,
        socket_timeout: float | None,
    ) -> TextSection:
        def forward(body: Section) -> None:
            if on_log is not None:
                on_log(as_text(body))

        result = self.streamed_request(
            command, "control-log", message, on_event=forward, timeout=socket_timeout
        )
        return as_text(result.response)

    def rekey(
        self,
        *,
        ike: str | None = None,
        child: str | None = None,
        ike_id: int | None = None,
        child_id: int | None = None,
        reauth: bool = False,
    ) -> TextSection:
        message: dict[str, OutValue] = {
            **_selection(ike, child, ike_id, child_id),
            "reauth": "yes" if reauth else None,
        }
        return as_text(self.request("rekey", message))

    def qcd_show(self) -> TextSection:
        return as_text(self.request("qcd-show"))

    def qcd_rotate(self) -> TextSection:
        return as_text(self.request("qcd-rotate"))


def _selection(
    ike: str | None, child: str | None, ike_id: int | None, child_id: int | None
) -> dict[str, OutValue]:
    """The SA selector terminate and rekey share (charon's key names; None keys are left out)."""
    return {"ike": ike, "child": child, "ike-id": ike_id, "child-id": child_id}
