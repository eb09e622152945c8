"""strongSwan's real ``swanctl`` driving a running ``quickike run`` over its control socket."""

from __future__ import annotations

import re
import socket
import stat

import pytest

from quickike import __version__

from .gateways import EXTRA_B, EXTRA_SECRET_B, PSK, Pair, Swanctl, established, wait_until

pytestmark = pytest.mark.strongswan

SWANCTL_CONF_A = """\
connections {{
    extra {{
        local_addrs = 127.0.0.1
        remote_addrs = 127.0.0.2
        remote_port = {port}
        version = 2
        proposals = aes256gcm16-prfsha384-ecp256
        local {{
            auth = psk
            id = extra-a.example
        }}
        remote {{
            auth = psk
            id = extra-b.example
        }}
        children {{
            lan {{
                local_ts = 10.5.0.0/16
                remote_ts = 10.6.0.0/16
                esp_proposals = aes256gcm16
                rekey_time = 30m
            }}
        }}
    }}
}}
secrets {{
    ike-extra {{
        id-1 = extra-a.example
        id-2 = extra-b.example
        secret = 0x706f7765726564206279207377616e63746c
    }}
}}
"""


def lines(text: str) -> list[str]:
    return text.splitlines()


def test_swanctl_drives_a_running_daemon(pair: Pair, swanctl: Swanctl) -> None:
    a, b = pair
    b.extra_conns, b.extra_secrets = EXTRA_B, EXTRA_SECRET_B
    a.start()
    b.start()
    assert stat.S_IMODE(a.socket_path.stat().st_mode) == 0o600

    out = swanctl.run(a, "--version", "--daemon").stdout.strip()
    assert re.fullmatch(rf"strongSwan {re.escape(__version__)} quickike \(Linux, \S+, \S+\)", out)
    stats = lines(swanctl.run(a, "--stats").stdout)
    assert stats[0].startswith("uptime: ")
    assert "IKE_SAs: 0 total, 0 half-open" in stats
    assert stats[-1] == "loaded plugins: quickike-engine qcd vici"
    assert lines(swanctl.run(a, "--list-conns").stdout) == [
        "site: IKEv2, no reauthentication, rekeying every 14400s",
        "  local:  127.0.0.1",
        "  remote: 127.0.0.2",
        "  local pre-shared key authentication:",
        "    id: gw-a.example",
        "  remote pre-shared key authentication:",
        "    id: gw-b.example",
        "  net: TUNNEL, rekeying every 3600s",
        "    local:  10.1.0.0/16",
        "    remote: 10.2.0.0/16",
    ]
    assert swanctl.run(a, "--list-sas").stdout == ""

    result = swanctl.run(a, "--initiate", "--child", "net")
    out = lines(result.stdout)
    assert out[0] == "[IKE] initiating IKE_SA site[1] to 127.0.0.2"
    assert out[1] == ("[IKE] IKE_SA site[1] established between "
                      "127.0.0.1[gw-a.example]...127.0.0.2[gw-b.example]")
    assert re.fullmatch(r"\[CHD\] CHILD_SA net\{1\} established with SPIs [0-9a-f]{8}_i "
                        r"[0-9a-f]{8}_o and TS 10\.1\.0\.0/16 === 10\.2\.0\.0/16", out[2])
    assert out[-1] == "initiate completed successfully"

    listed = lines(swanctl.run(a, "--list-sas").stdout)
    head = re.fullmatch(r"site: #1, ESTABLISHED, IKEv2, ([0-9a-f]{16})_i\* ([0-9a-f]{16})_r",
                        listed[0])
    assert head is not None, listed
    assert listed[1] == f"  local  'gw-a.example' @ 127.0.0.1[{a.port}]"
    assert listed[2] == f"  remote 'gw-b.example' @ 127.0.0.2[{b.port}]"
    assert listed[3] == "  AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519"
    assert re.fullmatch(r"  established \ds ago, rekeying in \d+s", listed[4])
    assert listed[5] == "  net: #1, reqid 1, INSTALLED, TUNNEL, ESP:AES_GCM_16-128/ESN"
    assert listed[-2:] == ["    local  10.1.0.0/16", "    remote 10.2.0.0/16"]
    # the responder lists the same SA under the same SPIs, its own role marked
    b_head = lines(swanctl.run(b, "--list-sas").stdout)[0]
    assert b_head == f"site: #1, ESTABLISHED, IKEv2, {head[1]}_i {head[2]}_r*"

    # a malformed packet costs that client its connection, nobody else's
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bad:
        bad.connect(str(a.socket_path))
        bad.sendall(b"\x00\x00\x00\x05\x09garbage")
        bad.settimeout(5)
        assert bad.recv(100) == b""
    assert lines(swanctl.run(a, "--list-sas", "--ike", "site").stdout)[0].startswith("site: #1")

    assert lines(swanctl.run(a, "--rekey", "--child", "net").stdout) == [
        "rekey completed successfully"]
    wait_until(lambda: "  net: #2, reqid 1, INSTALLED" in swanctl.run(a, "--list-sas").stdout,
               what="the rekeyed CHILD SA")
    assert lines(swanctl.run(a, "--rekey", "--ike", "site").stdout) == [
        "rekey completed successfully"]
    wait_until(lambda: swanctl.run(a, "--list-sas").stdout.startswith("site: #2, ESTABLISHED"),
               what="the rekeyed IKE SA")

    result = swanctl.run(a, "--terminate", "--ike", "site")
    assert lines(result.stdout) == [
        "[IKE] deleting IKE_SA site[2] between 127.0.0.1[gw-a.example]...127.0.0.2[gw-b.example]",
        "[IKE] IKE_SA site[2] deleted",
        "terminate completed successfully",
    ]
    assert swanctl.run(a, "--list-sas").stdout == ""
    wait_until(lambda: swanctl.run(b, "--list-sas").stdout == "", what="B to see the delete")

    result = swanctl.run(a, "--initiate", "--child", "nope", check=False)
    assert result.returncode != 0
    assert result.stderr.strip() == "initiate failed: CHILD_SA config 'nope' not found"
    result = swanctl.run(a, "--terminate", "--ike", "site", check=False)
    assert result.stderr.strip() == "terminate failed: no matching SAs to terminate found"


