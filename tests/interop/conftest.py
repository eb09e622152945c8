"""Fixtures of the interop proof (see world.py for what a test gets)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from quickike.lab.netns import Lab

from .world import Interop


@pytest.fixture
def interop(lab: Lab) -> Iterator[Interop]:
    world = Interop(lab)
    try:
        yield world
    finally:
        world.close()


@pytest.fixture
def interop6(lab: Lab) -> Iterator[Interop]:
    """The same world with IKE between the gateways' IPv6 addresses."""
    world = Interop(lab, ipv6=True)
    try:
        yield world
    finally:
        world.close()
