"""The QCD secret on disk: created once, written atomically, corruption reported, rotation."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from quickike.engine import events as ev
from quickike.engine.config import StartAction
from quickike.qcd import (
    CorruptSecret,
    FileSecretStore,
    MemorySecretStore,
    QcdExtension,
    QcdPolicy,
    SecretKeyring,
    SecretSet,
    SecretStoreError,
)
from quickike.qcd.store import decode_secrets, encode_secrets

from .helpers import (
    A_IP,
    B_IP,
    auto_child,
    bring_up,
    esp_from,
    gateways,
    live,
    only_sa,
    qcd_events,
    traces,
)


class Crash(BaseException):
    """The process dies here (nothing after this line runs, no cleanup handlers for OSError)."""


def counter() -> object:
    n = [0]

    def random_bytes(k: int) -> bytes:
        n[0] += 1
        return bytes([n[0]]) * k

    return random_bytes


def test_first_start_creates_a_0600_file_in_a_0700_directory(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = FileSecretStore.in_state_dir(str(state))
    old = os.umask(0)
    try:
        keyring = SecretKeyring(store)
        notes = keyring.open(1_700_000_000.0)
    finally:
        os.umask(old)
    assert [n.kind for n in notes] == ["secret-created"]
    path = state / "qcd.secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    body = json.loads(path.read_text())
    assert body["format"] == "quickike-qcd-secret" and body["version"] == 1
    assert body["generation"] == 1 and body["checksum"].startswith("sha256:")
    assert len(bytes.fromhex(body["secrets"][0]["secret"])) == 32
    # a second start finds the same secret
    again = SecretKeyring(FileSecretStore(str(path)))
    assert [n.kind for n in again.open(1_700_000_100.0)] == ["secret-loaded"]
    assert again.secrets == keyring.secrets


def test_two_gateways_starting_together_on_one_empty_store_share_one_secret(
    tmp_path: Path,
) -> None:
    """Hot standby on a shared state directory: the second start, begun while the first is
    making the secret, waits for it and loads it instead of writing one of its own."""
    path = str(tmp_path / "qcd.secret")
    second = SecretKeyring(FileSecretStore(path))
    runner = threading.Thread(target=second.open, args=(1_700_000_001.0,))

    def first_random(n: int) -> bytes:  # called between finding no file and writing one
        if not runner.is_alive() and runner.ident is None:
            runner.start()
            runner.join(0.5)  # without one critical section it would finish here
        return os.urandom(n)

    first = SecretKeyring(FileSecretStore(path), random_bytes=first_random)
    assert [n.kind for n in first.open(1_700_000_000.0)] == ["secret-created"]
    runner.join(10)
    assert not runner.is_alive()
    stored = FileSecretStore(path).load()
    assert stored is not None
    assert second.secrets == first.secrets == stored


def test_secret_length_is_configurable(tmp_path: Path) -> None:
    keyring = SecretKeyring(FileSecretStore(str(tmp_path / "s")), secret_length=64)
    keyring.open(0.0)
    assert len(keyring.secrets.current.secret) == 64


def test_crash_between_write_and_rename_keeps_the_old_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileSecretStore(str(tmp_path / "qcd.secret"))
    keyring = SecretKeyring(store, random_bytes=counter())  # type: ignore[arg-type]
    keyring.open(0.0)
    before = (tmp_path / "qcd.secret").read_bytes()

    def crash(*args: object) -> None:
        raise Crash

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(Crash):
        keyring.rotate(1.0)
    monkeypatch.undo()
    assert (tmp_path / "qcd.secret").read_bytes() == before
    leftovers = store.leftovers()
    assert len(leftovers) == 1 and decode_secrets(Path(leftovers[0]).read_bytes()).current.number == 2
    # the restart uses the old secret and clears the leftover
    restarted = SecretKeyring(FileSecretStore(str(tmp_path / "qcd.secret")))
    assert [n.kind for n in restarted.open(2.0)] == ["secret-loaded"]
    assert restarted.secrets.current.number == 1 and not store.leftovers()


def test_crash_in_the_middle_of_writing_the_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileSecretStore(str(tmp_path / "qcd.secret"))
    keyring = SecretKeyring(store)
    keyring.open(0.0)
    before = (tmp_path / "qcd.secret").read_bytes()
    real_write = os.write

    def torn_write(fd: int, data: object) -> int:
        real_write(fd, bytes(data)[:37])  # type: ignore[call-overload]
        raise Crash

    monkeypatch.setattr(os, "write", torn_write)
    with pytest.raises(Crash):
        keyring.rotate(1.0)
    monkeypatch.undo()
    assert (tmp_path / "qcd.secret").read_bytes() == before
    (tmp,) = store.leftovers()
    with pytest.raises(CorruptSecret):
        decode_secrets(Path(tmp).read_bytes())
    assert SecretKeyring(store).open(2.0)[0].kind == "secret-loaded"
    assert not store.leftovers()


def test_failed_write_is_a_typed_error_and_leaves_nothing(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileSecretStore(str(tmp_path / "qcd.secret"))
    keyring = SecretKeyring(store)
    keyring.open(0.0)

    def enospc(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(SecretStoreError, match="No space left"):
        keyring.rotate(1.0)
    monkeypatch.undo()
    assert not store.leftovers() and keyring.secrets.current.number == 1
    assert store.load() == keyring.secrets


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "directory"])
def test_corrupt_secret_is_moved_aside_and_reported_loudly(
        tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    from engine.harness import Net, config, conn

    path = tmp_path / "qcd.secret"
    SecretKeyring(FileSecretStore(str(path))).open(0.0)
    good = path.read_bytes()
    if damage == "flip":
        i = good.index(b'"secret":"') + 12
        path.write_bytes(good[:i] + (b"0" if good[i:i + 1] != b"0" else b"1") + good[i + 1:])
    elif damage == "truncate":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(os.urandom(200))
    else:
        path.unlink()
        path.mkdir()
    damaged = path.read_bytes() if path.is_file() else None
    net = Net()
    with caplog.at_level(logging.ERROR, logger="quickike.qcd"):
        node = net.add("A", A_IP, config(conn("gw", A_IP, B_IP, "a", "b")), 1,
                       extensions=[QcdExtension(QcdPolicy(), FileSecretStore(str(path)))])
    net.step()
    events = qcd_events(node)
    assert [e.kind for e in events] == ["secret-corrupt", "secret-created"]
    moved = Path(str(events[0].attrs["moved_to"]))
    assert moved == tmp_path / "qcd.secret.corrupt"
    assert moved.is_dir() if damage == "directory" else moved.read_bytes() == damaged
    assert node.engine.counters["qcd:secret-corrupt"] == 1
    assert any(r.levelno == logging.ERROR and "qcd.secret" in r.getMessage()
               for r in caplog.records)
    # the new secret differs from the lost one, and is itself valid
    assert decode_secrets(path.read_bytes()).current.secret != decode_secrets(good).current.secret


def test_second_corruption_does_not_overwrite_the_first_evidence(tmp_path: Path) -> None:
    path = tmp_path / "qcd.secret"
    for _ in range(2):
        path.write_bytes(b"{torn")
        SecretKeyring(FileSecretStore(str(path))).open(0.0)
    assert (tmp_path / "qcd.secret.corrupt").read_bytes() == b"{torn"
    assert (tmp_path / "qcd.secret.corrupt.2").read_bytes() == b"{torn"


def test_unknown_format_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "qcd.secret"
    SecretKeyring(FileSecretStore(str(path))).open(0.0)
    body = json.loads(path.read_text())
    del body["checksum"]
    body["version"] = 2
    import hashlib

    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    body["checksum"] = "sha256:" + hashlib.sha256(canon).hexdigest()
    path.write_text(json.dumps(body))
    before = path.read_bytes()
    with pytest.raises(SecretStoreError, match="version 2"):
        SecretKeyring(FileSecretStore(str(path))).open(0.0)
    assert path.read_bytes() == before and not (tmp_path / "qcd.secret.corrupt").exists()


def test_rotation_keeps_three_previous_generations(tmp_path: Path) -> None:
    store = FileSecretStore(str(tmp_path / "qcd.secret"))
    keyring = SecretKeyring(store, random_bytes=counter())  # type: ignore[arg-type]
    keyring.open(0.0)
    seen = {1: keyring.secrets.current.secret}
    for i in range(5):
        keyring.rotate(float(i + 1))
        seen[keyring.secrets.current.number] = keyring.secrets.current.secret
    assert keyring.secrets.numbers() == (6, 5, 4, 3)
    assert [g.secret for g in keyring.secrets.generations] == [seen[n] for n in (6, 5, 4, 3)]
    assert store.load() == keyring.secrets
    assert len({g.fingerprint for g in keyring.secrets.generations}) == 4


def test_rotation_builds_on_a_newer_file_written_by_another_process(tmp_path: Path) -> None:
    path = str(tmp_path / "qcd.secret")
    daemon = SecretKeyring(FileSecretStore(path))
    daemon.open(0.0)
    other = SecretKeyring(FileSecretStore(path))
    other.open(0.0)
    other.rotate(1.0)
    other.rotate(2.0)
    daemon.rotate(3.0)
    assert daemon.secrets.numbers() == (4, 3, 2, 1)
    assert daemon.secrets.generations[1] == other.secrets.current


def test_memory_store_has_the_same_behaviour() -> None:
    store = MemorySecretStore()
    keyring = SecretKeyring(store)
    keyring.open(0.0)
    assert store.data is not None and decode_secrets(store.data) == keyring.secrets
    store.data = store.data[:-20]
    notes = SecretKeyring(store).open(1.0)
    assert [n.kind for n in notes] == ["secret-corrupt", "secret-created"]
    assert len(store.quarantined) == 1


def test_encoding_round_trip_and_repr_hides_the_secret() -> None:
    s = SecretSet.first(b"\x5a" * 32, 12.5).rotated(b"\xa5" * 32, 13.0)
    assert decode_secrets(encode_secrets(s)) == s
    assert "5a5a" not in repr(s) and "\\x5a" not in repr(s)


# --------------------------------------------------------------------------
# rotation seen from the wire
# --------------------------------------------------------------------------


def test_after_three_rotations_a_rebooted_gateway_sends_four_tokens() -> None:
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),))
    bring_up(net, ga, gb)  # A holds B's generation-1 token
    for _ in range(3):
        gb.ext.rotate()
    assert gb.ext.keyring is not None and gb.ext.keyring.secrets.numbers() == (4, 3, 2, 1)
    net.settle()
    assert not qcd_events(ga.node, "token-stored")[1:]  # generation 1 still kept: no replacement
    b2 = gb.crash_and_reboot(net)
    since = net.now
    esp_from(ga, gb, net)
    net.advance(1.0)
    answer = next(t for t in traces(b2, since) if t.sent and t.response)
    assert answer.payloads == ("N(INVALID_IKE_SPI)",) + ("N(QUICK_CRASH_DETECTION)",) * 4
    assert qcd_events(b2, "token-sent")[0].attrs["tokens"] == 4
    assert qcd_events(ga.node, "teardown") and len(live(ga)) == 1


def test_rotation_that_drops_a_peers_generation_replaces_its_token() -> None:
    """§4.3/§4.4: the peer's token could no longer be regenerated, so it gets a new one."""
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),))
    bring_up(net, ga, gb)
    sa_b = only_sa(gb)
    for _ in range(4):
        gb.ext.rotate()
    net.settle()
    assert sa_b.ext_get("qcd").given_generation == 5
    update = [t for t in traces(gb.node) if t.sent and t.exchange == "INFORMATIONAL"]
    assert [t.payloads for t in update] == [("N(QUICK_CRASH_DETECTION)",)]
    (stored,) = [e for e in qcd_events(ga.node, "token-stored") if e.attrs["exchange"] == "INFORMATIONAL"]
    assert stored.attrs["replaced"] is True
    # the rebooted B no longer knows generation 1; the replacement makes QCD still work
    gb.crash_and_reboot(net)
    esp_from(ga, gb, net)
    net.advance(1.0)
    assert qcd_events(ga.node, "teardown")


