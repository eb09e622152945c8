"""Operator commands over the control socket: ``quickike status``, ``initiate``,
``terminate``, ``rekey`` and ``qcd show|rotate``.

They speak VICI like ``swanctl`` does, so what they show is what swanctl
shows, and they work the same against a local or a containerised daemon
(point ``--socket`` at its socket). A daemon that is not running, refuses a
command or goes away is one clear line on stderr and exit status 1, never a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from ..engine.config import DEFAULT_STATE_DIR
from .vici.address import default_socket_uri, vici_socket_of
from .vici.client import (
    CommandFailed,
    ConnectionLost,
    DaemonNotRunning,
    UnknownCommand,
    ViciClient,
)
from .vici.protocol import TextElement, TextSection, ViciError

#: environment variable naming the control socket (a path or a unix:// URI)
SOCKET_ENV = "QUICKIKE_SOCKET"
DEFAULT_SOCKET = default_socket_uri(DEFAULT_STATE_DIR)

_NUMERIC = frozenset({
    "uniqueid", "version", "local-port", "remote-port", "encr-keysize", "integ-keysize",
    "established", "rekey-time", "reauth-time", "reqid", "bytes-in", "packets-in", "use-in",
    "bytes-out", "packets-out", "use-out", "life-time", "install-time",
})
_FLAGS = frozenset({"initiator", "nat-local", "nat-remote", "nat-fake", "nat-any", "encap",
                    "esn"})


class CliError(Exception):
    """One line for stderr; the command exits with status 1."""


# ---------------------------------------------------------------------- argument parsing


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("control socket")
    where.add_argument(
        "--socket", metavar="URI",
        help=f"the daemon's control socket, a path or unix:// URI (default: ${SOCKET_ENV}, "
             f"else the one named by --config, else {DEFAULT_SOCKET})")
    where.add_argument("-c", "--config", metavar="FILE",
                       help="read the socket's location from the daemon's configuration file")
    where.add_argument("--state-dir", metavar="DIR",
                       help="the daemon's --state-dir, if it was started with one")
    return common


def _selectors(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ike", metavar="NAME", help="IKE SAs of connection NAME")
    p.add_argument("--ike-id", metavar="ID", type=int, help="the IKE SA with unique id ID")
    p.add_argument("--child", metavar="NAME", help="CHILD SAs named NAME")
    p.add_argument("--child-id", metavar="ID", type=int, help="the CHILD SA with unique id ID")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    common = _common()
    p = sub.add_parser(
        "status", parents=[common], help="list IKE and CHILD SAs (like swanctl --list-sas)",
        description="List the daemon's IKE SAs and their CHILD SAs.")
    p.add_argument("--ike", metavar="NAME", help="only IKE SAs of connection NAME")
    p.add_argument("--ike-id", metavar="ID", type=int, help="only the IKE SA with this id")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_status)

    p = sub.add_parser(
        "initiate", parents=[common], help="bring up a connection or CHILD SA",
        description="Initiate a CHILD SA (and its IKE SA if needed), or an IKE SA, and "
                    "wait until it is up or failed.")
    p.add_argument("--child", metavar="NAME", help="the CHILD SA configuration to initiate")
    p.add_argument("--ike", metavar="NAME",
                   help="the connection (alone: its IKE SA and first CHILD SA)")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=0.0,
                   help="give up waiting after SECONDS (0: wait for the outcome)")
    p.set_defaults(func=_initiate)

    p = sub.add_parser(
        "terminate", parents=[common], help="delete IKE or CHILD SAs",
        description="Delete the selected SAs with a Delete exchange and wait until done.")
    _selectors(p)
    p.add_argument("--force", action="store_true",
                   help="forget IKE SAs at once, without waiting for the peer")
    p.add_argument("--timeout", metavar="SECONDS", type=float, default=0.0,
                   help="give up waiting after SECONDS (0: wait for the outcome)")
    p.set_defaults(func=_terminate)

    p = sub.add_parser(
        "rekey", parents=[common], help="rekey (or reauthenticate) IKE or CHILD SAs",
        description="Start rekeying the selected SAs; returns once it is scheduled.")
    _selectors(p)
    p.add_argument("--reauth", action="store_true",
                   help="reauthenticate IKE SAs (make-before-break) instead of rekeying")
    p.set_defaults(func=_rekey)

    p = sub.add_parser(
        "qcd", help="Quick Crash Detection: show state, rotate the token secret",
        description="Quick Crash Detection (RFC 6290) on the running daemon.")
    qsub = p.add_subparsers(dest="qcd_command", metavar="ACTION", required=True)
    q = qsub.add_parser("show", parents=[common], help="QCD settings, secret generation, tokens")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=_qcd_show)
    q = qsub.add_parser("rotate", parents=[common],
                        help="start a new token secret generation (old tokens stay valid)")
    q.set_defaults(func=_qcd_rotate)


# ---------------------------------------------------------------------- plumbing


def socket_target(args: argparse.Namespace) -> str:
    """Where the daemon listens: --socket, --config/--state-dir, $QUICKIKE_SOCKET, default.

    What is on the command line wins over the environment.
    """
    if getattr(args, "socket", None):
        return str(args.socket)
    config_path = getattr(args, "config", None)
    state_dir = getattr(args, "state_dir", None)
    env = os.environ.get(SOCKET_ENV)
    if env and not config_path and not state_dir:
        return env
    if config_path:
        from .config import ConfigError, load_config

        try:
            config, _ = load_config(config_path)
        except ConfigError as exc:
            # a file that cannot be read at all has no line to point at
            raise CliError(exc.message if exc.line == 0 else f"configuration error: {exc}") from None
        except OSError as exc:
            raise CliError(f"cannot read {config_path}: {exc.strerror or exc}") from None
        return vici_socket_of(config, state_dir or config.settings.state_dir)
    if state_dir:
        return default_socket_uri(state_dir)
    return DEFAULT_SOCKET


def _run(args: argparse.Namespace, action: Callable[[ViciClient], int],
         timeout: float | None = 10.0) -> int:
    try:
        target = socket_target(args)
        try:
            client = ViciClient(target, timeout=timeout)
        except ValueError as exc:  # not a unix:// URI
            raise CliError(str(exc)) from None
        with client:
            return action(client)
    except CliError as exc:
        return _fail(str(exc))
    except DaemonNotRunning as exc:
        return _fail(f"{exc} (name the socket with --socket, --config or ${SOCKET_ENV})")
    except CommandFailed as exc:
        return _fail(f"{exc.command} failed: {exc.errmsg}")
    except UnknownCommand as exc:
        return _fail(f"{exc}: is this a quickike daemon?")
    except ConnectionLost as exc:
        return _fail(f"lost the connection to the daemon: {exc}")
    except ViciError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # our stdout went away (``quickike status | head``): not the daemon's fault
        with contextlib.suppress(OSError):
            sys.stdout.close()
        return 0
    except OSError as exc:
        return _fail(f"control socket error: {exc.strerror or exc}")


def _fail(message: str) -> int:
    print(f"quickike: {message}", file=sys.stderr)
    return 1


def _text(section: Mapping[str, TextElement], key: str, default: str = "") -> str:
    value = section.get(key)
    return value if isinstance(value, str) else default


def _sub(section: Mapping[str, TextElement], key: str) -> TextSection:
    value = section.get(key)
    return value if isinstance(value, dict) else {}


def _items(section: Mapping[str, TextElement], key: str) -> list[str]:
    value = section.get(key)
    return value if isinstance(value, list) else []


# ---------------------------------------------------------------------- status


def format_sas(sas: Sequence[TextSection], out: TextIO) -> None:
    """IKE and CHILD SAs the way ``swanctl --list-sas`` prints them."""
    for message in sas:
        for name, body in message.items():
            if isinstance(body, dict):
                _format_ike(name, body, out)


def _alg(body: Mapping[str, TextElement], key: str) -> str | None:
    alg = _text(body, f"{key}-alg")
    if not alg:
        return None
    size = _text(body, f"{key}-keysize")
    return f"{alg}-{size}" if size else alg


def _format_ike(name: str, ike: TextSection, out: TextIO) -> None:
    initiator = _text(ike, "initiator") == "yes"
    out.write(
        f"{name}: #{_text(ike, 'uniqueid')}, {_text(ike, 'state')}, IKEv{_text(ike, 'version')}, "
        f"{_text(ike, 'initiator-spi')}_i{'*' if initiator else ''} "
        f"{_text(ike, 'responder-spi')}_r{'' if initiator else '*'}\n")
    out.write(f"  local  '{_text(ike, 'local-id')}' @ {_text(ike, 'local-host')}"
              f"[{_text(ike, 'local-port')}]\n")
    out.write(f"  remote '{_text(ike, 'remote-id')}' @ {_text(ike, 'remote-host')}"
              f"[{_text(ike, 'remote-port')}]\n")
    algs = [a for a in (_alg(ike, "encr"), _alg(ike, "integ"), _text(ike, "prf-alg"),
                        _text(ike, "dh-group")) if a]
    if algs:
        out.write(f"  {'/'.join(algs)}\n")
    established = _text(ike, "established")
    if established:
        line = f"  established {established}s ago"
        if _text(ike, "rekey-time"):
            line += f", rekeying in {_text(ike, 'rekey-time')}s"
        if _text(ike, "reauth-time"):
            line += f", reauth in {_text(ike, 'reauth-time')}s"
        out.write(line + "\n")
    if _text(ike, "qcd") == "yes":
        out.write("  quick crash detection (RFC 6290) on\n")
    for key in ("queued", "active", "passive"):
        tasks = _items(ike, f"tasks-{key}")
        if tasks:
            out.write(f"  {key}:  {' '.join(tasks)}\n")
    for child in _sub(ike, "child-sas").values():
        if isinstance(child, dict):
            _format_child(child, out)


def _format_child(child: TextSection, out: TextIO) -> None:
    mode = _text(child, "mode") + ("-in-UDP" if _text(child, "encap") == "yes" else "")
    algs = [a for a in (_alg(child, "encr"), _alg(child, "integ"), _text(child, "dh-group"))
            if a]
    if _text(child, "esn") == "1":
        algs.append("ESN")
    head = (f"  {_text(child, 'name')}: #{_text(child, 'uniqueid')}, reqid {_text(child, 'reqid')}, "
            f"{_text(child, 'state')}, {mode}")
    if _text(child, "protocol"):
        head += f", {_text(child, 'protocol')}:{'/'.join(algs)}"
    out.write(head + "\n")
    if _text(child, "spi-in"):
        line = f"    installed {_text(child, 'install-time')}s ago"
        if _text(child, "rekey-time"):
            line += f", rekeying in {_text(child, 'rekey-time')}s"
        if _text(child, "life-time"):
            line += f", expires in {_text(child, 'life-time')}s"
        out.write(line + "\n")
        for direction, label in (("in", "in "), ("out", "out")):
            line = (f"    {label} {_text(child, f'spi-{direction}')}, "
                    f"{_text(child, f'bytes-{direction}'):>6} bytes, "
                    f"{_text(child, f'packets-{direction}'):>5} packets")
            if _text(child, f"use-{direction}"):
                line += f", {_text(child, f'use-{direction}'):>5}s ago"
            out.write(line + "\n")
    out.write(f"    local  {' '.join(_items(child, 'local-ts'))}\n")
    out.write(f"    remote {' '.join(_items(child, 'remote-ts'))}\n")


def _typed(key: str, value: TextElement) -> Any:
    """VICI text made JSON-friendly: numbers as numbers, flags as booleans."""
    if isinstance(value, dict):
        return {k: _typed(k, v) for k, v in value.items()}
    if isinstance(value, list):
        return list(value)
    if key in _NUMERIC and value.isdigit():
        return int(value)
    if key in _FLAGS:
        return value in ("yes", "1")
    return value


def sas_json(sas: Sequence[TextSection]) -> list[dict[str, Any]]:
    """One object per IKE SA, with ``name`` and a ``child-sas`` list."""
    result: list[dict[str, Any]] = []
    for message in sas:
        for name, body in message.items():
            if not isinstance(body, dict):
                continue
            ike: dict[str, Any] = {"name": name}
            for key, value in body.items():
                if key != "child-sas":
                    ike[key] = _typed(key, value)
            ike["child-sas"] = [
                {k: _typed(k, v) for k, v in child.items()}
                for child in _sub(body, "child-sas").values() if isinstance(child, dict)
            ]
            result.append(ike)
    return result


def _status(args: argparse.Namespace) -> int:
    def action(client: ViciClient) -> int:
        sas = client.list_sas(ike=args.ike, ike_id=args.ike_id)
        if args.json:
            json.dump(sas_json(sas), sys.stdout, indent=2)
            sys.stdout.write("\n")
        elif sas:
            format_sas(sas, sys.stdout)
        else:
            print("no IKE SAs")
        return 0

    return _run(args, action)


# ---------------------------------------------------------------------- control


def _print_log(record: TextSection) -> None:
    print(f"[{_text(record, 'group')}] {_text(record, 'msg')}", flush=True)


def _timeouts(seconds: float) -> tuple[int, float | None]:
    """(VICI timeout in ms, socket timeout): the daemon gives up first, we a little later."""
    if seconds <= 0:
        return 0, None
    return int(seconds * 1000), seconds + 10.0


def _initiate(args: argparse.Namespace) -> int:
    if not args.child and not args.ike:
        return _fail("initiate needs --child NAME or --ike NAME")
    timeout_ms, socket_timeout = _timeouts(args.timeout)

    def action(client: ViciClient) -> int:
        client.initiate(args.child, args.ike, timeout_ms=timeout_ms, on_log=_print_log,
                        socket_timeout=socket_timeout)
        print("initiate completed successfully")
        return 0

    return _run(args, action)


def _has_selector(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.ike, args.ike_id, args.child, args.child_id))


def _terminate(args: argparse.Namespace) -> int:
    if not _has_selector(args):
        return _fail("terminate needs --ike, --ike-id, --child or --child-id")
    timeout_ms, socket_timeout = _timeouts(args.timeout)

    def action(client: ViciClient) -> int:
        client.terminate(ike=args.ike, child=args.child, ike_id=args.ike_id,
                         child_id=args.child_id, force=args.force, timeout_ms=timeout_ms,
                         on_log=_print_log, socket_timeout=socket_timeout)
        print("terminate completed successfully")
        return 0

    return _run(args, action)


def _rekey(args: argparse.Namespace) -> int:
    if not _has_selector(args):
        return _fail("rekey needs --ike, --ike-id, --child or --child-id")

    def action(client: ViciClient) -> int:
        reply = client.rekey(ike=args.ike, child=args.child, ike_id=args.ike_id,
                             child_id=args.child_id, reauth=args.reauth)
        what = "reauthentication" if args.reauth else "rekeying"
        print(f"{what} started for {_text(reply, 'matches', '0')} SA(s)")
        return 0

    return _run(args, action)


# ---------------------------------------------------------------------- QCD


def format_qcd(reply: TextSection, out: TextIO) -> None:
    if _text(reply, "enabled") != "yes":
        out.write("QCD: disabled\n")
        return
    spi_map = ", CHILD SPI map" if _text(reply, "child_spi_map") == "yes" else ""
    out.write(f"QCD: enabled ({_text(reply, 'deployment')}, token method "
              f"{_text(reply, 'token_method')}, {_text(reply, 'token_length')} octets{spi_map})\n")
    kept = len(_sub(reply, "generations"))
    extra = f" (+{kept - 1} previous kept)" if kept > 1 else ""
    out.write(f"secret: generation {_text(reply, 'generation')}, fingerprint "
              f"{_text(reply, 'fingerprint')}{extra}\n")
    for sa in _sub(reply, "sas").values():
        if not isinstance(sa, dict):
            continue
        held = (f"peer token held ({_text(sa, 'tokens_held')})"
                if _text(sa, "peer_token_held") == "yes" else "no peer token")
        given = (f"our token given (generation {_text(sa, 'token_given_generation')})"
                 if _text(sa, "token_given_generation") else "no token given")
        state = f", {_text(sa, 'qcd_state')}" if _text(sa, "qcd_state") else ""
        out.write(f"  {_text(sa, 'name')}#{_text(sa, 'ike_uid')} {_text(sa, 'state')} "
                  f"{_text(sa, 'spi_i')}_i {_text(sa, 'spi_r')}_r {_text(sa, 'remote')}: "
                  f"{held}, {given}{state}\n")


def _qcd_show(args: argparse.Namespace) -> int:
    def action(client: ViciClient) -> int:
        reply = client.qcd_show()
        if args.json:
            json.dump(reply, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            format_qcd(reply, sys.stdout)
        return 0

    return _run(args, action)


def _qcd_rotate(args: argparse.Namespace) -> int:
    def action(client: ViciClient) -> int:
        reply = client.qcd_rotate()
        kept = " ".join(_items(reply, "kept"))
        print(f"QCD secret rotated: generation {_text(reply, 'generation')}, fingerprint "
              f"{_text(reply, 'fingerprint')}" + (f" (generations kept: {kept})" if kept else ""))
        return 0

    return _run(args, action)
