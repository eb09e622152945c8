"""The VICI control socket: an asyncio Unix-socket server compatible with charon's.

Design points, each protecting the daemon from its clients:

* Output to a client goes straight into that client's transport buffer and is
  bounded: a client that stops reading (a stuck ``swanctl --log``, a script
  that registered for events and went to sleep) is dropped as soon as its
  backlog passes ``max_buffered``, so ``publish_event`` never waits and the
  engine never stalls behind a slow reader.
* A malformed packet, or a packet type only a server may send, closes that one
  connection; every other client carries on.
* Commands on one connection run one at a time, in order, as VICI requires
  (there is no request id); different connections run concurrently.
* The socket file is created with its final mode already applied (no window in
  which other users could connect), a stale file left by a crashed daemon is
  replaced, and a live daemon's socket is never stolen.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import os
import socket
import stat
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, TypeVar

from .address import DEFAULT_SOCKET_NAME, default_socket_path, socket_path_from_uri
from .backend import BackendError, ViciBackend
from .commands import Handler, failure, standard_commands
from .protocol import (
    HEADER_SIZE,
    MAX_PACKET_SIZE,
    OutSection,
    Packet,
    PacketType,
    ViciDecodeError,
    ViciEncodeError,
    ViciError,
    ViciRequestError,
    decode_packet,
    encode_packet,
    frame_length,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MODE = 0o600
DEFAULT_MAX_CLIENTS = 128
#: per-client output backlog (beyond the kernel's socket buffer) before the client is dropped
DEFAULT_MAX_BUFFERED = 4 * 1024 * 1024

#: events a client may register for: charon's, plus quickike's ``qcd``
EVENT_NAMES = frozenset(
    {
        "log",
        "control-log",
        "ike-updown",
        "ike-rekey",
        "ike-update",
        "child-updown",
        "child-rekey",
        "list-sa",
        "list-conn",
        "list-policy",
        "list-cert",
        "list-authority",
        "qcd",
    }
)


class ServerError(ViciError):
    """The server cannot take its socket path (a live daemon owns it, or it is no socket)."""


__all__ = [
    "DEFAULT_SOCKET_NAME",
    "EVENT_NAMES",
    "ServerError",
    "ViciServer",
    "default_socket_path",
    "socket_path_from_uri",
]


class _Client:
    """One connection: its registrations and its bounded output."""

    __slots__ = ("cid", "closed", "registered", "server", "writer")

    def __init__(self, server: ViciServer, cid: int, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.cid = cid
        self.writer = writer
        self.registered: set[str] = set()
        self.closed = False

    def send(self, frame: bytes) -> None:
        if self.closed:
            return
        transport = self.writer.transport
        if transport.is_closing():
            self.closed = True
            return
        transport.write(frame)
        if transport.get_write_buffer_size() > self.server.max_buffered:
            self.drop("output backlog over limit (client not reading)")

    def drop(self, reason: str) -> None:
        """Close at once, discarding unsent output."""
        if self.closed:
            return
        log.warning("vici: dropping client %d: %s", self.cid, reason)
        self.closed = True
        self.server.dropped_clients += 1
        self.writer.transport.abort()

    def close(self) -> None:
        """Close after flushing what is buffered."""
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()


class _Context:
    """The :class:`~quickike.control.vici.commands.CommandContext` of one request."""

    __slots__ = ("client", "server")

    def __init__(self, server: ViciServer, client: _Client) -> None:
        self.server = server
        self.client = client

    @property
    def closed(self) -> bool:
        return self.client.closed

    def stream(self, event: str, message: OutSection) -> None:
        if event in self.client.registered and not self.client.closed:
            self.client.send(
                encode_packet(
                    PacketType.EVENT, event, message, max_size=self.server.max_packet_size
                )
            )

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        return self.server.spawn(coro)


class ViciServer:
    """Serve ``backend`` over a VICI Unix socket at ``path`` (a path or ``unix://`` URI)."""

    def __init__(
        self,
        backend: ViciBackend,
        path: str | os.PathLike[str],
        *,
        mode: int = DEFAULT_MODE,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        max_packet_size: int = MAX_PACKET_SIZE,
    ) -> None:
        self.backend = backend
        self.path = socket_path_from_uri(path)
        self.mode = mode
        self.max_clients = max_clients
        self.max_buffered = max_buffered
        self.max_packet_size = max_packet_size
        self.dropped_clients = 0
        self._commands: dict[str, Handler] = standard_commands(backend)
        self._clients: dict[int, _Client] = {}
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._next_cid = 1
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._identity: tuple[int, int] | None = None

    # ------------------------------------------------------------------ configuration

    def register_command(self, name: str, handler: Handler) -> None:
        """Add or replace a command (e.g. the daemon adding load-cert later)."""
        self._commands[name] = handler

    @property
    def commands(self) -> Mapping[str, Handler]:
        return self._commands

    @property
    def client_count(self) -> int:
        return len(self._clients)

    # ------------------------------------------------------------------ events

    def has_listeners(self, name: str) -> bool:
        """Whether anyone registered for ``name``: lets the daemon skip building log events."""
        return any(name in client.registered for client in self._clients.values())

    def publish_event(self, name: str, message: OutSection) -> None:
        """Send an event to every client registered for it. Never blocks; call it on the
        server's event loop (see :meth:`publish_event_threadsafe` otherwise)."""
        if name not in EVENT_NAMES:
            raise ValueError(f"unknown VICI event {name!r}")
        listeners = [c for c in self._clients.values() if name in c.registered and not c.closed]
        if not listeners:
            return
        try:
            frame = encode_packet(PacketType.EVENT, name, message, max_size=self.max_packet_size)
        except ViciEncodeError:
            log.exception("vici: cannot encode %s event; not sent", name)
            return
        for client in listeners:
            client.send(frame)

    def publish_event_threadsafe(self, name: str, message: OutSection) -> None:
        if self._loop is None:
            raise RuntimeError("server not started")
        self._loop.call_soon_threadsafe(self.publish_event, name, message)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale_socket()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # On Linux the mode of an unbound socket's inode becomes the mode of the file
            # bind() creates, so the socket never exists with umask-derived permissions.
            with contextlib.suppress(OSError):
                os.fchmod(sock.fileno(), self.mode)
            sock.bind(os.fspath(self.path))
            os.chmod(self.path, self.mode)
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)
            sock.setblocking(False)
            self._accepting = True
            self._server = await asyncio.start_unix_server(self._on_connect, sock=sock)
        except BaseException:
            self._accepting = False
            sock.close()
            self._unlink_own_socket()
            raise
        log.info("vici: listening on unix://%s", self.path)

    async def close(self) -> None:
        self._accepting = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for client in list(self._clients.values()):
            client.close()
        tasks = [*self._connection_tasks, *self._background]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 5)
        self._unlink_own_socket()

    async def __aenter__(self) -> ViciServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Own a task: keep a reference, log its failure, cancel it on close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, BackendError):
            log.info("vici: background operation failed: %s", exc)
        elif exc is not None:
            log.error("vici: background operation crashed", exc_info=exc)

    def _remove_stale_socket(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ServerError(f"{self.path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(os.fspath(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            pass  # nobody listens: a leftover from a daemon that died
        except OSError as exc:
            if exc.errno not in (errno.ECONNREFUSED, errno.ENOENT):
                raise ServerError(f"cannot probe existing socket {self.path}: {exc}") from exc
        else:
            raise ServerError(f"{self.path} is in use by a running daemon")
        finally:
            probe.close()
        log.info("vici: removing stale socket %s", self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _unlink_own_socket(self) -> None:
        # Only remove the file we created: a successor may already have bound the path.
        if self._identity is None:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        self._identity = None

    # ------------------------------------------------------------------ connections

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._accepting or len(self._clients) >= self.max_clients:
            log.warning("vici: refusing connection (limit of %d clients)", self.max_clients)
            writer.transport.abort()
            writer.close()
            return
        cid = self._next_cid
        self._next_cid += 1
        client = _Client(self, cid, writer)
        self._clients[cid] = client
        task = asyncio.current_task()
        if task is not None:
            self._connection_tasks.add(task)
        try:
            await self._serve(client, reader)
        except ViciDecodeError as exc:
            log.warning("vici: closing client %d after malformed input: %s", cid, exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("vici: client %d failed", cid)
        finally:
            client.close()
            self._clients.pop(cid, None)
            if task is not None:
                self._connection_tasks.discard(task)

    async def _serve(self, client: _Client, reader: asyncio.StreamReader) -> None:
        while not client.closed:
            try:
                header = await reader.readexactly(HEADER_SIZE)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    raise ViciDecodeError("connection closed inside a packet header") from None
                return
            length = frame_length(header, self.max_packet_size)
            try:
                payload = await reader.readexactly(length)
            except asyncio.IncompleteReadError:
                raise ViciDecodeError("connection closed inside a packet") from None
            await self._dispatch(client, decode_packet(payload, self.max_packet_size))

    async def _dispatch(self, client: _Client, packet: Packet) -> None:
        name = packet.name or ""
        if packet.type is PacketType.CMD_REQUEST:
            handler = self._commands.get(name)
            if handler is None:
                log.debug("vici: client %d: unknown command %r", client.cid, name)
                client.send(encode_packet(PacketType.CMD_UNKNOWN))
                return
            reply = await self._run(handler, client, name, packet)
            client.send(self._encode_reply(name, reply))
        elif packet.type in (PacketType.EVENT_REGISTER, PacketType.EVENT_UNREGISTER):
            if name not in EVENT_NAMES:
                client.send(encode_packet(PacketType.EVENT_UNKNOWN))
                return
            if packet.type is PacketType.EVENT_REGISTER:
                client.registered.add(name)
            else:
                client.registered.discard(name)
            client.send(encode_packet(PacketType.EVENT_CONFIRM))
        else:
            raise ViciDecodeError(
                f"client sent a {packet.type.name} packet, which only servers send"
            )

    async def _run(
        self, handler: Handler, client: _Client, name: str, packet: Packet
    ) -> OutSection:
        log.debug("vici: client %d: %s", client.cid, name)  # never the message: it may hold secrets
        try:
            result = handler(_Context(self, client), packet.message)
            if inspect.isawaitable(result):
                result = await result
            return result
        except (BackendError, ViciRequestError) as exc:
            return failure(str(exc) or f"{name} failed")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("vici: command %s crashed", name)
            return failure(f"internal error while handling {name}")

    def _encode_reply(self, name: str, reply: OutSection) -> bytes:
        try:
            return encode_packet(
                PacketType.CMD_RESPONSE, message=reply, max_size=self.max_packet_size
            )
        except ViciEncodeError as exc:
            log.error("vici: reply to %s not encodable: %s", name, exc)
            return encode_packet(
                PacketType.CMD_RESPONSE, message=failure(f"reply to {name} could not be encoded")
            )
