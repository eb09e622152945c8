"""Fixtures: a pair of ``quickike run`` processes in a short temporary directory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .gateways import Pair, Swanctl, make_pair, require_swanctl

PAIR_KEY = pytest.StashKey[Pair]()


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Unix socket paths are limited to 107 octets; pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="qc", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def pair(request: pytest.FixtureRequest, workdir: Path) -> Iterator[Pair]:
    """Gateways A (127.0.0.1) and B (127.0.0.2), not started; stopped by PID afterwards."""
    the_pair = make_pair(workdir)
    request.node.stash[PAIR_KEY] = the_pair
    try:
        yield the_pair
    finally:
        for gw in the_pair:
            gw.stop()


@pytest.fixture
def swanctl(workdir: Path) -> Swanctl:
    return Swanctl(require_swanctl(), workdir)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing test's report carries both daemons' logs."""
    report = yield
    if report.when == "call" and report.failed:
        the_pair = item.stash.get(PAIR_KEY, None)
        if the_pair is not None:
            report.sections.append(("quickike gateways", the_pair.describe()))
    return report
