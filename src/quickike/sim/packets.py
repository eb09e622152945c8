"""What travels on the virtual wire.

IKE datagrams are the real bytes the engine produced (non-ESP marker
included where the daemon would add it).  ESP is symbolic: the simulator
never encrypts data traffic, it carries the SPI the receiver looks up, the
flow the packet belongs to and its size, because the engine only ever sees
the data plane's counters and its "unknown SPI" reports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .traffic import Flow

#: ESP header (8) + IV (8) + pad/next header (2, rounded) + ICV (16), RFC 4106
ESP_OVERHEAD = 36
#: outer IPv4 header for tunnel mode
IP_OVERHEAD = 20
UDP_OVERHEAD = 8


class EspFrame:
    """The parts of an ESP packet the receiving data plane looks at."""

    __slots__ = ("flow", "sent_at", "seq", "spi")

    def __init__(self, spi: bytes, seq: int, flow: Flow, sent_at: float) -> None:
        self.spi = spi
        self.seq = seq
        self.flow = flow
        self.sent_at = sent_at


class Packet:
    """One datagram between two addresses.

    ``udp`` is False for raw ESP (IP protocol 50, no ports: ports are 0).
    ``origin`` names the node (or attacker) that put it on the wire, for
    accounting; addresses may be rewritten by NAT on the way.
    """

    __slots__ = ("data", "dst_ip", "dst_port", "esp", "origin", "path_src", "size", "src_ip",
                 "src_port", "udp")

    def __init__(
        self,
        src_ip: str,
        src_port: int,
        dst_ip: str,
        dst_port: int,
        data: bytes = b"",
        esp: EspFrame | None = None,
        udp: bool = True,
        size: int = 0,
        origin: str = "",
        path_src: str | None = None,
    ) -> None:
        self.src_ip = src_ip
        self.src_port = src_port
        self.dst_ip = dst_ip
        self.dst_port = dst_port
        self.data = data
        self.esp = esp
        self.udp = udp
        self.size = size or len(data)
        self.origin = origin
        #: where the packet really enters the network when ``src_ip`` is spoofed
        self.path_src = path_src

    @property
    def src(self) -> tuple[str, int]:
        return (self.src_ip, self.src_port)

    @property
    def dst(self) -> tuple[str, int]:
        return (self.dst_ip, self.dst_port)

    def rewritten(
        self, *, src: tuple[str, int] | None = None, dst: tuple[str, int] | None = None
    ) -> Packet:
        s = src or self.src
        d = dst or self.dst
        return Packet(s[0], s[1], d[0], d[1], self.data, self.esp, self.udp, self.size,
                      self.origin, self.path_src)

    def __repr__(self) -> str:
        kind = "esp" if self.esp is not None else ("ka" if self.data == b"\xff" else "ike")
        return f"<{kind} {self.src_ip}:{self.src_port}>{self.dst_ip}:{self.dst_port} {self.size}B>"
