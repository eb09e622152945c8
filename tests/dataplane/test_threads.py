"""DataPlaneThreads: both directions on their own threads, real fds on loopback only."""

from __future__ import annotations

import socket
import threading
import time
from ipaddress import IPv4Address

import pytest

from quickike.dataplane.threads import DataPlaneThreads
from quickike.dataplane.userspace import UserspaceDataPlane

from .helpers import ipv4, spec_pair

pytestmark = pytest.mark.timeout(60)


class SocketTun:
    """A TUN stand-in on a datagram socketpair: the test holds the other end."""

    def __init__(self) -> None:
        self.ours, self.host = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.ours.setblocking(False)
        self.host.settimeout(10)

    def fileno(self) -> int:
        return self.ours.fileno()

    def readinto(self, buf: memoryview) -> int:
        return self.ours.recv_into(buf)

    def write(self, packet: bytes | bytearray | memoryview) -> int:
        return self.ours.send(packet)

    def add_route(self, network: object) -> None: ...

    def del_route(self, network: object) -> None: ...

    def close(self) -> None:
        self.ours.close()
        self.host.close()


def udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return s


def test_two_gateways_on_threads_carry_traffic_both_ways() -> None:
    tuns = [SocketTun(), SocketTun()]
    socks = [udp(), udp()]
    ports = [s.getsockname()[1] for s in socks]
    spec_a, spec_b = spec_pair(
        a_addr=(IPv4Address("127.0.0.1"), ports[0]), b_addr=(IPv4Address("127.0.0.1"), ports[1])
    )
    callback_threads: set[str] = set()
    reported = threading.Event()

    def on_unknown(*args: object) -> None:
        callback_threads.add(threading.current_thread().name)
        reported.set()

    dps = [
        UserspaceDataPlane(
            tun,
            sock.sendto,
            now=time.monotonic,
            sock=sock,
            on_unknown_spi=on_unknown,
        )
        for tun, sock in zip(tuns, socks, strict=True)
    ]
    runners = [DataPlaneThreads(dp, name=f"gw{i}") for i, dp in enumerate(dps)]
    try:
        for r in runners:
            r.start()
        dps[0].install_child(spec_a)  # installed while the threads run
        dps[1].install_child(spec_b)
        pkts = [ipv4("10.1.0.1", "10.2.0.1", payload=bytes([i % 256]) * 200) for i in range(300)]
        got: list[bytes] = []
        for i, p in enumerate(pkts):
            tuns[0].host.send(p)
            if i % 50 == 49:  # keep the loopback queues short: wait for this batch
                while len(got) < i + 1:
                    got.append(tuns[1].host.recv(4096))
        assert got == pkts
        back = ipv4("10.2.0.1", "10.1.0.1", payload=b"reply")
        tuns[1].host.send(back)
        assert tuns[0].host.recv(4096) == back
        # ESP for an SPI nobody has: reported on the inbound pump thread
        socks[0].sendto(b"\x77\x77\x77\x77" + bytes(40), ("127.0.0.1", ports[1]))
        assert reported.wait(10)
        assert callback_threads == {"gw1-in"}
        c = dps[1].counters(spec_b.spi_in)
        assert c is not None and c.packets_in == 300 and c.packets_out == 1
    finally:
        for r in runners:
            r.stop()
        for r in runners:
            assert r.error is None
        for t in tuns:
            t.close()
        for s in socks:
            s.close()


def test_needs_the_udp_socket() -> None:
    tun = SocketTun()
    try:
        dp = UserspaceDataPlane(tun, lambda v, a: None, now=time.monotonic)
        with pytest.raises(ValueError):
            DataPlaneThreads(dp)
    finally:
        tun.close()


def test_stop_is_prompt_and_start_once() -> None:
    tun, sock = SocketTun(), udp()
    try:
        dp = UserspaceDataPlane(tun, sock.sendto, now=time.monotonic, sock=sock)
        r = DataPlaneThreads(dp)
        r.start()
        with pytest.raises(RuntimeError):
            r.start()
        t0 = time.monotonic()
        r.stop()
        assert time.monotonic() - t0 < 2.0
        assert not any(t.name.startswith("esp-") for t in threading.enumerate())
    finally:
        tun.close()
        sock.close()
