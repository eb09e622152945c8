"""The two ways a configuration can disagree with us: fatally, or not.

Both name ``file:line`` so an operator can jump straight to the culprit; a
long-running daemon reloading on SIGHUP catches :class:`ConfigError` and keeps
its old configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quickike.engine.config import QuickikeConfig


class ConfigError(Exception):
    """The configuration cannot be used; ``str()`` reads ``file:line: message``."""

    def __init__(self, message: str, file: str = "<config>", line: int = 0) -> None:
        self.message = message
        self.file = file
        self.line = line
        super().__init__(f"{file}:{line}: {message}")


@dataclass(frozen=True, slots=True)
class ConfigWarning:
    """Something was ignored or looks wrong, but the configuration still loads."""

    message: str
    file: str = "<config>"
    line: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


def config_error(config: QuickikeConfig, key: str, message: str) -> ConfigError:
    """A ConfigError about ``key`` of a loaded configuration, at the ``file:line`` it was set
    (or, for a key that was not set, where its section is)."""
    origin = config.origin(key) or config.origin(key.rpartition(".")[0]) or ""
    file, _, line = origin.rpartition(":")
    return ConfigError(f"{key}: {message}", file or "<config>", int(line) if line.isdigit() else 0)
