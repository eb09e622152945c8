"""Where the control socket lives, shared by the server and the (asyncio-free) client."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SOCKET_NAME = "quickike.vici"


def default_socket_path(state_dir: str | os.PathLike[str]) -> Path:
    return Path(state_dir) / DEFAULT_SOCKET_NAME


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
