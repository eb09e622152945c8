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
        help="show a tunnel come up, rekey and survive a crash",
        description="Two gateways on loopback: IKE and CHILD SA up, rekey, crash, recovery.",
    )
    d.add_argument("--json", action="store_true", help="print the timeline as JSON")
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

    return run_demo(json_output=args.json)
