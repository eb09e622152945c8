"""The load generator behind bench/bench_daemon.py, on loopback in one process.

Two daemons (127.0.0.1 initiating, 127.0.0.2 answering) on free unprivileged ports; the
event loop runs until the generator says it is done or a deadline passes.
"""

from __future__ import annotations

import asyncio
import io
import json
import socket
from pathlib import Path

import pytest

from quickike.control.config import load_config
from quickike.daemon.daemon import Daemon, qcd_extensions
from quickike.daemon.loadgen import LoadGenerator, rss_kb
from quickike.engine import events as ev

PSK = "load generator test key, long enough"


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _conf(tmp: Path, name: str, me: str, peer: str, port: int, peer_port: int) -> Path:
    my_id = f"{name}.example"
    peer_id = "cli.example" if name == "srv" else "srv.example"
    state = tmp / name
    state.mkdir()
    text = f"""
quickike {{
    port = {port}
    port_nat_t = {port}
    state_dir = {state}
    cookie_threshold = 0
}}
connections {{
    load {{
        local_addrs = {me}
        remote_addrs = {peer}
        remote_port = {peer_port}
        proposals = aes128gcm16-prfsha256-x25519
        local {{
            auth = psk
            id = {my_id}
        }}
        remote {{
            auth = psk
            id = {peer_id}
        }}
        children {{
            load {{
                local_ts = 10.{1 if name == "cli" else 2}.0.0/16
                remote_ts = 10.{2 if name == "cli" else 1}.0.0/16
                esp_proposals = aes128gcm16
            }}
        }}
    }}
}}
secrets {{
    ike-load {{
        id-a = cli.example
        id-b = srv.example
        secret = "{PSK}"
    }}
}}
"""
    path = state / "quickike.conf"
    path.write_text(text)
    return path


async def _run(tmp: Path, count: int, window: int, cls: type[LoadGenerator] = LoadGenerator
               ) -> tuple[LoadGenerator, Daemon, list[ev.Event]]:
    p_cli, p_srv = _free_port("127.0.0.1"), _free_port("127.0.0.2")
    daemons = []
    for name, me, peer, port, peer_port in (("srv", "127.0.0.2", "127.0.0.1", p_srv, p_cli),
                                            ("cli", "127.0.0.1", "127.0.0.2", p_cli, p_srv)):
        config, _ = load_config(str(_conf(tmp, name, me, peer, port, peer_port)))
        d = Daemon(config, state_dir=str(tmp / name), extensions=qcd_extensions(config, str(tmp / name)),
                   host=me, ipv6=False)
        d.observers.clear()  # no log lines
        daemons.append(d)
    srv, cli = daemons
    seen: list[ev.Event] = []
    srv.observers.append(seen.append)
    out = io.StringIO()
    gen = cls(cli, "load", count, window, report_every=5, out=out)
    cli.observers.append(gen.observe)
    try:
        await srv.start()
        await cli.start()
        await asyncio.wait_for(gen.run(), timeout=30)
    finally:
        cli.close()
        srv.close()
    return gen, srv, seen


def test_sets_up_count_sas_with_initial_contact_only_on_the_first(tmp_path: Path) -> None:
    gen, srv, seen = asyncio.run(_run(tmp_path, count=24, window=6))
    assert (gen.established, gen.failed, gen.started) == (24, 0, 24)
    assert srv.engine is not None
    up = [e for e in seen if isinstance(e, ev.IkeSaUp)]
    assert len(up) == 24
    # every SA the responder set up is still there: no INITIAL_CONTACT after the first
    assert len(srv.engine.sas) == 24
    assert srv.engine.counters["initial-contact-deletes"] == 0
    assert not [e for e in seen if isinstance(e, ev.IkeSaDown)]


def test_progress_lines_are_json_with_counts(tmp_path: Path) -> None:
    gen, _, _ = asyncio.run(_run(tmp_path, count=10, window=3))
    lines = [json.loads(line) for line in gen.out.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert lines[0]["phase"] == "start" and lines[0]["established"] == 0
    assert [rec["established"] for rec in lines[1:]] == [5, 10]
    assert all(rec["rss_kb"] > 0 and rec["failed"] == 0 for rec in lines)


def test_window_bounds_setups_in_flight(tmp_path: Path) -> None:
    peak: list[int] = []

    class Watch(LoadGenerator):
        def refill(self) -> None:
            super().refill()
            peak.append(len(self.in_flight))

    gen, _, _ = asyncio.run(_run(tmp_path, count=20, window=4, cls=Watch))
    assert gen.established == 20
    assert max(peak) == 4
    assert peak[0] == 1  # the first SA goes alone


def test_rss_of_a_missing_process_is_zero() -> None:
    assert rss_kb("self") > 0
    assert rss_kb(2**31 - 1) == 0


@pytest.mark.parametrize("window", [0, -3])
def test_window_is_at_least_one(window: int) -> None:
    gen = LoadGenerator(object(), "load", 5, window)  # type: ignore[arg-type]
    assert gen.window == 1
