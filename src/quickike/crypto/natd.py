"""NAT detection hashes (RFC 7296 §2.23).

NAT_DETECTION_SOURCE_IP / _DESTINATION_IP carry SHA-1(SPIi | SPIr | IP | Port);
a mismatch with the addresses a packet actually arrived from and to means a
NAT sits in between, and both sides move to port 4500.
"""

from __future__ import annotations

import functools
import struct
from ipaddress import IPv4Address, IPv6Address, ip_address

from cryptography.hazmat.primitives import hashes

from .errors import CryptoError

Address = IPv4Address | IPv6Address | str | bytes

_PORT = struct.Struct("!H")


def packed_ip(ip: Address) -> bytes:
    """4 or 16 octets for an address given as object, text or already packed."""
    if isinstance(ip, IPv4Address | IPv6Address):
        return ip.packed
    if isinstance(ip, bytes):
        if len(ip) not in (4, 16):
            raise CryptoError(f"a packed IP address has 4 or 16 octets, not {len(ip)}")
        return ip
    return _packed_text(ip)


@functools.lru_cache(maxsize=4096)
def _packed_text(ip: str) -> bytes:
    """Text to packed; cached, as every IKE_SA_INIT hashes the same few gateway addresses."""
    try:
        return ip_address(ip).packed
    except ValueError as e:
        raise CryptoError(str(e)) from None


def natd_hash(spi_i: bytes, spi_r: bytes, ip: Address, port: int) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port); SPIr is zero in the IKE_SA_INIT request (as sent)."""
    if not 0 <= port <= 0xFFFF:
        raise CryptoError(f"port {port} out of range")
    h = _SHA1.copy()
    h.update(spi_i + spi_r + packed_ip(ip) + _PORT.pack(port))
    return h.finalize()


#: an empty SHA-1 context that is only ever copied: copying it costs half of building a new
#: Hash (no algorithm object, no type check), and four hashes go into every IKE SA setup
_SHA1 = hashes.Hash(hashes.SHA1())


__all__ = ["Address", "natd_hash", "packed_ip"]
