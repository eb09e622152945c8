"""Stateless cookies against IKE_SA_INIT floods (RFC 7296 §2.6).

``Cookie = VersionIDofSecret | HMAC-SHA256(secret, Ni | IPi | SPIi)``, the
example construction of §2.6.  The secret is replaced every
``rotation_period`` seconds; a cookie made with the previous secret is still
accepted until the next replacement, so a client that got a cookie just before
a rotation is not turned away.  Time is passed in (``now``), never read here.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import constant_time, hashes, hmac

from .natd import Address, packed_ip
from .rng import RandomSource

_VERSION = struct.Struct("!I")
COOKIE_SIZE = _VERSION.size + 32  # within the 1..64 octets of §2.6


class CookieJar:
    """Makes and checks cookies; one per gateway (all SAs share the secret)."""

    __slots__ = ("_current", "_previous", "_rng", "_rotated_at", "rotation_period")

    def __init__(self, rng: RandomSource, rotation_period: float = 120.0) -> None:
        if rotation_period <= 0:
            raise ValueError("rotation_period must be positive")
        self._rng = rng
        self.rotation_period = rotation_period
        self._current: tuple[int, bytes] = (rng.randbelow(1 << 32), rng.bytes(32))
        self._previous: tuple[int, bytes] | None = None
        self._rotated_at: float | None = None

    def _rotate(self, now: float) -> None:
        if self._rotated_at is None:
            self._rotated_at = now
            return
        elapsed = now - self._rotated_at
        if elapsed < self.rotation_period:
            return
        version = (self._current[0] + 1) & 0xFFFFFFFF
        fresh = (version, self._rng.bytes(32))
        # After two periods without traffic the old current secret is stale too.
        self._previous = self._current if elapsed < 2 * self.rotation_period else None
        self._current = fresh
        self._rotated_at = now

    @staticmethod
    def _mac(secret: bytes, ni: bytes, ip: Address, spi_i: bytes) -> bytes:
        h = hmac.HMAC(secret, hashes.SHA256())
        h.update(bytes(ni) + packed_ip(ip) + bytes(spi_i))
        return h.finalize()

    def make(self, ni: bytes, ip: Address, spi_i: bytes, now: float) -> bytes:
        """The N(COOKIE) data to send to an initiator at ``ip``."""
        self._rotate(now)
        version, secret = self._current
        return _VERSION.pack(version) + self._mac(secret, ni, ip, spi_i)

    def verify(self, cookie: bytes, ni: bytes, ip: Address, spi_i: bytes, now: float) -> bool:
        """Whether ``cookie`` was made by us, recently, for this Ni, address and SPIi."""
        self._rotate(now)
        if len(cookie) != COOKIE_SIZE:
            return False
        version = _VERSION.unpack_from(cookie)[0]
        for candidate in (self._current, self._previous):
            if candidate is not None and candidate[0] == version:
                expected = self._mac(candidate[1], ni, ip, spi_i)
                return constant_time.bytes_eq(expected, bytes(cookie[_VERSION.size :]))
        return False


__all__ = ["COOKIE_SIZE", "CookieJar"]
