"""Shared builders for the data-plane tests: SA pairs, IP packets, an in-memory TUN."""

from __future__ import annotations

import os
import struct
from collections import deque
from dataclasses import replace
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Any

from quickike.dataplane.userspace import UserspaceDataPlane
from quickike.engine.dataplane import ChildSaSpec, IPAddress, Selector
from quickike.wire.enums import EncrId, IntegId

#: (name, encr id, key bits, integ id, encryption key octets, integrity key octets)
SUITES = [
    ("aes128gcm16", EncrId.AES_GCM_16, 128, 0, 20, 0),
    ("aes192gcm16", EncrId.AES_GCM_16, 192, 0, 28, 0),
    ("aes256gcm16", EncrId.AES_GCM_16, 256, 0, 36, 0),
    ("chacha20poly1305", EncrId.CHACHA20_POLY1305, 256, 0, 36, 0),
    ("aes128-sha256", EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, 16, 32),
    ("aes256-sha1", EncrId.AES_CBC, 256, IntegId.HMAC_SHA1_96, 32, 20),
    ("aes192-sha384", EncrId.AES_CBC, 192, IntegId.HMAC_SHA2_384_192, 24, 48),
    ("aes256-sha512", EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_512_256, 32, 64),
]


def net(cidr: str) -> Selector:
    n = ip_network(cidr)
    return Selector(n[0], n[-1])


def spec_pair(
    encr_id: int = EncrId.AES_GCM_16,
    key_bits: int = 128,
    integ_id: int = 0,
    ekey: int = 20,
    ikey: int = 0,
    *,
    esn: bool = False,
    a_ts: tuple[Selector, ...] = (net("10.1.0.0/24"),),
    b_ts: tuple[Selector, ...] = (net("10.2.0.0/24"),),
    a_addr: tuple[IPAddress, int] = (IPv4Address("192.0.2.1"), 4500),
    b_addr: tuple[IPAddress, int] = (IPv4Address("192.0.2.2"), 4500),
    spi_a: bytes = b"\xaa\x00\x00\x01",
    spi_b: bytes = b"\xbb\x00\x00\x01",
    soft_bytes: int = 0,
    hard_bytes: int = 0,
    soft_packets: int = 0,
    hard_packets: int = 0,
) -> tuple[ChildSaSpec, ChildSaSpec]:
    """Specs of gateway A and gateway B for one CHILD SA, keys mirrored as the engine cuts them."""
    e_ab, e_ba = os.urandom(ekey), os.urandom(ekey)
    i_ab, i_ba = os.urandom(ikey), os.urandom(ikey)
    a = ChildSaSpec(
        ike_uid=1,
        child_uid=1,
        name="net",
        spi_in=spi_a,
        spi_out=spi_b,
        encr_id=encr_id,
        encr_key_bits=key_bits,
        integ_id=integ_id,
        esn=esn,
        encr_key_in=e_ba,
        integ_key_in=i_ba,
        encr_key_out=e_ab,
        integ_key_out=i_ab,
        local_ts=a_ts,
        remote_ts=b_ts,
        local_addr=a_addr,
        remote_addr=b_addr,
        encap=True,
        soft_bytes=soft_bytes,
        hard_bytes=hard_bytes,
        soft_packets=soft_packets,
        hard_packets=hard_packets,
    )
    b = replace(
        a,
        spi_in=spi_b,
        spi_out=spi_a,
        encr_key_in=e_ab,
        integ_key_in=i_ab,
        encr_key_out=e_ba,
        integ_key_out=i_ba,
        local_ts=b_ts,
        remote_ts=a_ts,
        local_addr=b_addr,
        remote_addr=a_addr,
    )
    return a, b


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return int(~s & 0xFFFF)


def ipv4(
    src: str,
    dst: str,
    proto: int = 17,
    payload: bytes = b"",
    *,
    sport: int | None = 1234,
    dport: int | None = 5678,
    frag_offset: int = 0,
) -> bytes:
    """An IPv4 packet; UDP/TCP get a port header (TCP a minimal one), ICMP type/code from ports."""
    if proto == 17 and sport is not None and dport is not None:
        l4 = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    elif proto == 6 and sport is not None and dport is not None:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0x02, 1024, 0, 0) + payload
    elif proto == 1:
        l4 = struct.pack("!BBHI", 8 if sport is None else sport, dport or 0, 0, 0) + payload
    else:
        l4 = payload
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(l4),
        0x1234,
        frag_offset // 8,
        64,
        proto,
        0,
        IPv4Address(src).packed,
        IPv4Address(dst).packed,
    )
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + l4


def ipv6(
    src: str,
    dst: str,
    proto: int = 17,
    payload: bytes = b"",
    *,
    sport: int = 1234,
    dport: int = 5678,
    ext: bytes = b"",
    ext_proto: int | None = None,
) -> bytes:
    """An IPv6 packet; ``ext`` is inserted as extension headers starting with ``ext_proto``."""
    l4 = (
        struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
        if proto == 17
        else payload
    )
    body = ext + l4
    first = proto if ext_proto is None else ext_proto
    return (
        struct.pack("!IHBB", 0x60000000, len(body), first, 64)
        + IPv6Address(src).packed
        + IPv6Address(dst).packed
        + body
    )


class FakeTun:
    """An in-memory TUN: ``inbox`` is what the host routes into it, ``written`` what we deliver."""

    def __init__(self) -> None:
        self.inbox: deque[bytes] = deque()
        self.written: list[bytes] = []
        self.routes: list[tuple[str, str]] = []

    def fileno(self) -> int:
        return -1

    def readinto(self, buf: memoryview) -> int:
        if not self.inbox:
            raise BlockingIOError
        pkt = self.inbox.popleft()
        buf[: len(pkt)] = pkt
        return len(pkt)

    def write(self, packet: bytes | bytearray | memoryview) -> int:
        self.written.append(bytes(packet))
        return len(packet)

    def add_route(self, network: object) -> None:
        self.routes.append(("add", str(network)))

    def del_route(self, network: object) -> None:
        self.routes.append(("del", str(network)))


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Gateway:
    """One UserspaceDataPlane with a fake TUN, recording what it sends and reports."""

    def __init__(self, clock: Clock, **kwargs: Any) -> None:
        self.tun = FakeTun()
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.acquires: list[tuple[object, object]] = []
        self.unknown: list[tuple[bytes, object, float]] = []
        self.expired: list[tuple[bytes, object]] = []
        self.dp = UserspaceDataPlane(
            self.tun,
            lambda view, addr: self.sent.append((bytes(view), addr)),
            now=clock,
            on_acquire=lambda trap, summary: self.acquires.append((trap, summary)),
            on_unknown_spi=lambda spi, src, now: self.unknown.append((spi, src, now)),
            on_expire=lambda spi, kind: self.expired.append((spi, kind)),
            **kwargs,
        )

    def take_sent(self) -> list[tuple[bytes, tuple[str, int]]]:
        out, self.sent = self.sent, []
        return out


def deliver(src: Gateway, dst: Gateway, src_addr: tuple[str, int] = ("192.0.2.1", 4500)) -> int:
    """Move what ``src`` sent into ``dst`` as ESP datagrams; return how many."""
    sent = src.take_sent()
    for data, _ in sent:
        dst.dp.receive_esp(data, src_addr)
    return len(sent)


def addr(a: str) -> IPAddress:
    return ip_address(a)
