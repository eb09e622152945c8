"""UDP sockets for IKE that know which of our addresses a datagram came to.

A gateway bound to the wildcard address must answer from the address the
peer talked to, and NAT detection hashes that address, so every socket
asks the kernel for IP_PKTINFO / IPV6_PKTINFO and sends with it (as charon's
socket-default plugin does). Reading drains the socket in one go so a burst
costs one wake-up.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
import struct

Address = tuple[str, int]

# Linux values; the socket module of Python 3.11 does not export IP_PKTINFO
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
_IN_PKTINFO = struct.Struct("=i4s4s")  # ifindex, spec_dst, addr
_IN6_PKTINFO = struct.Struct("=16sI")  # addr, ifindex
_CMSG_SPACE = socket.CMSG_SPACE(max(_IN_PKTINFO.size, _IN6_PKTINFO.size))
MAX_DATAGRAM = 65535


class UdpSocket:
    """One non-blocking UDP socket on one port of one address family."""

    __slots__ = ("family", "host", "marker", "port", "sock", "v6")

    def __init__(self, family: int, port: int, *, marker: bool, host: str = "") -> None:
        self.family = family
        self.v6 = family == socket.AF_INET6
        self.marker = marker
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if self.v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            sock.bind((host or ("::" if self.v6 else "0.0.0.0"), port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.host = host
        self.port = sock.getsockname()[1]

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def receive(self, limit: int = 256) -> list[tuple[bytes, str, Address]]:
        """Up to ``limit`` datagrams: (data, our address it was sent to, sender)."""
        out: list[tuple[bytes, str, Address]] = []
        recvmsg = self.sock.recvmsg
        for _ in range(limit):
            try:
                data, anc, _flags, src = recvmsg(MAX_DATAGRAM, _CMSG_SPACE)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    continue  # ICMP errors of earlier sends; never conclusive (RFC 7296 §2.4)
                raise
            local = self._local_of(anc)
            out.append((data, local, (src[0], src[1])))
        return out

    def _local_of(self, anc: list[tuple[int, int, bytes]]) -> str:
        for level, ctype, cdata in anc:
            if not self.v6 and level == socket.IPPROTO_IP and ctype == IP_PKTINFO:
                _, _spec, addr = _IN_PKTINFO.unpack_from(cdata)
                return socket.inet_ntop(socket.AF_INET, addr)
            if self.v6 and level == socket.IPPROTO_IPV6 and ctype == socket.IPV6_PKTINFO:
                addr6, _ = _IN6_PKTINFO.unpack_from(cdata)
                return socket.inet_ntop(socket.AF_INET6, addr6)
        return self.host or ("::" if self.v6 else "0.0.0.0")

    def send(self, data: bytes, local_ip: str, remote: Address) -> bool:
        """Send from ``local_ip`` (unless it is a wildcard); False if the kernel refused."""
        try:
            self.sock.sendmsg([data], _pktinfo(local_ip, self.v6), 0, remote)
        except OSError:  # full buffer (BlockingIOError) included: IKE retransmits
            return False
        return True


@functools.lru_cache(maxsize=1024)
def _pktinfo(local_ip: str, v6: bool) -> list[tuple[int, int, bytes]]:
    """The ancillary data that sends from ``local_ip``; a gateway has few addresses, so cached.

    (sendmsg only reads the list.)
    """
    if not local_ip or local_ip in ("0.0.0.0", "::"):
        return []
    try:
        packed = ipaddress.ip_address(local_ip).packed
    except ValueError:
        return []
    if v6 and len(packed) == 16:
        return [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, _IN6_PKTINFO.pack(packed, 0))]
    if not v6 and len(packed) == 4:
        return [(socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, packed, b"\0" * 4))]
    return []


def source_address_for(remote_ip: str) -> str | None:
    """The address the kernel would send from to reach ``remote_ip`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in remote_ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((remote_ip, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None
