"""The QCD secret generations in memory, and the decisions about the stored copy.

A missing store means first start: a new secret is made and saved.  A
corrupt or unreadable one is moved aside and a new secret is made, but never
silently: :meth:`SecretKeyring.open` returns what happened so the extension
can log it at ERROR, count it and emit an event (tokens handed out before
would no longer verify, so an operator must know).  Rotation re-reads the
store under its lock first, so a rotation done by another process is built
upon rather than overwritten.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from .store import KEEP_PREVIOUS, CorruptSecret, SecretSet, SecretStore

RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True, slots=True)
class KeyringNote:
    """Something about the stored secret worth telling the operator."""

    kind: str  # "secret-created", "secret-loaded", "secret-corrupt", "secret-rotated"
    detail: str = ""
    moved_to: str = ""


class SecretKeyring:
    """Holds the secret set; all store I/O happens in :meth:`open` and :meth:`rotate`."""

    def __init__(self, store: SecretStore, *, secret_length: int = 32,
                 random_bytes: RandomBytes = os.urandom, keep_previous: int = KEEP_PREVIOUS) -> None:
        self.store = store
        self.secret_length = secret_length
        self.random_bytes = random_bytes
        self.keep_previous = keep_previous
        self._secrets: SecretSet | None = None

    @property
    def secrets(self) -> SecretSet:
        if self._secrets is None:
            raise RuntimeError("the keyring has not been opened")
        return self._secrets

    @property
    def is_open(self) -> bool:
        return self._secrets is not None

    def _new_secret(self) -> bytes:
        secret = self.random_bytes(self.secret_length)
        if len(secret) != self.secret_length:
            raise ValueError("random source returned a short secret")
        return secret

    def open(self, wall_now: float) -> list[KeyringNote]:
        """Load the stored set, creating (and, if corrupt, first moving aside) as needed.

        Raises :class:`~quickike.qcd.store.SecretStoreError` when the store
        cannot be used at all (then the daemon must not start).
        """
        notes: list[KeyringNote] = []
        # one critical section from look to write, as in rotate(): two gateways of a
        # hot-standby pair starting together on a shared, empty state directory must end up
        # with one secret, not each with its own and the file holding the later one
        with self.store.lock():
            self.store.remove_leftovers()
            try:
                loaded = self.store.load()
            except CorruptSecret as e:
                moved = self.store.quarantine()
                notes.append(KeyringNote("secret-corrupt", e.reason, moved))
                loaded = None
            if loaded is None:
                loaded = SecretSet.first(self._new_secret(), wall_now)
                self.store.save(loaded)
                notes.append(KeyringNote("secret-created", self.store.location))
            else:
                notes.append(KeyringNote("secret-loaded", self.store.location))
        self._secrets = loaded
        return notes

    def rotate(self, wall_now: float) -> list[KeyringNote]:
        """A new current generation; the oldest beyond ``keep_previous`` is dropped.

        The new set is :attr:`secrets` afterwards.  A store found corrupt is
        moved aside (and reported) and the rotation continues from the
        generations held in memory.
        """
        notes: list[KeyringNote] = []
        with self.store.lock():
            try:
                stored = self.store.load()
            except CorruptSecret as e:
                notes.append(KeyringNote("secret-corrupt", e.reason, self.store.quarantine()))
                stored = None
            base = stored
            mine = self._secrets
            if base is None or (mine is not None and base.current.number < mine.current.number):
                base = mine
            if base is None:
                base = SecretSet.first(self._new_secret(), wall_now)
            new = base.rotated(self._new_secret(), wall_now, self.keep_previous)
            self.store.save(new)
        self._secrets = new
        notes.append(KeyringNote("secret-rotated", self.store.location))
        return notes


__all__ = ["KeyringNote", "RandomBytes", "SecretKeyring"]
