"""The virtual network's impairments behave as configured."""

from __future__ import annotations

import itertools
import random

import pytest

from quickike.sim.network import LinkProfile, Nat, Network
from quickike.sim.packets import Packet
from quickike.sim.scheduler import Scheduler
from quickike.sim.trace import Trace, TraceMode


class Sink:
    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.boot_due: float | None = None
        self.got: list[tuple[float, Packet]] = []
        self.sched: Scheduler | None = None

    def receive(self, packet: Packet) -> None:
        assert self.sched is not None
        self.got.append((self.sched.now, packet))


def net(profile: LinkProfile, seed: int = 1) -> tuple[Scheduler, Network, Sink]:
    sched = Scheduler()
    n = Network(sched, random.Random(seed), Trace(TraceMode.OFF), profile)
    sink = Sink("b")
    sink.sched = sched
    n.attach("192.0.2.2", sink)
    return sched, n, sink


def burst(sched: Scheduler, n: Network, count: int, spacing: float = 0.001) -> None:
    for i in range(count):
        sched.at(i * spacing, n.send, Packet("192.0.2.1", 500, "192.0.2.2", 500,
                                             data=i.to_bytes(4, "big") * 8, origin="a"))


def seqs(sink: Sink) -> list[int]:
    return [int.from_bytes(p.data[:4], "big") for _, p in sink.got]


def test_latency_and_fifo_under_jitter() -> None:
    sched, n, sink = net(LinkProfile(latency=0.02, jitter=0.01))
    burst(sched, n, 500)
    sched.run(10.0)
    assert seqs(sink) == list(range(500))  # jitter alone never reorders a path
    delays = [t - i * 0.001 for (t, _), i in zip(sink.got, range(500), strict=True)]
    assert min(delays) >= 0.02 - 1e-9
    assert max(delays) < 0.02 + 0.01 + 0.002


def test_loss_rate() -> None:
    sched, n, sink = net(LinkProfile(loss=0.3))
    burst(sched, n, 10000)
    sched.run(100.0)
    delivered = len(sink.got) / 10000
    assert 0.67 < delivered < 0.73
    assert n.stats["drop:loss"] == 10000 - len(sink.got)


def test_reordering() -> None:
    sched, n, sink = net(LinkProfile(reorder=0.2, reorder_delay=0.005))
    burst(sched, n, 2000)
    sched.run(100.0)
    got = seqs(sink)
    assert sorted(got) == list(range(2000))
    overtaken = sum(1 for a, b in itertools.pairwise(got) if a > b)
    assert overtaken > 100
    assert 300 < n.stats["reordered"] < 500


def test_duplication() -> None:
    sched, n, sink = net(LinkProfile(duplicate=0.1))
    burst(sched, n, 5000)
    sched.run(100.0)
    extra = len(sink.got) - 5000
    assert 400 < extra < 600 and extra == n.stats["duplicated"]
    assert set(seqs(sink)) == set(range(5000))


def test_partition_cuts_then_heals() -> None:
    sched, n, sink = net(LinkProfile())
    part = n.partition(["192.0.2.1"])
    burst(sched, n, 10)
    sched.run(1.0)
    assert not sink.got and n.stats["drop:partition"] == 10
    part.active = False
    sched.at(2.0, n.send, Packet("192.0.2.1", 500, "192.0.2.2", 500, data=b"x" * 40, origin="a"))
    sched.run(3.0)
    assert len(sink.got) == 1


def test_partition_between_two_groups_only() -> None:
    sched, n, sink = net(LinkProfile())
    n.partition(["198.51.100.1"], ["192.0.2.2"])
    sched.at(0.0, n.send, Packet("198.51.100.1", 500, "192.0.2.2", 500, data=b"x" * 40))
    sched.at(0.0, n.send, Packet("192.0.2.1", 500, "192.0.2.2", 500, data=b"y" * 40))
    sched.run(1.0)
    assert [p.data[:1] for _, p in sink.got] == [b"y"]


def test_nat_maps_out_and_back_and_drops_unsolicited() -> None:
    sched, n, sink = net(LinkProfile())
    inside = Sink("inside")
    inside.sched = sched
    n.attach("100.64.0.2", inside)
    n.add_nat(Nat("198.18.0.1", frozenset({"100.64.0.2"})))
    sched.at(0.0, n.send, Packet("100.64.0.2", 500, "192.0.2.2", 500, data=b"q" * 40))
    sched.run(1.0)
    (_, out), = sink.got
    assert (out.src_ip, out.src_port) == ("198.18.0.1", 40000)
    sched.at(1.0, n.send, Packet("192.0.2.2", 500, out.src_ip, out.src_port, data=b"r" * 40))
    sched.at(1.0, n.send, Packet("192.0.2.2", 500, "198.18.0.1", 40001, data=b"s" * 40))
    sched.at(1.0, n.send, Packet("192.0.2.2", 500, "100.64.0.2", 500, data=b"t" * 40))
    sched.run(2.0)
    assert [(p.dst_ip, p.dst_port, p.data[:1]) for _, p in inside.got] == [
        ("100.64.0.2", 500, b"r")]
    assert n.stats["drop:nat-no-mapping"] == 1 and n.stats["drop:unroutable-private"] == 1


def test_probabilities_are_checked() -> None:
    with pytest.raises(ValueError):
        LinkProfile(loss=1.5)
