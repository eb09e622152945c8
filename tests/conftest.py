"""Shared test helpers: prerequisites that skip locally but fail under CI, and the interop lab.

The prerequisites themselves are in needs.py (``from needs import require_root``); the lab comes
through the fixtures ``lab`` and ``make_charon``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from needs import require_netns, require_root, require_strongswan, require_tun, unavailable
from quickike.lab.charon import Charon, CharonSettings
from quickike.lab.netns import Lab, Namespace, sweep_stale_namespaces

LAB_KEY = pytest.StashKey[Lab]()
_swept = False


@pytest.fixture
def need_tshark() -> None:
    """tshark (installed by scripts/install-lab-deps) for decoding cross-checks."""
    if shutil.which("tshark") is None:
        unavailable("tshark is not installed (scripts/install-lab-deps installs it)")


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A fresh `Lab`; everything it made is removed after the test, even when it fails."""
    global _swept
    require_root()
    require_netns()
    if not _swept:
        _swept = True
        sweep_stale_namespaces()  # leftovers of an earlier run that was SIGKILLed
    with Lab() as the_lab:
        request.node.stash[LAB_KEY] = the_lab
        yield the_lab


@pytest.fixture
def make_charon(lab: Lab) -> Callable[..., Charon]:
    """``make_charon(namespace, connections=..., secrets=..., settings=...)`` -> started Charon."""
    require_strongswan()

    def make(namespace: Namespace, **kwargs: Any) -> Charon:
        settings = kwargs.get("settings") or CharonSettings()
        if settings.esp:
            require_tun()
        return Charon(namespace, **kwargs).start()

    return make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the lab's charon logs and process output to a failing test's report."""
    report = yield
    if report.when == "call" and report.failed:
        the_lab = item.stash.get(LAB_KEY, None)
        if the_lab is not None and not the_lab.closed:
            report.sections.append(("interop lab", the_lab.describe()))
    return report
