"""Prerequisites of the lab tests: skip on a developer machine, fail under CI=true.

Import with ``from needs import require_root`` (tests/ is on sys.path). They live here rather than
in conftest.py because every test folder may have a conftest of its own, and pytest imports each of
them as the module ``conftest``: a folder's conftest would shadow these when several folders are
named on the command line.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

from quickike.lab import caps


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer machine; under CI=true a missing prerequisite is a failure."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: this must not be skipped)", pytrace=False)
    pytest.skip(reason)


def _require(reason: str | None) -> None:
    if reason is not None:
        unavailable(reason)


def require_root() -> None:
    _require(caps.missing_root())


def require_netns() -> None:
    _require(caps.missing_netns())


def require_tun() -> None:
    _require(caps.missing_tun())


def require_strongswan() -> None:
    _require(caps.missing_strongswan())
