"""Reassembly of RFC 7383 fragments for one message.

Each fragment is authenticated on its own before it gets here, so the only
attack left is a peer (already authenticated) announcing absurd totals; the
count and the total size are bounded.
"""

from __future__ import annotations

MAX_FRAGMENTS = 64
MAX_MESSAGE = 256 * 1024


class Reassembly:
    __slots__ = ("first_next", "message_id", "parts", "response", "size", "total")

    def __init__(self, message_id: int, response: bool) -> None:
        self.message_id = message_id
        self.response = response
        self.parts: dict[int, bytes] = {}
        self.total = 0
        self.first_next = 0
        self.size = 0

    def add(self, number: int, total: int, nxt: int, plain: bytes) -> tuple[int, bytes] | None:
        if total > MAX_FRAGMENTS or (self.total and total != self.total):
            # RFC 7383 §2.6.2: a different total means a new (retransmitted) message; restart
            self.parts.clear()
            self.size = 0
            if total > MAX_FRAGMENTS:
                return None
        self.total = total
        if number in self.parts:
            return None
        self.size += len(plain)
        if self.size > MAX_MESSAGE:
            self.parts.clear()
            self.size = 0
            return None
        self.parts[number] = plain
        if number == 1:
            self.first_next = nxt
        if len(self.parts) < total:
            return None
        return self.first_next, b"".join(self.parts[i] for i in range(1, total + 1))