def test_swanctl_configures_quickike(pair: Pair, swanctl: Swanctl) -> None:
    """``swanctl --load-all --file`` pushes connections and secrets quickike then uses."""
    a, b = pair
    b.extra_conns, b.extra_secrets = EXTRA_B, EXTRA_SECRET_B
    a.start()
    b.start()
    conf = swanctl.write_conf(SWANCTL_CONF_A.format(port=b.port))
    assert lines(swanctl.run(a, "--load-all", "--file", str(conf)).stdout) == [
        "loaded ike secret 'ike-extra'",
        "no authorities found, 0 unloaded",
        "no pools found, 0 unloaded",
        "loaded connection 'extra'",
        "successfully loaded 1 connections, 0 unloaded",
    ]
    listed = lines(swanctl.run(a, "--list-conns").stdout)
    start = listed.index("extra: IKEv2, no reauthentication, rekeying every 14400s")
    assert listed[start:start + 10] == [
        "extra: IKEv2, no reauthentication, rekeying every 14400s",
        "  local:  127.0.0.1",
        "  remote: 127.0.0.2",
        "  local pre-shared key authentication:",
        "    id: extra-a.example",
        "  remote pre-shared key authentication:",
        "    id: extra-b.example",
        "  lan: TUNNEL, rekeying every 1800s",
        "    local:  10.5.0.0/16",
        "    remote: 10.6.0.0/16",
    ]
    # the pushed connection and PSK really work (B would refuse any other key)
    out = swanctl.run(a, "--initiate", "--child", "lan").stdout
    assert "initiate completed successfully" in out
    listed = lines(swanctl.run(a, "--list-sas", "--ike", "extra").stdout)
    assert listed[3] == "  AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_256"
    assert listed[5].startswith("  lan: #1, reqid 1, INSTALLED, TUNNEL, ESP:AES_GCM_16-256")

    # loading again is idempotent; a file with an IKEv1 connection is refused with a reason
    swanctl.run(a, "--load-all", "--file", str(conf))
    bad = swanctl.write_conf(
        SWANCTL_CONF_A.format(port=b.port).replace("version = 2", "version = 1"), "bad")
    result = swanctl.run(a, "--load-all", "--file", str(bad), check=False)
    assert result.returncode != 0
    assert ("loading connection 'extra' failed: connections.extra.version: IKEv1 is not "
            "supported by quickike") in result.stderr
    assert "extra: IKEv2" in swanctl.run(a, "--list-conns").stdout  # the old one stays

    # a file without the connection unloads what swanctl loaded, never the file's own
    empty = swanctl.write_conf("connections {\n}\nsecrets {\n}\n", "empty")
    out = lines(swanctl.run(a, "--load-all", "--file", str(empty)).stdout)
    assert "no connections found, 1 unloaded" in out
    conns = swanctl.run(a, "--list-conns").stdout
    assert "extra:" not in conns and conns.startswith("site: IKEv2")
    # the tunnel set up before keeps running (charon keeps established SAs too)
    assert established(a, "extra")
    assert PSK not in a.log_path.read_text()  # no key material in logs
