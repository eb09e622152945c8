"""Where the control socket lives, shared by the server and the (asyncio-free) client."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ...engine.config import QuickikeConfig

DEFAULT_SOCKET_NAME = "quickike.vici"


def default_socket_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / DEFAULT_SOCKET_NAME


def default_socket_uri(state_dir: str) -> str:
    """``unix://<state_dir>/quickike.vici``: where the socket is when nothing names it."""
    return f"unix://{os.path.join(state_dir, DEFAULT_SOCKET_NAME)}"


def vici_socket_of(config: QuickikeConfig, state_dir: str) -> str:
    """The control socket's URI: as configured, else ``<state_dir>/quickike.vici``.

    The loader fills in a default from the file's state_dir; when the file
    does not name the socket, the state directory given on the command line
    (``--state-dir``) wins, so the two always stay together.
    """
    if config.origin("quickike.vici_socket") is not None:
        return config.settings.vici_socket
    return default_socket_uri(state_dir)


def socket_path_from_uri(uri: str | os.PathLike[str]) -> Path:
    """Accept charon's URI form (``unix:///run/x.vici``) or a plain path."""
    text = os.fspath(uri)
    if "://" not in text:
        return Path(text)
    scheme, _, rest = text.partition("://")
    if scheme != "unix":
        raise ValueError(f"unsupported VICI URI scheme {scheme!r} (only unix:// is served)")
    if not rest:
        raise ValueError(f"VICI URI {text!r} has no path")
    return Path(rest)
