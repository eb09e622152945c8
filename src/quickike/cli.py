"""The ``quickike`` command: one sub-command per module, loaded on demand.

Each sub-command module exposes ``register(subparsers)`` that adds its parser
and sets ``func`` (taking the parsed namespace, returning an exit status), so
the daemon's start-up does not pay for importing the simulator or plotting.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__

#: modules providing sub-commands, in the order ``--help`` lists them
COMMAND_MODULES = (
    "quickike.daemon.cli",
    "quickike.control.cli",
    "quickike.tools.decode",
    "quickike.sim.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quickike",
        description="IKEv2 VPN gateway with Quick Crash Detection (RFC 6290)",
    )
    parser.add_argument("--version", action="version", version=f"quickike {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
