"""Inbound anti-replay window (RFC 4303 §3.4.3 and Appendix A).

The window is a Python int used as a bitmap: bit ``i`` says that sequence
number ``top - i`` was received and authenticated.  Shifting a 1024-bit int
costs tens of nanoseconds, far less than a list or bytearray walk, which
keeps the check cheap enough for the per-packet hot path.

Checking and updating are separate on purpose: RFC 4303 wants the window
consulted *before* the ICV is verified (so replays are rejected cheaply) and
moved only *after* (so a forged packet cannot advance it).  With ESN, the
check also infers the 32 high-order bits (Appendix A2.2) that the ICV then
has to confirm.
"""

from __future__ import annotations

from quickike.dataplane.errors import EspError

__all__ = ["DEFAULT_WINDOW", "ReplayError", "ReplayWindow"]

#: RFC 4303 asks for at least 32 (64 recommended); fast links reorder more.
DEFAULT_WINDOW = 1024

_LOW32 = 0xFFFFFFFF
_MAX_SEQ64 = (1 << 64) - 1


class ReplayError(EspError):
    """The packet is a duplicate or lies left of the window."""

    __slots__ = ("seq",)

    def __init__(self, message: str, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class ReplayWindow:
    """One SA's window; only the inbound packet path touches it."""

    __slots__ = ("_mask", "bitmap", "esn", "size", "top")

    def __init__(self, size: int = DEFAULT_WINDOW, *, esn: bool = False) -> None:
        if not 32 <= size < (1 << 31):
            raise ValueError(f"replay window size {size} out of range")
        self.size = size
        self.esn = esn
        #: highest authenticated (64-bit with ESN) sequence number, 0 = none yet
        self.top = 0
        self.bitmap = 0
        self._mask = (1 << size) - 1

    def check(self, seql: int) -> int:
        """Return the full sequence number for ``seql`` or raise ReplayError.

        ``seql`` is the 32-bit number from the ESP header.  The result is the
        number the ICV must be verified with (its high half goes into the AAD
        or the ICV input) and the one to pass to :meth:`update` afterwards.
        """
        top = self.top
        size = self.size
        if self.esn:
            tl = top & _LOW32
            th = top >> 32
            if tl >= size - 1:  # Case A: window inside one 2^32 subspace
                seqh = th if seql >= tl - size + 1 else th + 1
            else:  # Case B: window straddles the subspace boundary
                seqh = th - 1 if seql >= ((tl - size + 1) & _LOW32) else th
                if seqh < 0:
                    raise ReplayError("sequence number left of the window", seql)
            seq = (seqh << 32) | seql
            if seq > _MAX_SEQ64:
                raise ReplayError("sequence number beyond 2^64 - 1", seql)
        else:
            seq = seql
        if seq > top:
            return seq
        if seq == 0:
            raise ReplayError("sequence number 0 is never sent", seq)
        diff = top - seq
        if diff >= size:
            raise ReplayError("sequence number left of the window", seq)
        if (self.bitmap >> diff) & 1:
            raise ReplayError("duplicate sequence number", seq)
        return seq

    def update(self, seq: int) -> None:
        """Record an authenticated packet (``seq`` as returned by :meth:`check`)."""
        top = self.top
        if seq > top:
            shift = seq - top
            self.bitmap = ((self.bitmap << shift) | 1) & self._mask if shift < self.size else 1
            self.top = seq
        else:
            self.bitmap |= 1 << (top - seq)

    def seen(self, seq: int) -> bool:
        """Whether ``seq`` (full number) is recorded; for tests and diagnostics."""
        if seq > self.top or self.top - seq >= self.size:
            return False
        return bool((self.bitmap >> (self.top - seq)) & 1)
