"""Where the QCD secret lives between boots.

The secret is the one thing a token maker must not lose (RFC 6290 §5.1: "kept
indefinitely"), and a half-written one is worse than none because it would
be used.  So the file store writes atomically (temporary file, fsync, rename,
fsync of the directory): a crash at any instant leaves the old file or the
new one.  The format carries a version, the current generation, up to three
previous generations and a SHA-256 checksum, so a torn or damaged file is
recognised instead of being trusted.

Stores only move bytes; deciding what to do about a missing or corrupt file
(create, move aside, report) is :mod:`quickike.qcd.keyring`'s job.  The
in-memory store keeps the same encoded form so the simulator and tests run
the same code paths, including corruption.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets as _secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives import hashes

FORMAT = "quickike-qcd-secret"
VERSION = 1
#: previous generations kept next to the current one (RFC 6290 §5.1: "up to 3")
KEEP_PREVIOUS = 3
_TMP_MARK = ".tmp-"


class SecretStoreError(Exception):
    """The store cannot be used (I/O error, unsupported format): refuse to start."""


class CorruptSecret(SecretStoreError):
    """The stored secret is unreadable or damaged; ``reason`` says how."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"QCD secret {location} is unusable: {reason}")
        self.location = location
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Generation:
    """One secret generation; ``created`` is wall-clock seconds."""

    number: int
    secret: bytes = field(repr=False)
    created: float

    @property
    def fingerprint(self) -> str:
        """First 8 octets of SHA-256(secret) in hex: comparable, never the secret."""
        return _sha256(self.secret)[:8].hex()


@dataclass(frozen=True, slots=True)
class SecretSet:
    """The current generation first, then up to :data:`KEEP_PREVIOUS` older ones."""

    generations: tuple[Generation, ...]

    def __post_init__(self) -> None:
        if not self.generations:
            raise ValueError("a secret set needs at least one generation")

    @property
    def current(self) -> Generation:
        return self.generations[0]

    def numbers(self) -> tuple[int, ...]:
        return tuple(g.number for g in self.generations)

    def rotated(self, secret: bytes, created: float, keep: int = KEEP_PREVIOUS) -> SecretSet:
        new = Generation(self.current.number + 1, secret, created)
        return SecretSet((new, *self.generations[:keep]))

    @classmethod
    def first(cls, secret: bytes, created: float) -> SecretSet:
        return cls((Generation(1, secret, created),))


def _sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def encode_secrets(secrets: SecretSet) -> bytes:
    body: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "generation": secrets.current.number,
        "secrets": [
            {"generation": g.number, "created": g.created, "secret": g.secret.hex()}
            for g in secrets.generations
        ],
    }
    body["checksum"] = "sha256:" + _sha256(_canonical(body)).hex()
    return _canonical(body) + b"\n"


def decode_secrets(data: bytes, location: str = "<memory>") -> SecretSet:
    """Parse and check a stored secret; raises :class:`CorruptSecret` or, for a
    well-formed file of an unknown version, :class:`SecretStoreError`."""

    def bad(reason: str) -> CorruptSecret:
        return CorruptSecret(location, reason)

    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise bad("not a QCD secret file (torn or overwritten?)") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise bad("not a QCD secret file")
    checksum = obj.pop("checksum", None)
    if not isinstance(checksum, str) or checksum != "sha256:" + _sha256(_canonical(obj)).hex():
        raise bad("checksum mismatch")
    if obj.get("version") != VERSION:
        raise SecretStoreError(
            f"QCD secret {location} has format version {obj.get('version')!r}; this quickike "
            f"reads version {VERSION} only (left untouched)")
    gens = obj.get("secrets")
    if not isinstance(gens, list) or not 1 <= len(gens) <= KEEP_PREVIOUS + 1:
        raise bad("wrong number of generations")
    out: list[Generation] = []
    for g in gens:
        if not isinstance(g, dict):
            raise bad("malformed generation")
        number, created, secret = g.get("generation"), g.get("created"), g.get("secret")
        if not isinstance(number, int) or isinstance(number, bool) or number < 1:
            raise bad("malformed generation number")
        if not isinstance(created, int | float) or isinstance(created, bool):
            raise bad("malformed creation time")
        if not isinstance(secret, str):
            raise bad("malformed secret")
        try:
            raw = bytes.fromhex(secret)
        except ValueError:
            raise bad("malformed secret") from None
        if not 16 <= len(raw) <= 64:
            raise bad("secret of a bad length")
        out.append(Generation(number, raw, float(created)))
    numbers = [g.number for g in out]
    if numbers != sorted(numbers, reverse=True) or len(set(numbers)) != len(numbers):
        raise bad("generations out of order")
    if obj.get("generation") != numbers[0]:
        raise bad("current generation does not match")
    return SecretSet(tuple(out))


