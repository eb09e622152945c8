"""TUN devices: where the userspace data plane meets the host's IP stack.

Packets routed to the TUN device come out of :meth:`TunDevice.readinto` as
bare IP packets (IFF_NO_PI: no 4-octet packet-info prefix), and IP packets
written to it are delivered as if received on that interface.  The fd is
non-blocking so a driver can put it in an asyncio loop with ``add_reader``
and drain it until ``BlockingIOError``.

Interface configuration (MTU, addresses, up, routes) uses ``ip`` from
iproute2: it is there wherever TUN is, it does IPv4 and IPv6 alike, and it
runs only at setup and SA install time, never per packet.
"""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
from collections.abc import Sequence
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from typing import Protocol

from quickike.dataplane.errors import DataPlaneError

__all__ = [
    "DEFAULT_MTU",
    "PacketIO",
    "TunDevice",
    "TunError",
]

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_IFNAMSIZ = 16
#: Leaves room for IPv4 + UDP + the largest ESP overhead inside a 1500-octet path
#: (the value strongSwan's kernel-libipsec uses as well).
DEFAULT_MTU = 1400

IPNetwork = IPv4Network | IPv6Network
IPInterface = IPv4Interface | IPv6Interface
Buffer = bytes | bytearray | memoryview


class TunError(DataPlaneError):
    """Opening or configuring the TUN device failed."""


class PacketIO(Protocol):
    """What the data plane needs from its TUN side (a fake in unit tests)."""

    def fileno(self) -> int: ...

    def readinto(self, buf: memoryview) -> int:
        """One packet into ``buf``; BlockingIOError when there is none."""
        ...

    def write(self, packet: Buffer) -> int: ...

    def add_route(self, network: IPNetwork) -> None: ...

    def del_route(self, network: IPNetwork) -> None: ...


class TunDevice:
    """An open, non-blocking TUN interface (Linux)."""

    __slots__ = ("_fd", "_iov", "mtu", "name", "netns")

    def __init__(self, fd: int, name: str, mtu: int, netns: str | None) -> None:
        self._fd = fd
        self.name = name
        self.mtu = mtu
        #: namespace the ``ip`` commands run in (None: the caller's own)
        self.netns = netns

    @classmethod
    def open(
        cls,
        name: str = "qike%d",
        *,
        mtu: int = DEFAULT_MTU,
        addresses: Sequence[IPInterface] = (),
        up: bool = True,
        netns: str | None = None,
    ) -> TunDevice:
        """Create (or attach to) TUN interface ``name``; ``%d`` lets the kernel number it.

        The device lives in the network namespace of the calling thread at the
        time of the call; ``netns`` only tells the ``ip`` configuration
        commands where to find it.
        """
        if not name or len(name.encode()) >= _IFNAMSIZ:
            raise TunError(f"bad interface name {name!r}")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise TunError(f"cannot open /dev/net/tun: {e}") from e
        try:
            ifr = struct.pack("16sH22x", name.encode(), _IFF_TUN | _IFF_NO_PI)
            res = fcntl.ioctl(fd, _TUNSETIFF, ifr)
        except OSError as e:
            os.close(fd)
            raise TunError(f"TUNSETIFF {name}: {e}") from e
        real = res[:_IFNAMSIZ].rstrip(b"\0").decode()
        dev = cls(fd, real, mtu, netns)
        try:
            dev._ip("link", "set", "dev", real, "mtu", str(mtu))
            for a in addresses:
                extra = ["nodad"] if a.version == 6 else []
                dev._ip(f"-{a.version}", "addr", "replace", str(a), "dev", real, *extra)
            if up:
                dev._ip("link", "set", "dev", real, "up")
        except TunError:
            dev.close()
            raise
        return dev

    def _ip(self, *args: str) -> None:
        cmd = ["ip"] + (["-n", self.netns] if self.netns else []) + list(args)
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise TunError(f"{' '.join(cmd)}: {e}") from e
        if res.returncode != 0:
            raise TunError(f"{' '.join(cmd)}: {res.stderr.strip()}")

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buf: memoryview) -> int:
        return os.readv(self._fd, (buf,))

    def write(self, packet: Buffer) -> int:
        return os.write(self._fd, packet)

    def add_route(self, network: IPNetwork) -> None:
        self._ip(f"-{network.version}", "route", "replace", str(network), "dev", self.name)

    def del_route(self, network: IPNetwork) -> None:
        try:
            self._ip(f"-{network.version}", "route", "del", str(network), "dev", self.name)
        except TunError:
            pass  # already gone with the interface or by hand

    def close(self) -> None:
        """Closing the fd removes a non-persistent TUN device with its routes."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TunDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
