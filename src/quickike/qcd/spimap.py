"""The optional persistent CHILD SPI -> IKE SPIs map (RFC 6290 §8.2).

After a reboot a gateway usually sees ESP before IKE.  With this map it can
answer the first ESP packet for a lost CHILD SA with ``N(INVALID_SPI),
N(QCD_TOKEN)+`` naming the parent IKE SA, instead of a bare INVALID_SPI that
costs the peer another round trip.  SQLite in WAL mode with
``synchronous=NORMAL``: each install/remove is one small transaction that a
process crash cannot lose (the WAL is in the OS page cache); a power loss can
lose the last few, which only costs that round trip again.  Stale rows (from
before a crash, when no remove was ever written) are purged by age.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class SpiMapEntry:
    spi: bytes
    spi_i: bytes
    spi_r: bytes
    updated: float


class ChildSpiMap(Protocol):
    def put(self, spi: bytes, spi_i: bytes, spi_r: bytes, now: float) -> None: ...

    def remove(self, spi: bytes) -> None: ...

    def get(self, spi: bytes) -> SpiMapEntry | None: ...

    def purge(self, older_than: float) -> int: ...

    def close(self) -> None: ...


class MemoryChildSpiMap:
    """The same interface in a dict; survives a simulated reboot if the object is kept."""

    def __init__(self) -> None:
        self.entries: dict[bytes, SpiMapEntry] = {}

    def put(self, spi: bytes, spi_i: bytes, spi_r: bytes, now: float) -> None:
        self.entries[bytes(spi)] = SpiMapEntry(bytes(spi), bytes(spi_i), bytes(spi_r), now)

    def remove(self, spi: bytes) -> None:
        self.entries.pop(bytes(spi), None)

    def get(self, spi: bytes) -> SpiMapEntry | None:
        return self.entries.get(bytes(spi))

    def purge(self, older_than: float) -> int:
        old = [k for k, e in self.entries.items() if e.updated < older_than]
        for k in old:
            del self.entries[k]
        return len(old)

    def close(self) -> None:
        return None


class SqliteChildSpiMap:
    """The map in an SQLite file in the state directory (created 0600)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not os.path.exists(self.path):
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS child_spi ("
            " spi BLOB PRIMARY KEY, spi_i BLOB NOT NULL, spi_r BLOB NOT NULL,"
            " updated REAL NOT NULL)"
        )

    @classmethod
    def in_state_dir(cls, state_dir: str, name: str = "qcd-spi-map.sqlite") -> SqliteChildSpiMap:
        return cls(name if os.path.isabs(name) else os.path.join(state_dir, name))

    def put(self, spi: bytes, spi_i: bytes, spi_r: bytes, now: float) -> None:
        self._db.execute("INSERT OR REPLACE INTO child_spi VALUES (?, ?, ?, ?)",
                         (bytes(spi), bytes(spi_i), bytes(spi_r), now))

    def remove(self, spi: bytes) -> None:
        self._db.execute("DELETE FROM child_spi WHERE spi = ?", (bytes(spi),))

    def get(self, spi: bytes) -> SpiMapEntry | None:
        row = self._db.execute("SELECT spi, spi_i, spi_r, updated FROM child_spi WHERE spi = ?",
                               (bytes(spi),)).fetchone()
        if row is None:
            return None
        return SpiMapEntry(bytes(row[0]), bytes(row[1]), bytes(row[2]), float(row[3]))

    def purge(self, older_than: float) -> int:
        cur = self._db.execute("DELETE FROM child_spi WHERE updated < ?", (older_than,))
        return int(cur.rowcount)

    def close(self) -> None:
        self._db.close()


__all__ = ["ChildSpiMap", "MemoryChildSpiMap", "SpiMapEntry", "SqliteChildSpiMap"]
