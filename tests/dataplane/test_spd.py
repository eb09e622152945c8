"""Policy lookups: selectors, ports, fragments, IPv6 extension headers, order, trap queues."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

import pytest

from quickike.dataplane.spd import PacketSummary, SelectorTable, Spd, TrapQueue, summarize
from quickike.engine.dataplane import Selector, TrapSpec

from .helpers import ipv4, ipv6, net


def lookup(table: SelectorTable[str], pkt: bytes) -> str | None:
    return table.lookup(pkt, 0, len(pkt))


def test_address_ranges_v4_and_v6() -> None:
    t: SelectorTable[str] = SelectorTable()
    t.add(
        "a", [net("10.1.0.0/24"), net("fd00:1::/64")], [net("10.2.0.0/16"), net("fd00:2::/64")], "A"
    )
    assert lookup(t, ipv4("10.1.0.7", "10.2.200.1")) == "A"
    assert lookup(t, ipv4("10.1.1.7", "10.2.0.1")) is None
    assert lookup(t, ipv4("10.1.0.7", "10.3.0.1")) is None
    assert lookup(t, ipv6("fd00:1::5", "fd00:2::1")) == "A"
    assert lookup(t, ipv6("fd00:1::5", "fd00:3::1")) is None
    # mixed families never pair up
    assert lookup(t, ipv6("fd00:1::5", "::ffff:10.2.0.1")) is None


def test_non_ip_and_truncated_packets() -> None:
    t: SelectorTable[str] = SelectorTable()
    t.add("a", [net("0.0.0.0/0"), net("::/0")], [net("0.0.0.0/0"), net("::/0")], "A")
    assert lookup(t, b"") is None
    assert lookup(t, b"\x45" + bytes(10)) is None
    assert lookup(t, b"\x70" + bytes(60)) is None  # version 7
    assert lookup(t, ipv6("::1", "::2")[:30]) is None
    # a protocol-specific selector on a truncated transport header: no ports, no match
    t2: SelectorTable[str] = SelectorTable()
    t2.add(
        "u",
        [Selector(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.1"), 17, 53, 53)],
        [net("0.0.0.0/0")],
        "U",
    )
    assert lookup(t2, ipv4("10.0.0.1", "1.2.3.4", 17, sport=53, dport=1)[:22]) is None


def sel(addr: str, proto: int = 0, lo: int = 0, hi: int = 65535) -> Selector:
    s = net(addr)
    return Selector(s.start, s.end, proto, lo, hi)


def test_protocol_and_ports() -> None:
    t: SelectorTable[str] = SelectorTable()
    t.add("dns", [sel("10.1.0.0/24", 17)], [sel("10.2.0.53/32", 17, 53, 53)], "dns")
    t.add("web", [sel("10.1.0.0/24", 6, 1024, 65535)], [sel("10.2.0.0/24", 6, 443, 443)], "web")
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.53", 17, sport=4000, dport=53)) == "dns"
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.53", 17, sport=4000, dport=54)) is None
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.53", 6, sport=4000, dport=53)) is None
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.9", 6, sport=5000, dport=443)) == "web"
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.9", 6, sport=80, dport=443)) is None


def test_icmp_type_code_is_the_port() -> None:
    t: SelectorTable[str] = SelectorTable()
    echo = 8 << 8  # echo request, code 0 (RFC 7296 §3.13.1)
    t.add("ping", [sel("10.1.0.0/24", 1)], [sel("10.2.0.0/24", 1, echo, echo)], "ping")
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1", 1, sport=8, dport=0)) == "ping"
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1", 1, sport=0, dport=0)) is None  # echo reply


def test_non_first_fragments_only_match_any_port_selectors() -> None:
    t: SelectorTable[str] = SelectorTable()
    t.add("udp53", [sel("10.1.0.0/24", 17)], [sel("10.2.0.0/24", 17, 53, 53)], "narrow")
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1", 17, dport=53)) == "narrow"
    frag = ipv4("10.1.0.1", "10.2.0.1", 17, payload=b"x" * 40, dport=53, frag_offset=1480)
    assert lookup(t, frag) is None
    t.add("udp", [sel("10.1.0.0/24", 17)], [sel("10.2.0.0/24", 17)], "any-port")
    assert lookup(t, frag) == "any-port"
    opaque = SelectorTable[str]()
    opaque.add("o", [sel("10.1.0.0/24", 17)], [sel("10.2.0.0/24", 17, 65535, 0)], "opaque")
    assert lookup(opaque, frag) == "opaque"


def test_ipv6_extension_headers_are_walked() -> None:
    t: SelectorTable[str] = SelectorTable()
    t.add("u", [sel("fd00:1::/64", 17)], [sel("fd00:2::/64", 17, 53, 53)], "U")
    hop_by_hop = struct.pack("!BB6x", 60, 0)  # next: destination options
    dest_opts = struct.pack("!BB6x", 17, 0)  # next: UDP
    pkt = ipv6("fd00:1::1", "fd00:2::1", 17, dport=53, ext=hop_by_hop + dest_opts, ext_proto=0)
    assert lookup(t, pkt) == "U"
    first_frag = struct.pack("!BBHI", 17, 0, 0x0001, 7)  # offset 0, more fragments
    assert (
        lookup(t, ipv6("fd00:1::1", "fd00:2::1", 17, dport=53, ext=first_frag, ext_proto=44)) == "U"
    )
    later_frag = struct.pack("!BBHI", 17, 0, 0x0100, 7)  # offset 32 octets
    assert (
        lookup(t, ipv6("fd00:1::1", "fd00:2::1", 17, dport=53, ext=later_frag, ext_proto=44))
        is None
    )
    s = summarize(pkt)
    assert s == PacketSummary(IPv6Address("fd00:1::1"), IPv6Address("fd00:2::1"), 17, 1234, 53)


def test_most_specific_first_then_newest() -> None:
    t: SelectorTable[str] = SelectorTable()
    t.add("wide", [net("10.0.0.0/8")], [net("0.0.0.0/0")], "wide")
    t.add("narrow", [net("10.1.0.0/24")], [net("10.2.0.0/24")], "narrow")
    t.add("ports", [sel("10.1.0.0/24", 6)], [sel("10.2.0.0/24", 6, 22, 22)], "ssh")
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1", 6, dport=22)) == "ssh"
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1", 6, dport=23)) == "narrow"
    assert lookup(t, ipv4("10.9.0.1", "10.2.0.1")) == "wide"
    # a rekeyed SA with the same selectors takes over; removing it gives the traffic back
    t.add("narrow-rekeyed", [net("10.1.0.0/24")], [net("10.2.0.0/24")], "narrow2")
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1")) == "narrow2"
    t.remove("narrow-rekeyed")
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1")) == "narrow"
    assert len(t) == 3


def test_conflicting_protocols_never_match() -> None:
    t: SelectorTable[str] = SelectorTable()
    t.add("x", [sel("10.1.0.0/24", 6)], [sel("10.2.0.0/24", 17)], "x")
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1", 6)) is None
    assert lookup(t, ipv4("10.1.0.1", "10.2.0.1", 17)) is None


def test_spd_sas_by_spi_and_selectors() -> None:
    spd: Spd[str] = Spd()
    spd.add_sa(b"\0\0\0\1", [net("10.1.0.0/24")], [net("10.2.0.0/24")], "sa1")
    spd.add_sa(b"\0\0\0\2", [net("10.1.0.0/24")], [net("10.3.0.0/24")], "sa2")
    assert spd.inbound(1) == "sa1" and spd.inbound(2) == "sa2" and spd.inbound(3) is None
    pkt = ipv4("10.1.0.1", "10.3.0.1")
    assert spd.outbound(pkt, 0, len(pkt)) == "sa2"
    assert spd.remove_sa(b"\0\0\0\2") == "sa2"
    assert spd.outbound(pkt, 0, len(pkt)) is None and spd.inbound(2) is None
    assert spd.remove_sa(b"\0\0\0\2") is None
    # re-adding an SPI replaces the old entry
    spd.add_sa(b"\0\0\0\1", [net("10.1.0.0/24")], [net("10.4.0.0/24")], "sa1b")
    assert spd.outbound(ipv4("10.1.0.1", "10.2.0.1"), 0, 48) is None
    assert spd.sas() == ["sa1b"]


def test_trap_queue_drops_oldest_first() -> None:
    trap = TrapSpec("gw", "net", (net("10.1.0.0/24"),), (net("10.2.0.0/24"),))
    q = TrapQueue(trap, 3)
    for i in range(5):
        q.push(bytes([i]))
    assert list(q.packets) == [b"\x02", b"\x03", b"\x04"] and q.dropped == 2
    zero = TrapQueue(trap, 0)
    zero.push(b"x")
    assert not zero.packets and zero.dropped == 1


def test_spd_traps() -> None:
    spd: Spd[str] = Spd(trap_queue_limit=2)
    trap = TrapSpec("gw", "net", (net("10.1.0.0/24"),), (net("10.2.0.0/24"),))
    tq = spd.add_trap(trap)
    pkt = ipv4("10.1.0.1", "10.2.0.1")
    assert spd.trap_for(pkt, 0, len(pkt)) is tq
    tq.push(pkt)
    # re-installing the same trap keeps the held packets
    tq2 = spd.add_trap(trap)
    assert list(tq2.packets) == [pkt]
    assert spd.remove_trap("gw", "net") is tq2
    assert spd.trap_for(pkt, 0, len(pkt)) is None
    assert spd.remove_trap("gw", "net") is None


@pytest.mark.parametrize(
    ("pkt", "expected"),
    [
        (
            ipv4("10.0.0.1", "10.0.0.2", 6, sport=1000, dport=22),
            PacketSummary(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), 6, 1000, 22),
        ),
        (
            ipv4("10.0.0.1", "10.0.0.2", 1, sport=8, dport=0),
            PacketSummary(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), 1, 8 << 8, 8 << 8),
        ),
        (
            ipv4("10.0.0.1", "10.0.0.2", 47, payload=b"gre!"),
            PacketSummary(IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2"), 47, None, None),
        ),
        (b"\x00" * 40, None),
    ],
)
def test_summarize(pkt: bytes, expected: PacketSummary | None) -> None:
    assert summarize(pkt) == expected
