"""Two in-process daemons with the userspace data plane, hosts behind socket pairs.

The same wiring as ``quickike run`` (Daemon + UserspaceGlue + UserspaceDataPlane, real UDP on
127.0.0.1/127.0.0.2, the data plane reading the NAT-T socket), with a datagram socket pair
where the TUN device would be (``quickike.daemon.demo.SocketTun``) and an emulated host on the
other end.  Needs no root, so it runs everywhere; the namespace tests add the kernel's TUN.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quickike.control.config import load_config_text
from quickike.control.logs import event_fields
from quickike.daemon.daemon import Daemon, qcd_extensions
from quickike.daemon.demo import EmulatedHost, SocketTun, gateway_config
from quickike.dataplane.userspace import UserspaceDataPlane
from quickike.engine import events as ev

NETS = {"A": "10.201.1.0/24", "B": "10.201.2.0/24"}
HOSTS = {"A": "10.201.1.10", "B": "10.201.2.10"}
IPS = {"A": "127.0.0.1", "B": "127.0.0.2"}


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Gateway:
    name: str
    state: str
    port: int
    nat_t: int
    tun: SocketTun
    host: EmulatedHost
    config_text: str = ""
    daemon: Daemon | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    events: list[ev.Event] = field(default_factory=list)

    @property
    def dataplane(self) -> UserspaceDataPlane:
        assert self.daemon is not None and self.daemon.glue is not None
        return self.daemon.glue.dataplane

    def count(self, name: str, since: int = 0) -> int:
        return sum(1 for r in self.records[since:] if r.get("event") == name)


class LoopbackPair:
    """Gateways A and B; ``configure`` writes their configuration, ``start`` runs one."""

    def __init__(self, workdir: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.gw: dict[str, Gateway] = {}
        self._ends: list[socket.socket] = []
        for name in "AB":
            tun_end, host_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._ends += [tun_end, host_end]
            host = EmulatedHost(host_end, HOSTS[name], self.loop.time)
            self.loop.add_reader(host_end.fileno(), host.readable)
            self.gw[name] = Gateway(name, f"{workdir}/{name.lower()}", free_port(IPS[name]),
                                    free_port(IPS[name]), SocketTun(tun_end), host)  # fmt: skip

    @property
    def a(self) -> Gateway:
        return self.gw["A"]

    @property
    def b(self) -> Gateway:
        return self.gw["B"]

    def configure(self, name: str, *, initiator: bool, **kw: Any) -> str:
        me = self.gw[name]
        peer = self.gw["B" if name == "A" else "A"]
        me.config_text = gateway_config(
            me=IPS[me.name], peer=IPS[peer.name], my_net=NETS[me.name], peer_net=NETS[peer.name],
            my_id=f"gw-{me.name.lower()}.test", peer_id=f"gw-{peer.name.lower()}.test",
            state_dir=me.state, initiator=initiator, port=me.port, port_nat_t=me.nat_t,
            peer_port=peer.nat_t, **kw,
        )  # fmt: skip
        return me.config_text

    async def start(self, name: str) -> Gateway:
        gw = self.gw[name]
        cfg, warnings = load_config_text(gw.config_text, f"<gateway {name}>")
        assert not warnings, warnings
        d = Daemon(cfg, trace=True, host=IPS[name], ipv6=False, tun=gw.tun,
                   extensions=qcd_extensions(cfg, gw.state))  # fmt: skip

        def record(e: ev.Event) -> None:
            gw.events.append(e)
            gw.records.append(event_fields(e))

        d.observers = [record]
        await d.start()
        gw.daemon = d
        return gw

    def crash(self, name: str) -> None:
        """Gone without a Delete: sockets closed, engine dropped; the host stays."""
        gw = self.gw[name]
        assert gw.daemon is not None
        gw.daemon.close()
        gw.daemon = None

    async def until(self, cond: Callable[[], bool], timeout: float, what: str) -> float:
        end = self.loop.time() + timeout
        while not cond():
            if self.loop.time() > end:
                raise AssertionError(f"{what}: not within {timeout} s\n{self.describe()}")
            await asyncio.sleep(0.002)
        return self.loop.time()

    async def ping(self, src: str, dst: str, count: int, interval: float = 0.01) -> None:
        host = self.gw[src].host
        start = max(host.probes.sent, default=0)
        for i in range(count):
            host.ping(HOSTS[dst], start + 1 + i)
            await asyncio.sleep(interval)

    def describe(self) -> str:
        out = []
        for gw in self.gw.values():
            out.append(f"--- gateway {gw.name}")
            out += [str(r)[:300] for r in gw.records[-40:]]
        return "\n".join(out)

    def close(self) -> None:
        for gw in self.gw.values():
            if gw.daemon is not None:
                gw.daemon.close()
                gw.daemon = None
        for s in self._ends:
            if s.fileno() >= 0:
                self.loop.remove_reader(s.fileno())
                s.close()
