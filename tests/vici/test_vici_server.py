"""Server behaviour over real Unix sockets, driven from asyncio in-process."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from vici_fake_backend import FakeBackend

from quickike.control.vici.backend import InitiateRequest, LogRecord, SharedSecret
from quickike.control.vici.commands import CommandContext
from quickike.control.vici.protocol import (
    MAX_PACKET_SIZE,
    OutSection,
    Packet,
    PacketType,
    Section,
    decode_packet,
    encode_packet,
    frame_length,
)
from quickike.control.vici.server import EVENT_NAMES, ServerError, ViciServer
from quickike.control.vici.shapes import log_event

GUARD = 10.0  # seconds; only bounds a hang, never paces a test

GW: Section = {
    "local_addrs": [b"10.0.0.1"],
    "remote_addrs": [b"10.0.0.2"],
    "local": {"auth": b"psk", "id": b"gw1"},
    "remote": {"auth": b"psk", "id": b"gw2"},
    "children": {
        "net": {"local_ts": [b"10.1.0.0/16"], "remote_ts": [b"10.2.0.0/16"]},
        "voice": {"local_ts": [b"10.1.5.0/24"], "remote_ts": [b"10.2.5.0/24"]},
    },
}


def ignore_log(record: LogRecord) -> None:
    pass


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 60))


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for a condition the server reaches by itself (e.g. noticing an EOF)."""
    async with asyncio.timeout(GUARD):
        while not predicate():
            await asyncio.sleep(0.001)


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, path: Path) -> RawClient:
        reader, writer = await asyncio.open_unix_connection(os.fspath(path))
        return cls(reader, writer)

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def recv(self) -> Packet:
        async with asyncio.timeout(GUARD):
            header = await self.reader.readexactly(4)
            payload = await self.reader.readexactly(frame_length(header))
        return decode_packet(payload)

    async def expect_closed(self) -> int:
        """Read until the server closes; return how many packets arrived before that."""
        count = 0
        async with asyncio.timeout(GUARD):
            while True:
                try:
                    header = await self.reader.readexactly(4)
                    await self.reader.readexactly(struct.unpack("!I", header)[0])
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    return count
                count += 1

    async def command(
        self, name: str, message: OutSection | None = None
    ) -> tuple[list[Packet], Packet]:
        await self.send_raw(encode_packet(PacketType.CMD_REQUEST, name, message or {}))
        events: list[Packet] = []
        while True:
            packet = await self.recv()
            if packet.type is not PacketType.EVENT:
                return events, packet
            events.append(packet)

    async def register(self, event: str, ptype: PacketType = PacketType.EVENT_REGISTER) -> Packet:
        await self.send_raw(encode_packet(ptype, event))
        return await self.recv()

    def close(self) -> None:
        self.writer.close()


def serve(
    path: Path | str,
    body: Callable[[ViciServer, FakeBackend], Awaitable[None]],
    backend: FakeBackend | None = None,
    **options: Any,
) -> None:
    async def main() -> None:
        fake = backend or FakeBackend()
        async with ViciServer(fake, path, **options) as server:
            fake.events = server
            await body(server, fake)

    run(main())


# --------------------------------------------------------------------------- commands


