from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from vici_fake_backend import FakeBackend
from vici_harness import ServerThread


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 octets; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="qv", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_path(sock_dir: Path) -> Path:
    return sock_dir / "quickike.vici"


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def running(backend: FakeBackend, sock_path: Path) -> Iterator[ServerThread]:
    with ServerThread(backend, sock_path) as harness:
        yield harness
