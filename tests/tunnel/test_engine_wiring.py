"""What the engine learned for the data plane: packet selectors, encapsulation, transforms."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

import pytest

from quickike.control.config import ConfigError, load_config_text
from quickike.crypto.proposals import format_proposal, parse_proposals
from quickike.daemon.dataplane_glue import (
    TunSettings,
    check_esp_proposals,
    packet_selectors,
    tun_settings,
)
from quickike.dataplane.esp import supported
from quickike.dataplane.spd import PacketSummary
from quickike.dataplane.userspace import UserspaceDataPlane
from quickike.engine import Engine
from quickike.engine.config import QuickikeConfig
from quickike.engine.dataplane import RecordingDataPlane, Selector, capabilities_of
from quickike.engine.policy import runnable_specs
from quickike.engine.selectors import narrow
from quickike.engine.tasks.child_create import ChildCreate
from quickike.wire.enums import ProtocolId

CONF = """
quickike {
    dataplane = userspace
%s
}
connections {
    site {
        local_addrs = 192.0.2.1
        remote_addrs = 192.0.2.2
        local {
            auth = psk
            id = a
        }
        remote {
            auth = psk
            id = b
        }
        children {
            net {
                local_ts = 10.1.0.0/16
                remote_ts = 10.2.0.0/16
                esp_proposals = %s
                start_action = trap
            }
        }
    }
}
secrets {
    ike-a {
        id = a
        secret = "a pre-shared key that is long enough"
    }
}
"""


def config(tun: str = "", esp: str = "aes128gcm16") -> QuickikeConfig:
    cfg, _ = load_config_text(CONF % (tun, esp), "gw.conf")
    return cfg


def sel(cidr: str, proto: int = 0, lo: int = 0, hi: int = 65535) -> Selector:
    n = ip_network(cidr)
    return Selector(n[0], n[-1], proto, lo, hi)


def test_tun_settings_typed_with_defaults_and_file_line_errors() -> None:
    assert tun_settings(config()) == TunSettings()
    s = tun_settings(config("    tun {\n        name = qk0\n        mtu = 1300\n"
                            "        addresses = 10.1.0.1/16, fd00::1/64\n        queue = 8\n"
                            "        hold = 0.5\n        install_routes = no\n    }"))
    assert (s.name, s.mtu, s.queue, s.hold, s.install_routes) == ("qk0", 1300, 8, 0.5, False)
    assert [str(a) for a in s.addresses] == ["10.1.0.1/16", "fd00::1/64"]
    with pytest.raises(ConfigError, match=r"gw.conf:5: quickike.tun.mtu: "):
        tun_settings(config("    tun {\n        mtu = 100\n    }"))
    with pytest.raises(ConfigError, match=r"quickike.tun.nmae: unknown setting"):
        tun_settings(config("    tun {\n        nmae = x\n    }"))
    with pytest.raises(ConfigError, match=r"quickike.tun.name"):
        tun_settings(config("    tun {\n        name = much-too-long-name0\n    }"))


def test_esp_proposals_checked_against_the_data_plane() -> None:
    assert check_esp_proposals(config()) == []
    (warning,) = check_esp_proposals(config(esp="aes128gcm12-aes256gcm16, aes128-sha256"))
    assert "proposing only aes256gcm16-noesn, aes128-sha256-noesn" in warning
    with pytest.raises(ConfigError, match="esp_proposals: no proposal"):
        check_esp_proposals(config(esp="aes128gcm8"))


def test_runnable_specs_keep_order_and_drop_what_cannot_run() -> None:
    specs = parse_proposals("aes128gcm12-aes256gcm16-chacha20poly1305-esn,aes128-sha256-sha1",
                            ProtocolId.ESP)  # fmt: skip
    kept = runnable_specs(specs, supported)
    assert [format_proposal(s) for s in kept] == [
        "aes256gcm16-chacha20poly1305-esn", "aes128-sha256-sha1-noesn"]
    assert runnable_specs(specs, lambda e, b, i: False) == []


def test_capabilities_reach_the_engine() -> None:
    caps = capabilities_of(UserspaceDataPlane)
    assert caps.udp_encap_only and caps.esp_transform is supported
    plain = Engine(config(), dataplane=RecordingDataPlane())
    assert not plain.encap_forced(None) and plain.policy.esp_filter is None
    eng = Engine(config(esp="aes128gcm12-aes128gcm16"),
                 dataplane=_CapsRecording())
    assert eng.encap_forced(None)
    conn = eng.policy.connection("site")
    assert conn is not None
    assert [format_proposal(s) for s in eng.policy.esp_specs(conn.children[0])] == [
        "aes128gcm16-noesn"]


class _CapsRecording(RecordingDataPlane):
    capabilities = UserspaceDataPlane.capabilities


def test_acquire_proposes_the_packets_selectors_first() -> None:
    eng = Engine(config(), dataplane=RecordingDataPlane())
    eng.start(0.0)
    packet = (sel("10.1.2.3/32", 6, 40000, 40000), sel("10.2.0.9/32", 6, 443, 443))
    uid = eng.acquire("site", "net", 0.0, packet)
    sa = eng.find_ike(uid or 0)
    assert sa is not None
    (task,) = [t for t in (*sa.active, *sa.queued) if isinstance(t, ChildCreate)]
    local, remote = task.initiator_selectors()
    assert local == [packet[0], sel("10.1.0.0/16")] and remote == [packet[1], sel("10.2.0.0/16")]
    # a packet outside the configured selectors is not proposed (it could only be refused)
    eng2 = Engine(config(), dataplane=RecordingDataPlane())
    uid2 = eng2.acquire("site", "net", 0.0, (sel("10.9.0.1/32"), sel("10.2.0.9/32")))
    sa2 = eng2.find_ike(uid2 or 0)
    assert sa2 is not None
    (task2,) = [t for t in (*sa2.active, *sa2.queued) if isinstance(t, ChildCreate)]
    assert task2.initiator_selectors() == ([sel("10.1.0.0/16")], [sel("10.2.0.0/16")])


def test_narrowing_drops_selectors_inside_others() -> None:
    proposed = [sel("10.2.0.9/32", 1), sel("10.2.0.0/16")]
    assert narrow(proposed, [sel("10.2.0.0/24")]) == [sel("10.2.0.0/24")]
    assert narrow(proposed, [sel("10.2.0.9/32", 1)]) == [sel("10.2.0.9/32", 1)]
    # disjoint results all stay, in the configured order
    assert narrow([sel("10.0.0.0/8")], [sel("10.2.0.0/24"), sel("10.3.0.0/24")]) == [
        sel("10.2.0.0/24"), sel("10.3.0.0/24")]


def test_packet_selectors_from_a_packet_summary() -> None:
    tcp = PacketSummary(ip_address("10.1.0.1"), ip_address("10.2.0.1"), 6, 40000, 443)
    assert packet_selectors(tcp) == (sel("10.1.0.1/32", 6, 40000, 40000),
                                     sel("10.2.0.1/32", 6, 443, 443))  # fmt: skip
    icmp = PacketSummary(ip_address("10.1.0.1"), ip_address("10.2.0.1"), 1, 0x800, 0x800)
    assert packet_selectors(icmp) == (sel("10.1.0.1/32", 1), sel("10.2.0.1/32", 1))
    frag = PacketSummary(ip_address("10.1.0.1"), ip_address("10.2.0.1"), 17, None, None)
    assert packet_selectors(frag) == (sel("10.1.0.1/32", 17), sel("10.2.0.1/32", 17))
    assert packet_selectors(None) is None