def test_version_unknown_command_keeps_connection(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        client = await RawClient.open(sock_path)
        _, reply = await client.command("no-such-command")
        assert reply == Packet(PacketType.CMD_UNKNOWN)
        _, reply = await client.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        assert reply.message["daemon"] == b"quickike"
        assert set(reply.message) == {"daemon", "version", "sysname", "release", "machine"}
        client.close()

    serve(sock_path, body)


def test_events_register_confirm_deliver_unregister(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        listener = await RawClient.open(sock_path)
        bystander = await RawClient.open(sock_path)
        assert await listener.register("no-such-event") == Packet(PacketType.EVENT_UNKNOWN)
        assert await listener.register("no-such-event", PacketType.EVENT_UNREGISTER) == Packet(
            PacketType.EVENT_UNKNOWN
        )
        assert not server.has_listeners("log")
        assert await listener.register("log") == Packet(PacketType.EVENT_CONFIRM)
        assert server.has_listeners("log")
        server.publish_event("log", log_event("one", group="IKE"))
        event = await listener.recv()
        assert event.type is PacketType.EVENT and event.name == "log"
        assert event.message["msg"] == b"one" and event.message["group"] == b"IKE"
        # the bystander did not register: its next packet is the reply to its own command
        _, reply = await bystander.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        assert await listener.register("log", PacketType.EVENT_UNREGISTER) == Packet(
            PacketType.EVENT_CONFIRM
        )
        server.publish_event("log", log_event("two"))
        _, reply = await listener.command("version")
        assert reply.type is PacketType.CMD_RESPONSE  # no stray "two" event before it
        with pytest.raises(ValueError):
            server.publish_event("not-an-event", {})
        assert "qcd" in EVENT_NAMES
        listener.close()
        bystander.close()

    serve(sock_path, body)


def test_streamed_list_sas_sends_events_then_response(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        backend.load_conn("gw", GW)
        backend.load_conn("gw-b", GW)
        client = await RawClient.open(sock_path)
        events, reply = await client.command("initiate", {"child": "net", "ike": "gw"})
        assert reply.message == {"success": b"yes"}
        assert events == []  # not registered for control-log: nothing streamed
        await client.command("initiate", {"child": "voice", "ike": "gw"})
        await client.command("initiate", {"child": "net", "ike": "gw-b"})
        # not registered for list-sa: the command still answers, with no events
        events, reply = await client.command("list-sas")
        assert events == [] and reply == Packet(PacketType.CMD_RESPONSE)
        await client.register("list-sa")
        events, reply = await client.command("list-sas")
        assert [list(e.message) for e in events] == [["gw"], ["gw-b"]]
        assert reply == Packet(PacketType.CMD_RESPONSE)
        gw = events[0].message["gw"]
        assert isinstance(gw, dict)
        assert list(gw["child-sas"]) == ["net-1", "voice-2"]
        events, _ = await client.command("list-sas", {"ike": "gw-b"})
        assert [list(e.message) for e in events] == [["gw-b"]]
        events, _ = await client.command("list-sas", {"ike-id": "1"})
        assert [list(e.message) for e in events] == [["gw"]]
        events, _ = await client.command("list-sas", {"child": "voice"})
        assert len(events) == 1
        only = events[0].message["gw"]
        assert isinstance(only, dict)
        assert list(only["child-sas"]) == ["voice-2"]
        events, _ = await client.command("list-sas", {"child-id": "3"})
        assert [list(e.message) for e in events] == [["gw-b"]]
        events, _ = await client.command("list-sas", {"ike": "nope"})
        assert events == []
        client.close()

    serve(sock_path, body)


def test_initiate_streams_control_log_filtered_by_loglevel(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        backend.load_conn("gw", GW)
        client = await RawClient.open(sock_path)
        await client.register("control-log")
        events, reply = await client.command("initiate", {"child": "net", "loglevel": 1})
        assert reply.message == {"success": b"yes"}
        groups = [e.message["group"] for e in events]
        assert groups == [b"IKE", b"IKE", b"CHD"]
        assert events[0].message["ikesa-name"] == b"gw"
        assert events[0].message["ikesa-uniqueid"] == b"1"
        backend.terminate_gate = None
        await client.command("terminate", {"ike": "gw"})
        events, _ = await client.command("initiate", {"child": "net", "loglevel": 2})
        assert b"ENC" in [e.message["group"] for e in events]  # the level-2 line
        events, _ = await client.command("initiate", {"child": "voice", "loglevel": 0})
        assert [e.message["group"] for e in events] == [b"CHD"]  # level-0 line only
        client.close()

    serve(sock_path, body)


def test_initiate_timeout_reports_and_continues_in_background(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        backend.load_conn("gw", GW)
        backend.initiate_gate = asyncio.Event()
        client = await RawClient.open(sock_path)
        await client.register("control-log")
        events, reply = await client.command("initiate", {"child": "net", "timeout": 50})
        assert reply.message == {
            "success": b"no",
            "errmsg": b"CHILD_SA 'net' not established after 50ms",
        }
        assert [e.message["msg"] for e in events] == [b"initiating IKE_SA gw[1] to 10.0.0.2"]
        assert backend.sas == {}
        backend.initiate_gate.set()
        await until(lambda: len(backend.sas) == 1)
        # the late log lines of the finished initiate were not sent after the reply
        _, reply = await client.command("version")
        assert reply.type is PacketType.CMD_RESPONSE

        _, reply = await client.command("terminate", {"ike": "gw"})
        assert reply.message["success"] == b"yes" and backend.sas == {}
        backend.initiate_gate = asyncio.Event()
        events, reply = await client.command("initiate", {"child": "net", "timeout": -1})
        assert reply.message == {"success": b"yes"}  # -1: answer at once, do not wait
        assert backend.sas == {}  # the initiation is still held at the gate
        assert events == []  # and nothing is streamed for it
        backend.initiate_gate.set()
        await until(lambda: len(backend.sas) == 1)
        client.close()

    serve(sock_path, body)


def test_initiate_failures(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        client = await RawClient.open(sock_path)
        _, reply = await client.command("initiate", {})
        assert reply.message == {"success": b"no", "errmsg": b"missing configuration name"}
        _, reply = await client.command("initiate", {"child": "nope"})
        assert reply.message == {"success": b"no", "errmsg": b"CHILD_SA config 'nope' not found"}
        _, reply = await client.command("initiate", {"child": "net", "timeout": "soon"})
        assert reply.message["success"] == b"no"
        assert b"timeout" in reply.message["errmsg"]
        _, reply = await client.command("initiate", {"child": {"nested": "x"}})
        assert reply.message["success"] == b"no"
        client.close()

    serve(sock_path, body)


def test_terminate_and_rekey_replies(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        backend.load_conn("gw", GW)
        client = await RawClient.open(sock_path)
        _, reply = await client.command("terminate", {})
        assert reply.message == {"success": b"no", "errmsg": b"missing terminate selector"}
        _, reply = await client.command("terminate", {"ike": "gw"})
        assert reply.message == {
            "success": b"no",
            "matches": b"0",
            "terminated": b"0",
            "errmsg": b"no matching SAs to terminate found",
        }
        _, reply = await client.command("rekey", {"ike": "gw"})
        assert reply.message == {
            "success": b"no",
            "matches": b"0",
            "errmsg": b"no matching SAs to rekey found",
        }
        await client.command("initiate", {"child": "net"})
        await client.command("initiate", {"child": "voice"})
        _, reply = await client.command("rekey", {"child": "voice"})
        assert reply.message == {"success": b"yes", "matches": b"1"}
        assert backend.calls[-1] == "rekey"
        _, reply = await client.command("rekey", {"ike-id": "1", "reauth": "yes"})
        assert reply.message == {"success": b"yes", "matches": b"1"}
        assert backend.calls[-1] == "reauth"
        _, reply = await client.command("terminate", {"child": "net"})
        assert reply.message == {"success": b"yes", "matches": b"1", "terminated": b"1"}
        assert [c.name for c in backend.sas[1].children.values()] == ["voice"]
        backend.terminate_gate = asyncio.Event()
        _, reply = await client.command("terminate", {"ike": "gw", "timeout": 30})
        assert reply.message == {
            "success": b"no",
            "errmsg": b"terminating SA not completed after 30ms",
        }
        backend.terminate_gate.set()
        await until(lambda: not backend.sas)
        client.close()

    serve(sock_path, body)


def test_config_and_credential_commands(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        client = await RawClient.open(sock_path)
        _, reply = await client.command("load-conn", {"gw": GW})
        assert reply.message == {"success": b"yes"}
        assert backend.conns["gw"] == GW
        _, reply = await client.command("load-conn", {"old": {"version": "1"}})
        assert reply.message == {
            "success": b"no",
            "errmsg": b"IKEv1 is not supported by quickike (connection 'old')",
        }
        _, reply = await client.command("load-conn", {"name": "x"})
        assert reply.message["success"] == b"no"
        _, reply = await client.command("load-conn", {})
        assert reply.message["success"] == b"no"
        _, reply = await client.command("get-conns")
        assert reply.message == {"conns": [b"gw"]}
        await client.register("list-conn")
        events, _ = await client.command("list-conns", {"ike": "gw"})
        assert [list(e.message) for e in events] == [["gw"]]
        events, _ = await client.command("list-conns", {"ike": "other"})
        assert events == []
        _, reply = await client.command("unload-conn", {"name": "gw"})
        assert reply.message == {"success": b"yes"}
        _, reply = await client.command("unload-conn", {"name": "gw"})
        assert reply.message == {
            "success": b"no",
            "errmsg": b"unloading connection 'gw' failed, not found",
        }
        _, reply = await client.command("unload-conn", {})
        assert reply.message["success"] == b"no"

        secret = b"\x00binary\xffpsk"
        _, reply = await client.command(
            "load-shared", {"id": "ike-1", "type": "IKE", "data": secret, "owners": ["a", "b"]}
        )
        assert reply.message == {"success": b"yes"}
        assert backend.shared["ike-1"] == SharedSecret("ike-1", "ike", secret, ("a", "b"))
        assert "psk" not in repr(backend.shared["ike-1"])
        _, reply = await client.command("load-shared", {"type": "rsa", "data": "x"})
        assert reply.message == {"success": b"no", "errmsg": b"invalid credential type 'rsa'"}
        _, reply = await client.command("load-shared", {"type": "ike"})
        assert reply.message == {"success": b"no", "errmsg": b"missing shared key data"}
        _, reply = await client.command("get-shared")
        assert reply.message == {"keys": [b"ike-1"]}
        _, reply = await client.command("clear-creds")
        assert reply.message == {"success": b"yes"}
        assert backend.shared == {}
        _, reply = await client.command("get-keys")
        assert reply.message == {"keys": []}
        _, reply = await client.command("load-cert", {"type": "X509", "data": "x"})
        assert reply.message == {
            "success": b"no",
            "errmsg": b"load-cert is not supported by quickike",
        }
        _, reply = await client.command("reload-settings")
        assert reply.message == {"success": b"yes"} and backend.reload_count == 1
        _, reply = await client.command("qcd-rotate")
        assert reply.message == {"success": b"yes", "token-generation": b"2"}
        client.close()

    serve(sock_path, body)


def test_handler_crash_answers_and_keeps_serving(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        def boom(ctx: CommandContext, request: Section) -> OutSection:
            raise RuntimeError("bug")

        server.register_command("boom", boom)
        client = await RawClient.open(sock_path)
        _, reply = await client.command("boom")
        assert reply.message == {"success": b"no", "errmsg": b"internal error while handling boom"}
        _, reply = await client.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        client.close()

    serve(sock_path, body)


# --------------------------------------------------------------------------- robustness

BAD_INPUT = {
    "garbage message": encode_packet(PacketType.CMD_REQUEST, "version")[4:] + b"\x09",
    "unknown packet type": b"\x09",
    "server-only CMD_RESPONSE": b"\x01",
    "server-only EVENT": b"\x07\x03log",
    "truncated name": b"\x00\x20ver",
}


def frame(payload: bytes) -> bytes:
    return struct.pack("!I", len(payload)) + payload


@pytest.mark.parametrize(
    "raw",
    [frame(p) for p in BAD_INPUT.values()]
    + [struct.pack("!I", MAX_PACKET_SIZE + 1), struct.pack("!I", 0)],
    ids=[*BAD_INPUT, "oversize length", "zero length"],
)
def test_bad_packet_closes_only_that_client(sock_path: Path, raw: bytes) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        good = await RawClient.open(sock_path)
        await good.register("log")
        bad = await RawClient.open(sock_path)
        await until(lambda: server.client_count == 2)
        await bad.send_raw(raw)
        assert await bad.expect_closed() == 0
        bad.close()
        await until(lambda: server.client_count == 1)
        server.publish_event("log", log_event("still here"))
        event = await good.recv()
        assert event.message["msg"] == b"still here"
        fresh = await RawClient.open(sock_path)
        _, reply = await fresh.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        good.close()
        fresh.close()

    serve(sock_path, body)


def test_client_vanishing_mid_packet_is_cleaned_up(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        client = await RawClient.open(sock_path)
        await client.send_raw(struct.pack("!I", 100) + b"\x00\x07vers")
        await until(lambda: server.client_count == 1)
        client.close()
        await until(lambda: server.client_count == 0)

    serve(sock_path, body)


def test_fifty_concurrent_clients(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        for name in ("a", "b", "c"):
            backend.load_conn(name, GW)
            await backend.initiate(InitiateRequest("net", name), ignore_log)
        clients = await asyncio.gather(*(RawClient.open(sock_path) for _ in range(50)))
        await until(lambda: server.client_count == 50)

        async def session(index: int, client: RawClient) -> tuple[int, list[str], bytes]:
            assert (await client.register("list-sa")).type is PacketType.EVENT_CONFIRM
            events, reply = await client.command("list-sas", {"ike": "abc"[index % 3]})
            assert reply.type is PacketType.CMD_RESPONSE
            _, version = await client.command("version")
            daemon = version.message["daemon"]
            assert isinstance(daemon, bytes)
            return index, [name for e in events for name in e.message], daemon

        results = await asyncio.gather(*(session(i, c) for i, c in enumerate(clients)))
        for index, names, daemon in results:
            assert names == ["abc"[index % 3]]
            assert daemon == b"quickike"
        for client in clients:
            client.close()
        await until(lambda: server.client_count == 0)

    serve(sock_path, body)


def test_slow_client_is_dropped_and_never_blocks_others(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        slow = await RawClient.open(sock_path)  # registers, then never reads again
        assert (await slow.register("log")).type is PacketType.EVENT_CONFIRM
        fast = await RawClient.open(sock_path)
        assert (await fast.register("log")).type is PacketType.EVENT_CONFIRM
        other = await RawClient.open(sock_path)
        await until(lambda: server.client_count == 3)
        text = "x" * 16000
        sent = 200  # 3.2 MB: far beyond the slow client's socket buffer plus max_buffered
        for index in range(sent):
            server.publish_event("log", log_event(f"{index} {text}"))  # synchronous: cannot stall
            event = await fast.recv()  # the reading client gets every event, in order
            assert event.message["msg"] == f"{index} {text}".encode()
        assert server.dropped_clients == 1
        assert server.client_count == 2
        _, reply = await other.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        # the slow client finds the connection closed after what the kernel had buffered
        received = await slow.expect_closed()
        assert 0 < received < sent
        slow.close()
        fast.close()
        other.close()

    serve(sock_path, body, max_buffered=64 * 1024)


def test_streaming_to_a_client_that_does_not_read_stops_early(sock_path: Path) -> None:
    backend = FakeBackend()
    big: Section = {
        **GW,
        "children": {f"c{i}": {"local_ts": [b"10.1.0.0/16"] * 200} for i in range(20)},
    }

    async def body(server: ViciServer, fake: FakeBackend) -> None:
        for index in range(60):
            fake.load_conn(f"gw{index}", big)
        for index in range(60):
            for child in range(20):
                await fake.initiate(InitiateRequest(f"c{child}", f"gw{index}"), ignore_log)
        hog = await RawClient.open(sock_path)
        await hog.register("list-sa")
        await hog.send_raw(encode_packet(PacketType.CMD_REQUEST, "list-sas"))
        await until(lambda: server.dropped_clients == 1)
        assert await hog.expect_closed() < 60
        hog.close()
        other = await RawClient.open(sock_path)
        _, reply = await other.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        other.close()

    serve(sock_path, body, backend, max_buffered=32 * 1024)


def test_client_limit(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        first = await RawClient.open(sock_path)
        second = await RawClient.open(sock_path)
        await until(lambda: server.client_count == 2)
        third = await RawClient.open(sock_path)
        assert await third.expect_closed() == 0
        third.close()
        _, reply = await first.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        first.close()
        second.close()

    serve(sock_path, body, max_clients=2)


def test_close_cancels_pending_commands(sock_path: Path) -> None:
    async def main() -> None:
        backend = FakeBackend()
        backend.load_conn("gw", GW)
        backend.initiate_gate = asyncio.Event()  # never set
        server = ViciServer(backend, sock_path)
        await server.start()
        client = await RawClient.open(sock_path)
        await client.send_raw(encode_packet(PacketType.CMD_REQUEST, "initiate", {"child": "net"}))
        await until(lambda: "initiate" in backend.calls)
        await server.close()
        assert await client.expect_closed() == 0
        client.close()
        assert not sock_path.exists()

    run(main())


# --------------------------------------------------------------------------- the socket file


def test_socket_file_mode_and_removal(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        st = os.stat(sock_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600

    old = os.umask(0)
    try:
        serve(sock_path, body)
    finally:
        os.umask(old)
    assert not sock_path.exists()


def test_configurable_mode_and_unix_uri(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        assert server.path == sock_path
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660

    serve(f"unix://{sock_path}", body, mode=0o660)


def test_stale_socket_is_replaced(sock_path: Path) -> None:
    leftover = socket.socket(socket.AF_UNIX)
    leftover.bind(os.fspath(sock_path))  # bound, never listening: a crashed daemon's file
    leftover.close()
    assert sock_path.exists()

    async def body(server: ViciServer, backend: FakeBackend) -> None:
        client = await RawClient.open(sock_path)
        _, reply = await client.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        client.close()

    serve(sock_path, body)


def test_live_socket_and_regular_file_are_not_taken(sock_path: Path) -> None:
    async def body(server: ViciServer, backend: FakeBackend) -> None:
        with pytest.raises(ServerError, match="in use"):
            await ViciServer(FakeBackend(), sock_path).start()
        client = await RawClient.open(sock_path)  # the first server is untouched
        _, reply = await client.command("version")
        assert reply.type is PacketType.CMD_RESPONSE
        client.close()

    serve(sock_path, body)

    sock_path.write_text("not a socket")

    async def refuse() -> None:
        with pytest.raises(ServerError, match="not a socket"):
            await ViciServer(FakeBackend(), sock_path).start()

    run(refuse())
    assert sock_path.read_text() == "not a socket"
