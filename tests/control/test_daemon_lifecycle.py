"""``quickike run``'s control plane at start and stop: refusals, socket ownership, clean exit."""

from __future__ import annotations

import subprocess
import sys

from .gateways import Pair, established, quickike_cli, wait_until


def run_once(conf: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quickike", "run", "-c", conf],
                          capture_output=True, text=True, timeout=timeout)


def test_second_daemon_and_bad_qcd_options_are_refused(pair: Pair) -> None:
    a, b = pair
    a.start()
    # a second daemon on the same state directory must not steal the running one's socket
    result = run_once(str(a.conf_path))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        f"quickike: {a.socket_path} is in use by a running daemon")
    assert quickike_cli("status", "--socket", a.uri).returncode == 0

    b.settings = "    qcd {\n        token_method = bogus\n    }"
    b.conf_path.write_text(b.conf_text())
    result = run_once(str(b.conf_path))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "quickike: configuration error: quickike.qcd.token_method: 'bogus' is not one of: "
        "spi, spi-address")
    b.settings = ""
    b.conn = "        qcd_options {\n            accept_delay = forever\n        }"
    b.conf_path.write_text(b.conf_text())
    result = run_once(str(b.conf_path))
    assert result.returncode == 1
    assert "QCD cannot start: connections.site.qcd_options.accept_delay" in result.stderr
    assert "Traceback" not in result.stderr
    assert not b.socket_path.exists()


def test_sigterm_deletes_tunnels_and_removes_the_socket(pair: Pair) -> None:
    a, b = pair
    a.child = "                start_action = start"
    b.start()
    a.start()
    # A too: B is up before its IKE_AUTH answer reaches A, and A only deletes what it holds
    wait_until(lambda: established(b) and established(a), what="the tunnel on both sides")
    assert a.stop() == 0
    assert not a.socket_path.exists()
    wait_until(lambda: not b.sas(), what="B to receive A's Delete")
    down = [r for r in b.log_records() if r.get("event") == "ike-down"]
    assert [r["reason"] for r in down] == ["peer-deleted"]
