"""``quickike run`` and ``quickike demo``."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run the IKE daemon", description="Run the quickike IKE daemon.")
    p.add_argument("-c", "--config", required=True, help="swanctl.conf-style configuration file")
    p.add_argument(
        "--state-dir",
        help="directory for state that survives restarts (QCD secret) and the control socket",
    )
    p.add_argument("--keylog", help="append IKE keys to FILE in Wireshark's decryption-table form")
    p.add_argument("--log-format", choices=("text", "json"), help="log line format")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="log level")
    p.set_defaults(func=_run)

    d = sub.add_parser(
        "demo",
        help="show a tunnel survive a gateway crash, with and without QCD",
        description=(
            "Two gateways, a ping every 10 ms through their tunnel, one gateway killed and "
            "restarted: the timeline of the recovery with Quick Crash Detection and without. "
            "As root with TUN: network namespaces and two `quickike run` daemons; otherwise "
            "both daemons in this process on loopback."
        ),
    )
    d.add_argument("--json", action="store_true", help="print the timelines as JSON")
    d.add_argument("--png", default="out/quickike-demo.png", metavar="PATH",
                   help="where to write the timeline picture (default: %(default)s; '' for none)")
    d.add_argument("--loopback", action="store_true",
                   help="the in-process version even when namespaces are available")
    d.set_defaults(func=_demo)


def _run(args: argparse.Namespace) -> int:
    from .daemon import run_daemon

    return run_daemon(
        args.config,
        state_dir=args.state_dir,
        keylog=args.keylog,
        log_format=args.log_format,
        log_level=args.log_level,
    )


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(json_output=args.json, png=args.png or None, loopback=args.loopback)