def test_periodic_rotation(tmp_path: Path) -> None:
    from engine.harness import Net, config, conn

    net = Net()
    store = FileSecretStore(str(tmp_path / "qcd.secret"))
    node = net.add("A", A_IP, config(conn("gw", A_IP, B_IP, "a", "b")), 1,
                   extensions=[QcdExtension(QcdPolicy(rotate_period=3600.0), store)],
                   epoch_offset=1_700_000_000.0 - 1000.0)
    net.advance(3 * 3600 + 1)
    rotations = qcd_events(node, "secret-rotated")
    assert [e.attrs["generation"] for e in rotations] == [2, 3, 4]
    assert [e.time for e in rotations] == pytest.approx([1000.0 + 3600 * i for i in (1, 2, 3)])
    assert store.load().current.number == 4  # type: ignore[union-attr]


def test_failed_rotation_keeps_the_secret_and_says_so() -> None:
    class FullDisk(MemorySecretStore):
        fail = False

        def save(self, secrets: SecretSet) -> None:
            if self.fail:
                raise SecretStoreError("cannot write <memory>: No space left on device")
            super().save(secrets)

    net, _ga, gb = gateways()
    store = FullDisk()
    gb.store = store
    gb.crash_and_reboot(net)
    before = gb.ext.keyring.secrets  # type: ignore[union-attr]
    store.fail = True
    with pytest.raises(SecretStoreError):
        gb.ext.rotate()
    net.step()
    assert gb.ext.keyring.secrets == before  # type: ignore[union-attr]
    assert qcd_events(gb.node, "secret-rotate-failed")
    assert gb.node.engine.counters["qcd:secret-rotate-failed"] == 1  # type: ignore[union-attr]


