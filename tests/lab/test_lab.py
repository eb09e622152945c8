"""The interop lab on real parts: namespaces, veth wires, two charons and a working tunnel."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from needs import require_netns, require_root
from quickike.lab import (
    Charon,
    CharonError,
    CharonSettings,
    Lab,
    LabError,
    list_namespaces,
    psk_gateway_configs,
    sweep_stale_namespaces,
)
from quickike.lab.charon import IkeSaView, charon_process_ids
from quickike.lab.netns import GatewayPair, pid_alive

pytestmark = pytest.mark.root

PSK = "lab-test-psk"


def _tunnel_configs(pair: GatewayPair) -> tuple[dict[str, object], ...]:
    conn_a, sec_a = psk_gateway_configs(
        local_addr=pair.wire_a, remote_addr=pair.wire_b, local_id="gw-a@lab.test",
        remote_id="gw-b@lab.test", psk=PSK, local_ts=pair.lan_a, remote_ts=pair.lan_b,
    )  # fmt: skip
    conn_b, sec_b = psk_gateway_configs(
        local_addr=pair.wire_b, remote_addr=pair.wire_a, local_id="gw-b@lab.test",
        remote_id="gw-a@lab.test", psk=PSK, local_ts=pair.lan_b, remote_ts=pair.lan_a,
    )  # fmt: skip
    return conn_a, sec_a, conn_b, sec_b


def _eventually(cond: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``cond``: ``ip netns exec`` enters the namespace a moment after it was spawned, and
    SIGKILL delivery is asynchronous."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _packets_in(sas: list[IkeSaView], child: str = "net") -> int:
    return sum(
        int(c.get("packets-in", 0)) for sa in sas for c in sa.children if c.get("name") == child
    )


def test_gateways_reach_each_other_over_the_wire_and_nothing_else(lab: Lab) -> None:
    pair = lab.gateway_pair(hosts=True)
    assert pair.host_a is not None and pair.host_b is not None
    assert pair.gw_a.ping(pair.wire_b)
    assert pair.gw_b.ping(pair.wire6_a)
    assert pair.host_a.ping(pair.gw_a_lan)
    assert pair.host_b.ping(pair.gw_b_lan6)
    # The far LAN is reachable only through a tunnel: gateways have no route there.
    assert not pair.host_a.ping(pair.host_b_addr, timeout=1)
    for ns in lab.namespaces:
        assert ns.ip("-4", "route", "show", "default").stdout.strip() == ""
        assert ns.ip("-6", "route", "show", "default").stdout.strip() == ""


def test_a_default_route_is_refused(lab: Lab) -> None:
    ns = lab.add_namespace("x")
    with pytest.raises(LabError, match="default route"):
        ns.add_route("default", via="10.200.0.1")
    with pytest.raises(LabError, match="default route"):
        ns.add_route("::/0", via="fd00:200::1")


def test_lab_removes_namespaces_processes_and_files_after_an_exception() -> None:
    require_root()
    require_netns()
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        ns = lab.add_namespace("x")
        proc = ns.spawn(["sleep", "600"])
        assert proc.alive() and _eventually(lambda: ns.pids() == [proc.pid]), ns.pids()
        raise RuntimeError("boom")
    assert not pid_alive(proc.pid)
    assert not [n for n in list_namespaces() if n.startswith(lab.prefix)]
    assert not lab.workdir.exists()
    with pytest.raises(LabError, match="closed"):
        lab.add_namespace("y")


_CHILD = """
import sys, time
from quickike.lab import Lab
lab = Lab()
ns = lab.add_namespace("t")
proc = ns.spawn(["sleep", "600"])
deadline = time.monotonic() + 10  # `ip netns exec` enters the namespace a moment later
while proc.pid not in ns.pids() and time.monotonic() < deadline:
    time.sleep(0.01)
print(lab.prefix, proc.pid, lab.workdir, flush=True)
if sys.argv[1] == "exit":
    sys.exit(0)
