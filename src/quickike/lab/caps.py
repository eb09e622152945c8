"""What this machine can do for the lab, each answer with the reason when it cannot.

Tests turn a reason into a skip (developer machine) or a failure (CI), so every check says
exactly what is missing and how to get it rather than just answering no.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import os
import shutil
import struct
import subprocess
from pathlib import Path

CHARON_BINARY = Path("/usr/sbin/charon-systemd")
SWANCTL_BINARY = Path("/usr/sbin/swanctl")
PLUGIN_DIR = Path("/usr/lib/ipsec/plugins")
INSTALL_HINT = "run scripts/install-lab-deps as root"

_TUNSETIFF = 0x400454CA
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000


def missing_root() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth, TUN)"
    return None


@functools.cache
def missing_netns() -> str | None:
    if (reason := missing_root()) is not None:
        return reason
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found ({INSTALL_HINT})"
    probe = subprocess.run(
        ["unshare", "--net", "ip", "link", "show", "lo"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.strip() or probe.returncode}"
    return None


@functools.cache
def missing_tun() -> str | None:
    """Really creates a (non-persistent) TUN device: the node can exist while the ioctl fails."""
    if (reason := missing_root()) is not None:
        return reason
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR)
    except OSError as exc:
        return f"cannot open /dev/net/tun: {exc}"
    try:
        name = f"qi{os.getpid()}t".encode()[:15]
        fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH", name, _IFF_TUN | _IFF_NO_PI))
    except OSError as exc:
        return f"cannot create a TUN device: {exc}"
    finally:
        os.close(fd)  # the device disappears with the descriptor
    return None


@functools.cache
def missing_strongswan() -> str | None:
    for binary in (CHARON_BINARY, SWANCTL_BINARY):
        if not binary.exists():
            return f"{binary} not found ({INSTALL_HINT})"
    for plugin in ("vici", "kernel-libipsec", "openssl", "socket-default", "kernel-netlink"):
        if not (PLUGIN_DIR / f"libstrongswan-{plugin}.so").exists():
            return f"strongSwan plugin {plugin!r} not installed ({INSTALL_HINT})"
    if importlib.util.find_spec("vici") is None:
        return "Python package `vici` missing (pip install vici, or pip install -e '.[test]')"
    return None


def have_root() -> bool:
    return missing_root() is None


def have_netns() -> bool:
    return missing_netns() is None


def have_tun() -> bool:
    return missing_tun() is None


def have_strongswan() -> bool:
    return missing_strongswan() is None