def test_hot_standby_pair_shares_one_secret_file(tmp_path: Path) -> None:
    """§6: a copy of the active gateway's file makes the standby produce the same tokens."""
    import shutil

    from engine.harness import Net, config, conn
    from quickike.qcd import qcd_show

    active = tmp_path / "active" / "qcd.secret"
    SecretKeyring(FileSecretStore(str(active))).open(0.0)
    standby = tmp_path / "standby" / "qcd.secret"
    standby.parent.mkdir(mode=0o700)
    shutil.copy2(active, standby)
    net = Net()
    cfg = config(conn("gw", B_IP, A_IP, "b", "a"))
    n1 = net.add("B", B_IP, cfg, 1, extensions=[QcdExtension(QcdPolicy(), FileSecretStore(str(active)))])
    n2 = net.add("C", "192.0.2.3", cfg, 2,
                 extensions=[QcdExtension(QcdPolicy(), FileSecretStore(str(standby)))])
    s1, s2 = qcd_show(n1.engine), qcd_show(n2.engine)
    assert s1.fingerprint == s2.fingerprint and s1.generation == s2.generation == 1
    assert next(e for e in n1.engine.events() if isinstance(e, ev.ExtensionEvent)).kind == "secret-loaded"


def test_a_quarantine_that_fails_is_a_typed_error(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    from engine.harness import Net, config, conn

    path = tmp_path / "qcd.secret"
    path.write_text("{")

    def refuse(src: object, dst: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "rename", refuse)
    with pytest.raises(SecretStoreError, match="refusing to replace"):
        Net().add("A", A_IP, config(conn("gw", A_IP, B_IP, "a", "b")), 1,
                  extensions=[QcdExtension(QcdPolicy(), FileSecretStore(str(path)))])
    monkeypatch.undo()
    assert path.read_text() == "{"  # left exactly as found
