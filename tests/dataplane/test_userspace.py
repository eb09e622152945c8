"""UserspaceDataPlane driven in memory: fake TUN devices, a driven clock, recorded callbacks."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from quickike.dataplane.errors import UnsupportedSa
from quickike.dataplane.esp import encryptor_for
from quickike.dataplane.spd import PacketSummary
from quickike.dataplane.userspace import UserspaceDataPlane
from quickike.engine.dataplane import DataPlane, Expiry, Mode, TrapSpec
from quickike.wire.enums import EncrId, IntegId

from .helpers import Clock, Gateway, deliver, ipv4, ipv6, net, spec_pair

A_ADDR = ("192.0.2.1", 4500)
B_ADDR = ("192.0.2.2", 4500)


def gateways(**kw: object) -> tuple[Clock, Gateway, Gateway]:
    clock = Clock()
    return clock, Gateway(clock, **kw), Gateway(clock, **kw)


def test_is_a_dataplane() -> None:
    _, a, _ = gateways()
    dp: DataPlane = a.dp  # the protocol is structural; mypy checks this line
    assert isinstance(dp, UserspaceDataPlane)


@pytest.mark.parametrize(
    ("eid", "bits", "iid", "ek", "ik", "esn"),
    [
        (EncrId.AES_GCM_16, 128, 0, 20, 0, False),
        (EncrId.AES_GCM_16, 256, 0, 36, 0, True),
        (EncrId.CHACHA20_POLY1305, 256, 0, 36, 0, True),
        (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, 16, 32, False),
    ],
)
def test_both_directions(eid: int, bits: int, iid: int, ek: int, ik: int, esn: bool) -> None:
    clock, a, b = gateways()
    sa, sb = spec_pair(
        eid,
        bits,
        iid,
        ek,
        ik,
        esn=esn,
        a_ts=(net("10.1.0.0/24"), net("fd00:1::/64")),
        b_ts=(net("10.2.0.0/24"), net("fd00:2::/64")),
    )
    a.dp.install_child(sa)
    b.dp.install_child(sb)
    out4 = ipv4("10.1.0.5", "10.2.0.9", payload=b"ping" * 50)
    out6 = ipv6("fd00:1::5", "fd00:2::9", payload=b"six" * 10)
    a.tun.inbox.extend([out4, out6])
    clock.t = 1001.0
    assert a.dp.tun_readable() == 2
    assert [addr for _, addr in a.sent] == [B_ADDR, B_ADDR]
    assert all(d[:4] == sa.spi_out for d, _ in a.sent)
    assert deliver(a, b, A_ADDR) == 2
    assert b.tun.written == [out4, out6]
    back = ipv4("10.2.0.9", "10.1.0.5", 6, sport=80, dport=4000)
    b.tun.inbox.append(back)
    clock.t = 1002.0
    b.dp.tun_readable()
    deliver(b, a, B_ADDR)
    assert a.tun.written == [back]
    ca = a.dp.counters(sa.spi_in)
    assert ca is not None
    assert (ca.packets_out, ca.bytes_out, ca.last_out) == (2, len(out4) + len(out6), 1001.0)
    assert (ca.packets_in, ca.bytes_in, ca.last_in) == (1, len(back), 1002.0)
    assert a.dp.stats.esp_out == 2 and b.dp.stats.esp_in == 2 and a.dp.stats.esp_in == 1
    assert b.dp.stats.tun_out == 2 and a.dp.stats.tun_in == 2


def test_counters_are_snapshots_and_unknown_spi_gives_none() -> None:
    _, a, _ = gateways()
    sa, _ = spec_pair()
    a.dp.install_child(sa)
    c1 = a.dp.counters(sa.spi_in)
    a.tun.inbox.append(ipv4("10.1.0.1", "10.2.0.1"))
    a.dp.tun_readable()
    c2 = a.dp.counters(sa.spi_in)
    assert c1 is not None and c2 is not None
    assert c1.packets_out == 0 and c2.packets_out == 1
    assert a.dp.counters(b"\x99\x99\x99\x99") is None
    assert a.dp.counters(b"short") is None


def test_packets_without_policy_are_dropped() -> None:
    _, a, _ = gateways()
    sa, _ = spec_pair()
    a.dp.install_child(sa)
    a.tun.inbox.extend([ipv4("10.9.0.1", "10.2.0.1"), b"\x00" * 30, b""])
    assert a.dp.tun_readable() == 3
    assert a.sent == [] and a.dp.stats.no_policy == 3


def test_batch_limit() -> None:
    _, a, _ = gateways(batch=4)
    sa, _ = spec_pair()
    a.dp.install_child(sa)
    a.tun.inbox.extend(ipv4("10.1.0.1", "10.2.0.1") for _ in range(10))
    assert [a.dp.tun_readable() for _ in range(4)] == [4, 4, 2, 0]
    assert len(a.sent) == 10


def test_trap_acquire_queue_and_release() -> None:
    clock, a, b = gateways(trap_queue_limit=3, acquire_interval=5.0)
    trap = TrapSpec("gw", "net", (net("10.1.0.0/24"),), (net("10.2.0.0/24"),))
    a.dp.install_trap(trap)
    pkts = [
        ipv4("10.1.0.1", "10.2.0.1", 17, payload=bytes([i]), sport=1000 + i, dport=53)
        for i in range(5)
    ]
    a.tun.inbox.append(pkts[0])
    a.dp.tun_readable()
    assert a.acquires == [
        (trap, PacketSummary(IPv4Address("10.1.0.1"), IPv4Address("10.2.0.1"), 17, 1000, 53))
    ]
    clock.t += 4.9
    a.tun.inbox.extend(pkts[1:4])
    a.dp.tun_readable()
    assert len(a.acquires) == 1  # still waiting for the engine
    clock.t += 0.2
    a.tun.inbox.append(pkts[4])
    a.dp.tun_readable()
    assert len(a.acquires) == 2  # asked again after the interval
    tq = a.dp.trap_queue("gw", "net")
    assert tq is not None and tq.dropped == 2 and len(tq.packets) == 3
    assert a.dp.stats.trapped == 5 and a.sent == []
    sa, sb = spec_pair()
    b.dp.install_child(sb)
    a.dp.install_child(sa)  # releases the held packets, oldest surviving first
    assert a.dp.stats.released == 3 and not tq.packets
    deliver(a, b, A_ADDR)
    assert b.tun.written == pkts[2:]
    # the trap stays; with the SA installed, traffic no longer hits it
    a.tun.inbox.append(pkts[0])
    a.dp.tun_readable()
    assert len(a.acquires) == 2 and len(a.sent) == 1


def test_release_keeps_packets_the_new_sa_does_not_cover() -> None:
    _, a, _ = gateways()
    a.dp.install_trap(TrapSpec("gw", "wide", (net("10.1.0.0/24"),), (net("10.0.0.0/8"),)))
    inside, outside = ipv4("10.1.0.1", "10.2.0.1"), ipv4("10.1.0.1", "10.3.0.1")
    a.tun.inbox.extend([inside, outside])
    a.dp.tun_readable()
    sa, _ = spec_pair()  # covers 10.2.0.0/24 only
    a.dp.install_child(sa)
    tq = a.dp.trap_queue("gw", "wide")
    assert tq is not None and list(tq.packets) == [outside] and len(a.sent) == 1
    a.dp.remove_trap("gw", "wide")
    assert a.dp.trap_queue("gw", "wide") is None


def test_unknown_spi_is_reported_rate_limited() -> None:
    clock, a, b = gateways(unknown_spi_interval=1.0)
    sa, sb = spec_pair()
    b.dp.install_child(sb)
    b.tun.inbox.append(ipv4("10.2.0.1", "10.1.0.1"))
    b.dp.tun_readable()
    esp, _ = b.sent[0]
    for _ in range(3):
        a.dp.receive_esp(esp, ("192.0.2.1", 4501))
    assert a.unknown == [(sa.spi_in, (IPv4Address("192.0.2.1"), 4501), 1000.0)]
    assert a.dp.stats.unknown_spi == 3
    clock.t += 1.0
    a.dp.receive_esp(esp, ("192.0.2.1", 4501))
    assert len(a.unknown) == 2
    # once the SA exists the same packet is accepted
    a.dp.install_child(sa)
    a.dp.receive_esp(esp, ("192.0.2.1", 4501))
    assert len(a.tun.written) == 1 and len(a.unknown) == 2


def test_unknown_spi_flood_is_capped_overall() -> None:
    clock, a, _ = gateways(unknown_spi_interval=1.0, unknown_spi_burst=3)
    for i in range(10):
        a.dp.receive_esp((0x1000 + i).to_bytes(4, "big") + bytes(40), ("192.0.2.9", 4500))
    assert [u[0] for u in a.unknown] == [(0x1000 + i).to_bytes(4, "big") for i in range(3)]
    assert a.dp.stats.unknown_spi == 10 and a.dp.stats.unknown_spi_suppressed == 7
    clock.t += 1.0
    a.dp.receive_esp((0x2000).to_bytes(4, "big") + bytes(40), ("192.0.2.9", 4500))
    assert len(a.unknown) == 4


def test_inbound_packets_must_fit_the_sa_selectors() -> None:
    _, a, _ = gateways()
    sa, sb = spec_pair()
    a.dp.install_child(sa)
    rogue = encryptor_for(sb)  # the peer's own SA, used for traffic it was not given
    a.dp.receive_esp(rogue.seal(ipv4("10.2.0.1", "10.1.0.1"), 4, 0.0), B_ADDR)
    a.dp.receive_esp(rogue.seal(ipv4("10.66.0.1", "10.1.0.1"), 4, 0.0), B_ADDR)
    a.dp.receive_esp(rogue.seal(ipv4("10.2.0.1", "10.1.9.1"), 4, 0.0), B_ADDR)
    assert len(a.tun.written) == 1 and a.dp.stats.policy_mismatch == 2


def test_next_header_handling() -> None:
    _, a, _ = gateways()
    sa, sb = spec_pair()
    a.dp.install_child(sa)
    peer = encryptor_for(sb)
    a.dp.receive_esp(peer.seal(b"\x00" * 40, 59, 0.0), B_ADDR)  # TFC dummy
    a.dp.receive_esp(peer.seal(ipv4("10.2.0.1", "10.1.0.1"), 41, 0.0), B_ADDR)  # says IPv6
    a.dp.receive_esp(peer.seal(ipv4("10.2.0.1", "10.1.0.1"), 6, 0.0), B_ADDR)  # transport
    a.dp.receive_esp(peer.seal(b"\x45" + bytes(5), 4, 0.0), B_ADDR)  # too short for IPv4
    s = a.dp.stats
    assert (s.dummy, s.malformed, s.bad_next_header, s.tun_out) == (1, 2, 1, 0)
    c = a.dp.counters(sa.spi_in)
    assert c is not None and c.packets_in == 4  # all authenticated: signs of life


def test_replays_and_forgeries_are_counted() -> None:
    _, a, b = gateways()
    sa, sb = spec_pair()
    a.dp.install_child(sa)
    b.dp.install_child(sb)
    b.tun.inbox.append(ipv4("10.2.0.1", "10.1.0.1"))
    b.dp.tun_readable()
    esp, _ = b.sent[0]
    a.dp.receive_esp(esp, B_ADDR)
    a.dp.receive_esp(esp, B_ADDR)
    bad = bytearray(esp)
    bad[-1] ^= 1
    bad[7] += 1  # a new sequence number, so the replay check passes
    a.dp.receive_esp(bytes(bad), B_ADDR)
    a.dp.receive_esp(esp[:30], B_ADDR)
    a.dp.receive_esp(b"\x01\x02", B_ADDR)
    s = a.dp.stats
    assert (s.tun_out, s.replayed, s.auth_failed, s.malformed, s.invalid_in) == (1, 1, 1, 1, 1)


def test_lifetimes_report_soft_and_hard_once_per_child() -> None:
    _, a, b = gateways()
    sa, sb = spec_pair(soft_packets=2, hard_packets=3)
    a.dp.install_child(sa)
    b.dp.install_child(sb)
    for _ in range(4):
        a.tun.inbox.append(ipv4("10.1.0.1", "10.2.0.1"))
        b.tun.inbox.append(ipv4("10.2.0.1", "10.1.0.1"))
        a.dp.tun_readable()
        b.dp.tun_readable()
        deliver(b, a, B_ADDR)  # A's inbound SA counts too
    assert a.expired == [(sa.spi_in, Expiry.SOFT), (sa.spi_in, Expiry.HARD)]
    assert len(a.sent) == 3 and a.dp.stats.expired_drops >= 1


def test_callbacks_may_change_tables() -> None:
    """The engine answers a HARD expiry by removing the child, from inside the callback."""
    clock = Clock()
    a = Gateway(clock)
    sa, _ = spec_pair(hard_packets=2)

    def on_expire(spi: bytes, kind: Expiry) -> None:
        a.expired.append((spi, kind))
        a.dp.remove_child(spi)

    a.dp._on_expire = on_expire
    a.dp.install_child(sa)
    a.tun.inbox.extend(ipv4("10.1.0.1", "10.2.0.1") for _ in range(5))
    a.dp.tun_readable()
    assert a.expired == [(sa.spi_in, Expiry.HARD)]
    assert a.dp.children() == [] and len(a.sent) == 2 and a.dp.stats.no_policy == 0


def test_rekey_moves_outbound_to_the_new_sa() -> None:
    _, a, b = gateways()
    old_a, old_b = spec_pair()
    new_a, new_b = spec_pair(spi_a=b"\xaa\x00\x00\x02", spi_b=b"\xbb\x00\x00\x02")
    for dp, spec in ((a.dp, old_a), (b.dp, old_b), (a.dp, new_a), (b.dp, new_b)):
        dp.install_child(spec)
    a.tun.inbox.append(ipv4("10.1.0.1", "10.2.0.1"))
    a.dp.tun_readable()
    assert a.sent[0][0][:4] == new_a.spi_out
    # late packets on the old inbound SA are still accepted until it is removed
    late = encryptor_for(old_b).seal(ipv4("10.2.0.1", "10.1.0.1"), 4, 0.0)
    a.dp.receive_esp(late, B_ADDR)
    assert len(a.tun.written) == 1
    a.dp.remove_child(old_a.spi_in)
    a.dp.receive_esp(encryptor_for(old_b).seal(ipv4("10.2.0.1", "10.1.0.1"), 4, 0.0), B_ADDR)
    assert a.dp.stats.unknown_spi == 1


def test_update_addresses_and_refusals() -> None:
    _, a, _ = gateways()
    sa, _ = spec_pair()
    a.dp.install_child(sa)
    a.dp.update_addresses(sa.spi_in, sa.local_addr, (IPv4Address("198.51.100.7"), 31337), True)
    a.tun.inbox.append(ipv4("10.1.0.1", "10.2.0.1"))
    a.dp.tun_readable()
    assert a.sent[0][1] == ("198.51.100.7", 31337)
    assert a.dp.children()[0].remote_addr == (IPv4Address("198.51.100.7"), 31337)
    a.dp.update_addresses(
        b"\x01\x01\x01\x01", sa.local_addr, sa.remote_addr, True
    )  # unknown: ignored
    with pytest.raises(UnsupportedSa):
        a.dp.update_addresses(sa.spi_in, sa.local_addr, sa.remote_addr, False)
    with pytest.raises(UnsupportedSa):
        a.dp.install_child(replace(sa, encap=False))
    with pytest.raises(UnsupportedSa):
        a.dp.install_child(replace(sa, mode=Mode.TRANSPORT))
    with pytest.raises(UnsupportedSa):
        a.dp.install_child(replace(sa, encr_id=EncrId.AES_CCM_16))


def test_routes_are_reference_counted() -> None:
    _, a, _ = gateways(install_routes=True)
    trap = TrapSpec("gw", "net", (net("10.1.0.0/24"),), (net("10.2.0.0/24"), net("10.3.0.0/24")))
    a.dp.install_trap(trap)
    sa, _ = spec_pair()
    a.dp.install_child(sa)
    a.dp.install_child(sa)  # re-install: no second route
    a.dp.remove_trap("gw", "net")
    assert a.tun.routes == [("add", "10.2.0.0/24"), ("add", "10.3.0.0/24"), ("del", "10.3.0.0/24")]
    a.dp.remove_child(sa.spi_in)
    assert a.tun.routes[-1] == ("del", "10.2.0.0/24")


def test_udp_socket_path_on_loopback() -> None:
    """udp_readable reads port-4500 style datagrams itself: ESP, IKE (marker), keepalives."""
    clock = Clock()
    sock_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for sock in (sock_a, sock_b):
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
        pa, pb = sock_a.getsockname()[1], sock_b.getsockname()[1]
        ike: list[tuple[bytes, object]] = []
        a = Gateway(clock)
        b = Gateway(clock, sock=sock_b, on_ike_datagram=lambda d, src: ike.append((d, src)))
        a.dp._sendto = sock_a.sendto  # A sends for real
        sa, sb = spec_pair(
            a_addr=(IPv4Address("127.0.0.1"), pa), b_addr=(IPv4Address("127.0.0.1"), pb)
        )
        a.dp.install_child(sa)
        b.dp.install_child(sb)
        pkts = [ipv4("10.1.0.1", "10.2.0.1", payload=bytes([i]) * 100) for i in range(5)]
        a.tun.inbox.extend(pkts)
        a.dp.tun_readable()
        sock_a.sendto(b"\0\0\0\0" + b"I" * 40, ("127.0.0.1", pb))
        sock_a.sendto(b"\xff", ("127.0.0.1", pb))
        sock_a.sendto(b"\x01\x02", ("127.0.0.1", pb))
        got = 0
        deadline = time.monotonic() + 10
        # loopback delivery is usually done when sendto returns, but a busy kernel may hand it
        # to ksoftirqd: wait for the socket to be readable rather than spin a fixed count
        while got < 8 and time.monotonic() < deadline:
            select.select([sock_b], [], [], 0.1)
            got += b.dp.udp_readable()
        assert b.tun.written == pkts
        assert ike == [(b"\0\0\0\0" + b"I" * 40, (IPv4Address("127.0.0.1"), pa))]
        s = b.dp.stats
        assert (s.udp_in, s.ike_in, s.keepalives_in, s.invalid_in, s.esp_in) == (8, 1, 1, 1, 5)
    finally:
        sock_a.close()
        sock_b.close()


def test_udp_readable_needs_the_socket() -> None:
    _, a, _ = gateways()
    with pytest.raises(RuntimeError):
        a.dp.udp_readable()


def test_send_packet_entry_point() -> None:
    _, a, b = gateways()
    sa, sb = spec_pair()
    a.dp.install_child(sa)
    b.dp.install_child(sb)
    pkt = ipv4("10.1.0.1", "10.2.0.1")
    a.dp.send_packet(pkt)
    deliver(a, b)
    assert b.tun.written == [pkt]


def test_send_errors_are_counted_not_raised() -> None:
    clock = Clock()
    a = Gateway(clock)
    sa, _ = spec_pair()
    a.dp.install_child(sa)
    errors: list[BaseException] = [BlockingIOError(), OSError(101, "unreachable")]

    def failing(view: memoryview, addr: tuple[str, int]) -> None:
        raise errors.pop(0)

    a.dp._sendto = failing
    a.tun.inbox.extend([ipv4("10.1.0.1", "10.2.0.1")] * 2)
    a.dp.tun_readable()
    assert (a.dp.stats.send_dropped, a.dp.stats.send_errors) == (1, 1)
