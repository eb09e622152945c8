"""SIGKILL a process while it rotates the QCD secret, again and again.

After every kill the file must parse with a good checksum (never torn), hold
at least the last generation the dead process reported as committed (never
lost), and every generation number must keep the secret it was first seen
with.  The rotating process is forked from the test process so that the
loop can run a hundred-odd kills in a few seconds.
"""

from __future__ import annotations

import os
import random
import select
import signal
import time
from pathlib import Path

import pytest

from quickike.qcd import FileSecretStore, SecretKeyring
from quickike.qcd.store import decode_secrets

KILLS = 120


def _rotate_forever(path: str, report: int) -> None:  # pragma: no cover - runs in the child
    try:
        keyring = SecretKeyring(FileSecretStore(path))
        keyring.open(time.time())
        os.write(report, f"up {keyring.secrets.current.number}\n".encode())
        while True:
            keyring.rotate(time.time())
            os.write(report, f"committed {keyring.secrets.current.number}\n".encode())
    finally:
        os._exit(1)


def _read_all(fd: int) -> str:
    chunks = []
    while select.select([fd], [], [], 0)[0]:
        data = os.read(fd, 65536)
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_secret_survives_sigkill_during_rotation(tmp_path: Path) -> None:
    path = str(tmp_path / "qcd.secret")
    rng = random.Random(6290)
    committed = 0
    secrets_seen: dict[int, bytes] = {}
    kills_while_writing = 0
    torn_temporaries = 0
    for _ in range(KILLS):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            os.close(r)
            _rotate_forever(path, w)
        os.close(w)
        try:
            # wait until the child is up, then let it rotate for a random while
            select.select([r], [], [], 5.0)
            time.sleep(rng.uniform(0.0, 0.03))
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
            lines = _read_all(r).split()
        finally:
            os.close(r)
        reported = [int(n) for _, n in zip(lines[::2], lines[1::2], strict=True)]
        if reported:
            committed = max(committed, max(reported))
        torn_temporaries += len(FileSecretStore(path).leftovers())
        data = Path(path).read_bytes()
        current = decode_secrets(data, path)  # raises if torn or damaged
        # never lost: at least what the dead process saw committed, at most one more
        assert committed <= current.current.number <= committed + 1
        if current.current.number > committed:
            kills_while_writing += 1  # renamed, killed before it could report
        committed = current.current.number
        assert current.numbers() == tuple(range(committed, max(committed - 4, 0), -1))
        for g in current.generations:
            assert secrets_seen.setdefault(g.number, g.secret) == g.secret
    assert committed > KILLS  # the children did rotate between the kills
    # and the kills did land inside writes: half-written temporaries and unreported renames
    assert torn_temporaries > 0 and kills_while_writing > 0, (torn_temporaries, kills_while_writing)
    # whatever the kills left behind, the next start cleans up and loads the last secret
    store = FileSecretStore(path)
    keyring = SecretKeyring(store)
    assert [n.kind for n in keyring.open(0.0)] == ["secret-loaded"]
    assert keyring.secrets.current.number == committed and not store.leftovers()
    assert not (tmp_path / "qcd.secret.corrupt").exists()
