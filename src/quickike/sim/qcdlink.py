"""Plugging the QCD extension into simulated gateways.

The simulator gives every node the in-memory secret store and CHILD-SPI map
of :mod:`quickike.qcd`, kept in the node's persistent :class:`NodeStore`, so a
crash loses the engine but not the secret, exactly as the daemon keeps them
in its state directory.  The extension draws a first secret from the
engine's seeded random source, so one run seed fixes every token too.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..engine.extension import Extension
from .node import Node


class QcdUnavailable(RuntimeError):
    """The QCD package (``quickike.qcd``) is missing or lacks what the simulator needs."""


def qcd_extensions(node: Node) -> Sequence[Extension]:
    """The extension list of a QCD-capable node (empty when QCD is disabled in its config)."""
    try:
        from ..qcd import (
            MemoryChildSpiMap,
            MemorySecretStore,
            QcdExtension,
            parse_qcd_settings,
        )
    except ImportError as e:  # pragma: no cover - depends on the tree
        raise QcdUnavailable(f"quickike.qcd cannot be imported: {e}") from e
    settings = node.config.settings.qcd
    if not settings.enable:
        return []
    policy = parse_qcd_settings(settings)
    store = node.store
    if store.qcd_secrets is None:
        store.qcd_secrets = MemorySecretStore()
    if policy.child_spi_map and store.child_spi_map is None:
        store.child_spi_map = MemoryChildSpiMap()
    spi_map = store.child_spi_map if policy.child_spi_map else None
    return [QcdExtension(policy, store.qcd_secrets, spi_map)]


def memory_secret_store() -> object:
    """An empty in-memory QCD secret store (a hot-standby pair shares one)."""
    try:
        from ..qcd import MemorySecretStore
    except ImportError as e:  # pragma: no cover - depends on the tree
        raise QcdUnavailable(f"quickike.qcd cannot be imported: {e}") from e
    return MemorySecretStore()

