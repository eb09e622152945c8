"""Traffic sources: hosts behind a gateway that keep sending into a tunnel.

A :class:`Flow` is one direction of one tunnel's traffic, from a host in the
sending gateway's protected network to a host behind the peer.  Its source
keeps ticking whether or not the gateway is up (the hosts do not know it
crashed); each packet goes through the gateway's simulated data plane,
which finds the CHILD SA by its selectors exactly like an SPD would, holds
it at a trap, or drops it when there is no policy.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .packets import ESP_OVERHEAD, IP_OVERHEAD

if TYPE_CHECKING:
    from .dataplane import SimChild
    from .node import Node
    from .scheduler import Scheduler
    from .tunnel import Tunnel


class Pattern(enum.Enum):
    STEADY = "steady"  # one packet every ``interval``
    BURSTY = "bursty"  # bursts of packets separated by exponential idle times



@dataclass(frozen=True, slots=True)
class TrafficSpec:
    pattern: Pattern = Pattern.STEADY
    interval: float = 1.0
    size: int = 200
    burst_packets: int = 10
    burst_spacing: float = 0.01
    idle_mean: float = 10.0
    #: virtual time the hosts start and stop sending (None: until the run ends)
    start: float = 0.0
    stop: float | None = None

    def __post_init__(self) -> None:
        if self.interval <= 0 or self.burst_spacing <= 0 or self.idle_mean <= 0:
            raise ValueError("traffic intervals must be positive")
        if self.size <= 0 or self.burst_packets <= 0:
            raise ValueError("traffic sizes and counts must be positive")


class Flow:
    """One direction of a tunnel's traffic, sent by ``node``'s data plane."""

    __slots__ = (
        "bare_since",
        "burst_left",
        "children",
        "dst",
        "dst_int",
        "forward",
        "id",
        "interval",
        "node",
        "paused_at",
        "rng",
        "sent",
        "size",
        "spec",
        "src",
        "src_int",
        "steady",
        "stop",
        "tunnel",
        "wire_size",
    )

    def __init__(self, fid: int, node: Node, tunnel: Tunnel, src: str, dst: str,
                 spec: TrafficSpec, rng: random.Random, *, forward: bool) -> None:
        self.id = fid
        self.node = node
        self.tunnel = tunnel
        self.src = src
        self.dst = dst
        self.src_int = int(ipaddress.ip_address(src))
        self.dst_int = int(ipaddress.ip_address(dst))
        self.spec = spec
        self.rng = rng
        self.size = spec.size
        #: outer packet size on the wire without UDP encapsulation
        self.wire_size = spec.size + ESP_OVERHEAD + IP_OVERHEAD
        self.steady = spec.pattern is Pattern.STEADY
        self.interval = spec.interval
        self.stop = spec.stop
        self.forward = forward
        #: CHILD SAs whose selectors cover this flow, newest last (volatile: reset on a crash)
        self.children: list[SimChild] = []
        self.sent = 0
        self.burst_left = 0
        self.paused_at: float | None = None
        #: when its last CHILD SA went away while the gateway kept running (None: has one)
        self.bare_since: float | None = None

    def start(self, sched: Scheduler) -> None:
        spec = self.spec
        phase = self.rng.random() * (spec.interval if spec.pattern is Pattern.STEADY
                                     else spec.idle_mean)
        sched.at(spec.start + phase, self._tick, sched)

    def _tick(self, sched: Scheduler) -> None:
        now = sched.now
        if self.stop is not None and now > self.stop:
            return
        dp = self.node.dataplane
        if dp is None:
            # the gateway is down: its hosts' packets go nowhere until it boots (``resume``)
            self.paused_at = now
            return
        self.sent += 1
        dp.send(self, now)
        if self.steady:
            sched.at(now + self.interval, self._tick, sched)
            return
        spec = self.spec
        if self.burst_left <= 0:
            self.burst_left = spec.burst_packets
        self.burst_left -= 1
        if self.burst_left > 0:
            sched.at(now + spec.burst_spacing, self._tick, sched)
        else:
            sched.at(now + self.rng.expovariate(1.0 / spec.idle_mean), self._tick, sched)

    def resume(self, sched: Scheduler) -> None:
        """The gateway booted: carry on where the sending pattern would be now."""
        paused = self.paused_at
        if paused is None:
            return
        self.paused_at = None
        now = sched.now
        if self.steady:
            steps = max(1, -int(-(now - paused) // self.interval))  # ceil
            sched.at(paused + steps * self.interval, self._tick, sched)
        else:
            self.burst_left = 0
            sched.at(now + self.rng.expovariate(1.0 / self.spec.idle_mean), self._tick, sched)

    def __repr__(self) -> str:
        return f"<Flow {self.id} {self.node.name} {self.src}>{self.dst}>"