sys.stdin.read()
"""


@pytest.mark.parametrize("ending", ["sigterm", "exit"])
def test_lab_cleans_up_when_its_process_is_terminated_or_exits(ending: str) -> None:
    require_root()
    require_netns()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, ending],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    line = child.stdout.readline().split()
    assert len(line) == 3, f"child printed {line!r}"
    prefix, pid, workdir = line[0], int(line[1]), Path(line[2])
    try:
        if ending == "sigterm":
            child.send_signal(signal.SIGTERM)
        status = child.wait(timeout=30)
    finally:
        child.stdin.close()
        child.stdout.close()
        if child.poll() is None:
            child.kill()
    assert status == (-signal.SIGTERM if ending == "sigterm" else 0)
    assert not pid_alive(pid)
    assert not [n for n in list_namespaces() if n.startswith(prefix)]
    assert not workdir.exists()


@pytest.mark.strongswan
def test_two_charons_build_a_tunnel_that_carries_pings(
    lab: Lab, make_charon: Callable[..., Charon]
) -> None:
    pair = lab.gateway_pair(hosts=True)
    assert pair.host_a is not None
    conn_a, sec_a, conn_b, sec_b = _tunnel_configs(pair)
    a = make_charon(pair.gw_a, connections=conn_a, secrets=sec_a)
    b = make_charon(pair.gw_b, connections=conn_b, secrets=sec_b)
    assert not pair.host_a.ping(pair.host_b_addr, timeout=1)

    log = a.initiate("net", ike="gw")
    assert any("CHILD_SA net{1} established" in line for line in log), log
    sa_a = a.wait_established("gw", "net")
    sa_b = b.wait_established("gw", "net")
    assert (sa_a.spi_i, sa_a.spi_r) == (sa_b.spi_i, sa_b.spi_r)
    assert sa_a.data["encr-alg"] == "AES_GCM_16" and sa_a.data["encr-keysize"] == "128"
    assert sa_a.data["prf-alg"] == "PRF_HMAC_SHA2_256"
    assert sa_a.data["dh-group"] == "CURVE_25519"
    child_a, child_b = sa_a.child("net"), sa_b.child("net")
    assert child_a is not None and child_b is not None
    assert child_a["encap"] == "yes"
    assert child_a["spi-in"] == child_b["spi-out"] and child_a["spi-out"] == child_b["spi-in"]

    assert pair.host_a.ping(pair.host_b_addr, count=3, timeout=2)
    b.wait_for(lambda sas: _packets_in(sas) >= 3, what="3 ESP packets in at B")
    a.wait_for(lambda sas: _packets_in(sas) >= 3, what="3 ESP replies in at A")

    a.terminate(ike="gw")
    b.wait_for(lambda sas: not sas, what="IKE SA deleted at B")
    assert not pair.host_a.ping(pair.host_b_addr, timeout=1)


_SWANCTL_TEXT = """\
connections {
  gw {
    local_addrs = 10.200.0.1
    remote_addrs = 10.200.0.2
    proposals = aes256-sha256-modp2048,aes128gcm16-prfsha256-x25519
    local {
      auth = psk
      id = gw-a@lab.test
    }
    remote {
      auth = psk
      id = gw-b@lab.test
    }
    children {
      net {
        local_ts = 10.200.1.0/24
        remote_ts = 10.200.2.0/24
      }
    }
  }
}
secrets {
  ike-gw {
    id = gw-b@lab.test
    secret = "lab test psk"
  }
}
"""


@pytest.mark.strongswan
def test_charon_loads_swanctl_text_and_survives_kill_and_restart(
    lab: Lab, make_charon: Callable[..., Charon]
) -> None:
    pair = lab.gateway_pair()
    a = make_charon(pair.gw_a, swanctl_text=_SWANCTL_TEXT)
    assert a.list_conns() == ["gw"]
    first = a.pid
    assert charon_process_ids(pair.gw_a) == [first]

    a.kill()
    assert not a.alive() and not pid_alive(first)
    with pytest.raises(OSError):
        a.list_conns()

    a.restart()
    assert a.pid != first and a.alive()
    assert a.list_conns() == ["gw"]
    assert (a.dir / "charon.1.log").read_text()  # the first run's log is kept

    a.stop()
    assert not a.alive() and charon_process_ids(pair.gw_a) == []


@pytest.mark.strongswan
def test_a_refused_configuration_fails_fast_with_charon_s_reason(
    lab: Lab, make_charon: Callable[..., Charon]
) -> None:
    pair = lab.gateway_pair()
    conns = {"bad": {"remote_addrs": "10.200.0.2", "proposals": "no-such-algorithm"}}
    with pytest.raises(CharonError, match="load-conn bad"):
        make_charon(pair.gw_a, connections=conns)


@pytest.mark.strongswan
def test_retransmit_settings_reach_charon(lab: Lab, make_charon: Callable[..., Charon]) -> None:
    """With defaults charon would retransmit 5 times over ~165 s; here it gives up after 2."""
    pair = lab.gateway_pair()  # nobody answers at B
    conn, secrets = psk_gateway_configs(
        local_addr=pair.wire_a, remote_addr=pair.wire_b, local_id="a@lab.test",
        remote_id="b@lab.test", psk=PSK,
    )  # fmt: skip
    settings = CharonSettings(retransmit_timeout=0.2, retransmit_base=1.0, retransmit_tries=2)
    a = make_charon(pair.gw_a, connections=conn, secrets=secrets, settings=settings)
    with pytest.raises(CharonError, match="establishing CHILD_SA 'net' failed"):
        a.initiate("net", ike="gw", timeout=5)
    log = a.log_text()
    assert "retransmit 2 of request with message ID 0" in log
    assert "retransmit 3 of" not in log
    assert "giving up after 2 retransmits" in log


def _gone(pid: int) -> bool:
    """Dead or a zombie (an orphan waits for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return True
    return state == "Z"


def test_sweep_removes_what_a_killed_run_left_behind() -> None:
    require_root()
    require_netns()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, "wait"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert child.stdout is not None and child.stdin is not None
    prefix, pid, workdir = child.stdout.readline().split()
    child.kill()  # SIGKILL: no atexit, no handler, the namespace and `sleep` stay
    child.wait(timeout=30)
    child.stdin.close()
    child.stdout.close()
    shutil.rmtree(workdir, ignore_errors=True)
    assert [n for n in list_namespaces() if n.startswith(prefix)]
    assert not _gone(int(pid))

    removed = sweep_stale_namespaces()
    assert [n for n in removed if n.startswith(prefix)]
    assert not [n for n in list_namespaces() if n.startswith(prefix)]
    assert _eventually(lambda: _gone(int(pid)))
