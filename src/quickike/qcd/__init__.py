"""Quick Crash Detection (RFC 6290) as an engine plug-in.

A driver builds the stores and the extension and hands it to the engine::

    policy = parse_qcd_settings(config.settings.qcd)
    store = FileSecretStore.in_state_dir(config.settings.state_dir, policy.secret_file)
    spi_map = (SqliteChildSpiMap.in_state_dir(config.settings.state_dir, policy.child_spi_map_file)
               if policy.child_spi_map else None)
    engine = Engine(config, extensions=[QcdExtension(policy, store, spi_map)])

The simulator uses :class:`MemorySecretStore` / :class:`MemoryChildSpiMap`
instead; ``qcd_show(engine)`` is what ``quickike qcd show`` prints and
``QcdExtension.rotate()`` what ``quickike qcd rotate`` calls.
"""

from .extension import QcdExtension
from .keyring import KeyringNote, SecretKeyring
from .settings import (
    ConnPolicy,
    Deployment,
    OverLimit,
    QcdConfigError,
    QcdPolicy,
    Role,
    TokenMethod,
    connection_policy,
    parse_connection_qcd,
    parse_qcd_settings,
    validate_config,
)
from .spimap import ChildSpiMap, MemoryChildSpiMap, SpiMapEntry, SqliteChildSpiMap
from .status import QcdStatus, find_extension, qcd_show
from .store import (
    CorruptSecret,
    FileSecretStore,
    Generation,
    MemorySecretStore,
    SecretSet,
    SecretStore,
    SecretStoreError,
)
from .tokens import make_token

__all__ = [
    "ChildSpiMap",
    "ConnPolicy",
    "CorruptSecret",
    "Deployment",
    "FileSecretStore",
    "Generation",
    "KeyringNote",
    "MemoryChildSpiMap",
    "MemorySecretStore",
    "OverLimit",
    "QcdConfigError",
    "QcdExtension",
    "QcdPolicy",
    "QcdStatus",
    "Role",
    "SecretKeyring",
    "SecretSet",
    "SecretStore",
    "SecretStoreError",
    "SpiMapEntry",
    "SqliteChildSpiMap",
    "TokenMethod",
    "connection_policy",
    "find_extension",
    "make_token",
    "parse_connection_qcd",
    "parse_qcd_settings",
    "qcd_show",
    "validate_config",
]