class SecretStore(Protocol):
    """Persistence of the secret set; the extension never calls it per message."""

    @property
    def location(self) -> str: ...

    def load(self) -> SecretSet | None:
        """The stored set, or None if there is none (first start)."""
        ...

    def save(self, secrets: SecretSet) -> None:
        """Replace the stored set atomically."""
        ...

    def quarantine(self) -> str:
        """Move a corrupt store aside; returns where it went."""
        ...

    def lock(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive access for a read-modify-write (rotation)."""
        ...

    def remove_leftovers(self) -> int:
        """Delete what interrupted writes left behind; returns how many."""
        ...


class MemorySecretStore:
    """The same interface and encoding, without a file (simulator, tests)."""

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data
        self.quarantined: list[bytes] = []
        self.saves = 0

    @property
    def location(self) -> str:
        return "<memory>"

    def load(self) -> SecretSet | None:
        return None if self.data is None else decode_secrets(self.data, self.location)

    def save(self, secrets: SecretSet) -> None:
        self.data = encode_secrets(secrets)
        self.saves += 1

    def quarantine(self) -> str:
        if self.data is not None:
            self.quarantined.append(self.data)
        self.data = None
        return f"<memory:quarantine/{len(self.quarantined)}>"

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield

    def remove_leftovers(self) -> int:
        return 0


class FileSecretStore:
    """One file, mode 0600, in the state directory (created 0700 if missing)."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.directory = os.path.dirname(self.path)
        self.name = os.path.basename(self.path)

    @classmethod
    def in_state_dir(cls, state_dir: str, name: str = "qcd.secret") -> FileSecretStore:
        return cls(name if os.path.isabs(name) else os.path.join(state_dir, name))

    @property
    def location(self) -> str:
        return self.path

    # -- reading ---------------------------------------------------------------

    def load(self) -> SecretSet | None:
        try:
            with open(self.path, "rb") as f:
                data = f.read(1 << 16)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CorruptSecret(self.path, f"cannot be read: {e.strerror or e}") from None
        return decode_secrets(data, self.path)

    def leftovers(self) -> list[str]:
        """Temporary files of writes that never reached their rename."""
        prefix = f".{self.name}{_TMP_MARK}"
        try:
            return sorted(os.path.join(self.directory, n) for n in os.listdir(self.directory)
                          if n.startswith(prefix))
        except FileNotFoundError:
            return []

    def remove_leftovers(self) -> int:
        removed = 0
        for path in self.leftovers():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed += 1
        return removed

    # -- writing ---------------------------------------------------------------

    def _ensure_directory(self) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as e:
            raise SecretStoreError(f"cannot create {self.directory}: {e.strerror or e}") from None

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def save(self, secrets: SecretSet) -> None:
        data = encode_secrets(secrets)
        self._ensure_directory()
        tmp = os.path.join(self.directory,
                           f".{self.name}{_TMP_MARK}{os.getpid()}-{_secrets.token_hex(4)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o600)
            try:
                os.fchmod(fd, 0o600)
                view = memoryview(data)
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            self._fsync_directory()
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SecretStoreError(f"cannot write {self.path}: {e.strerror or e}") from None

    def quarantine(self) -> str:
        base = f"{self.path}.corrupt"
        target = base
        n = 1
        while os.path.lexists(target):
            n += 1
            target = f"{base}.{n}"
        try:
            os.rename(self.path, target)
            self._fsync_directory()
        except FileNotFoundError:
            return target
        except OSError as e:
            raise SecretStoreError(
                f"cannot move the unusable QCD secret {self.path} aside: {e.strerror or e}; "
                "refusing to replace it") from None
        return target

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        import fcntl

        self._ensure_directory()
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


__all__ = [
    "KEEP_PREVIOUS",
    "CorruptSecret",
    "FileSecretStore",
    "Generation",
    "MemorySecretStore",
    "SecretSet",
    "SecretStore",
    "SecretStoreError",
    "decode_secrets",
    "encode_secrets",
]
