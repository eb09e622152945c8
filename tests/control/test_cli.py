"""``quickike status|initiate|terminate|rekey|qcd`` against a running daemon, and without one."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from .gateways import Pair, established, quickike_cli, wait_until


def test_cli_drives_a_running_daemon(pair: Pair) -> None:
    a, b = pair
    a.start()
    b.start()
    sock = ["--socket", a.uri]

    result = quickike_cli("status", *sock)
    assert (result.returncode, result.stdout, result.stderr) == (0, "no IKE SAs\n", "")

    result = quickike_cli("initiate", "--child", "net", *sock)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[0] == "[IKE] initiating IKE_SA site[1] to 127.0.0.2"
    assert out[-1] == "initiate completed successfully"

    # the configuration file names the socket just as well as --socket does
    result = quickike_cli("status", "-c", str(a.conf_path))
    assert result.returncode == 0, result.stderr
    text = result.stdout.splitlines()
    head = re.fullmatch(r"site: #1, ESTABLISHED, IKEv2, ([0-9a-f]{16})_i\* ([0-9a-f]{16})_r",
                        text[0])
    assert head is not None, text
    assert text[1:4] == [
        f"  local  'gw-a.example' @ 127.0.0.1[{a.port}]",
        f"  remote 'gw-b.example' @ 127.0.0.2[{b.port}]",
        "  AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519",
    ]
    assert "  quick crash detection (RFC 6290) on" in text
    assert "  net: #1, reqid 1, INSTALLED, TUNNEL, ESP:AES_GCM_16-128/ESN" in text
    assert re.search(r"^    in  [0-9a-f]{8}, +0 bytes, +0 packets$", result.stdout, re.M)

    result = quickike_cli("status", "--json", *sock)
    data = json.loads(result.stdout)
    assert len(data) == 1
    sa = data[0]
    assert sa["name"] == "site" and sa["uniqueid"] == 1 and sa["initiator"] is True
    assert (sa["initiator-spi"], sa["responder-spi"]) == (head[1], head[2])
    assert sa["local-port"] == a.port and isinstance(sa["established"], int)
    [child] = sa["child-sas"]
    assert child["name"] == "net" and child["state"] == "INSTALLED"
    assert child["bytes-in"] == 0 and child["local-ts"] == ["10.1.0.0/16"]

    # JSON log lines carry the IKE SA's id and SPIs, also for CHILD SA events
    records = a.log_records()
    ike_up = next(r for r in records if r.get("event") == "ike-up")
    child_up = next(r for r in records if r.get("event") == "child-up")
    assert (ike_up["spi_i"], ike_up["spi_r"]) == (head[1], head[2])
    assert child_up["ike_uid"] == ike_up["ike_uid"] == 1
    assert (child_up["spi_i"], child_up["spi_r"]) == (head[1], head[2])

    result = quickike_cli("qcd", "show", *sock)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("QCD: enabled (single, token method spi-address, 32 octets")
    assert re.fullmatch(r"secret: generation 1, fingerprint [0-9a-f]{16}", lines[1])
    assert re.fullmatch(rf"  site#1 ESTABLISHED {head[1]}_i {head[2]}_r 127\.0\.0\.2: "
                        r"peer token held \(1\), our token given \(generation 1\)", lines[2])
    fingerprint = lines[1].rsplit(" ", 1)[1]

    result = quickike_cli("qcd", "rotate", *sock)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"QCD secret rotated: generation 2, fingerprint [0-9a-f]{16} "
                        r"\(generations kept: 1 2\)\n", result.stdout)
    shown = json.loads(quickike_cli("qcd", "show", "--json", *sock).stdout)
    assert shown["generation"] == "2" and shown["fingerprint"] != fingerprint
    assert set(shown["generations"]) == {"1", "2"}
    # the secret lives in the state directory and survives the daemon
    assert (a.state / "qcd.secret").exists()

    result = quickike_cli("rekey", "--ike", "site", *sock)
    assert (result.returncode, result.stdout) == (0, "rekeying started for 1 SA(s)\n")
    wait_until(lambda: quickike_cli("status", *sock).stdout.startswith("site: #2, ESTABLISHED"),
               what="the rekeyed IKE SA")

    result = quickike_cli("terminate", "--child", "net", *sock)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "terminate completed successfully"
    assert not established(a)
    result = quickike_cli("terminate", "--ike", "site", *sock)
    assert result.returncode == 0, result.stderr
    assert quickike_cli("status", *sock).stdout == "no IKE SAs\n"

    # failures of a running daemon: its reason, status 1, no traceback
    result = quickike_cli("initiate", "--child", "nope", *sock)
    assert result.returncode == 1
    assert result.stderr == ("quickike: initiate failed: CHILD_SA config 'nope' not found\n")
    result = quickike_cli("terminate", "--ike", "site", *sock)
    assert result.returncode == 1
    assert result.stderr == ("quickike: terminate failed: no matching SAs to terminate found\n")
    result = quickike_cli("rekey", *sock)
    assert result.returncode == 1 and "needs --ike" in result.stderr


@pytest.mark.parametrize("command", [
    ["status"], ["status", "--json"], ["initiate", "--child", "net"],
    ["terminate", "--ike", "site"], ["rekey", "--ike", "site"], ["qcd", "show"],
    ["qcd", "rotate"],
])
def test_cli_without_a_daemon(workdir: Path, command: list[str]) -> None:
    missing = workdir / "nothing.vici"
    result = quickike_cli(*command, "--socket", str(missing))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"quickike: no control socket at {missing}: is the quickike daemon "
                             "running? (name the socket with --socket, --config or "
                             "$QUICKIKE_SOCKET)\n")


def test_cli_with_a_stale_socket_or_a_state_dir(workdir: Path) -> None:
    stale = workdir / "quickike.vici"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # a daemon that was killed leaves its socket file behind
    result = quickike_cli("status", "--state-dir", str(workdir))
    assert result.returncode == 1
    assert "refuses connections: the daemon is not running" in result.stderr
    assert "Traceback" not in result.stderr
    result = quickike_cli("status", env={"QUICKIKE_SOCKET": f"unix://{stale}"})
    assert result.returncode == 1 and "refuses connections" in result.stderr
    # the command line wins over the environment
    other = workdir / "other"
    result = quickike_cli("status", "--state-dir", str(other), env={"QUICKIKE_SOCKET": f"unix://{stale}"})
    assert result.returncode == 1 and str(other / "quickike.vici") in result.stderr
    result = quickike_cli("status", "--socket", "tcp://127.0.0.1:4502")
    assert result.returncode == 1
    assert result.stderr == ("quickike: unsupported VICI URI scheme 'tcp' "
                             "(only unix:// is served)\n")
    result = quickike_cli("status", "-c", str(workdir / "missing.conf"))
    assert result.returncode == 1 and result.stderr.startswith("quickike: cannot read ")
