"""The lab's pure parts (config text, VICI shapes, key-log parsing, pcap counting): no root."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from needs import unavailable
from quickike.lab import LabError
from quickike.lab.capture import count_pcap_records
from quickike.lab.charon import (
    CharonSettings,
    IkeSaView,
    decode_secret,
    decode_vici,
    psk_gateway_configs,
    render_tree,
    shared_secret_message,
    to_vici,
)
from quickike.lab.keylog import KeyLogError, ike_keys, parse_hexdumps, psk_auth_values


def test_render_tree_puts_every_setting_on_its_own_line() -> None:
    text = render_tree(
        {"connections": {"gw": {"encap": True, "mobike": False, "proposals": ["a", "b"],
                                "children": {"net": {"start_action": "none"}}}},
         "secrets": {"ike-1": {"secret": "has space", "id": "x@y", "skip": None}}}
    )  # fmt: skip
    assert text.splitlines() == [
        "connections {",
        "  gw {",
        "    encap = yes",
        "    mobike = no",
        "    proposals = a,b",
        "    children {",
        "      net {",
        "        start_action = none",
        "      }",
        "    }",
        "  }",
        "}",
        "secrets {",
        "  ike-1 {",
        '    secret = "has space"',
        "    id = x@y",
        "  }",
        "}",
    ]


def test_render_tree_escapes_quotes_and_refuses_newlines() -> None:
    assert render_tree({"s": 'a"b\\c'}) == 's = "a\\"b\\\\c"'
    with pytest.raises(LabError, match="newline"):
        render_tree({"s": "a\nb"})


def test_strongswan_conf_loads_plugins_explicitly_and_libipsec_before_netlink(
    tmp_path: Path,
) -> None:
    settings = CharonSettings(retransmit_timeout=1.0, retransmit_tries=2, cookie_threshold=3)
    text = settings.render(socket_path=tmp_path / "c.vici", log_path=tmp_path / "c.log")
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0] == "charon-systemd {"
    assert "load_modular = no" in lines
    load = next(line for line in lines if line.startswith("load = ") and "openssl" in line)
    plugins = load.removeprefix("load = ").strip('"').split()
    assert plugins.index("kernel-libipsec") < plugins.index("kernel-netlink")
    assert {"vici", "socket-default", "openssl", "random", "nonce"} <= set(plugins)
    assert f"socket = unix://{tmp_path}/c.vici" in lines
    assert f"path = {tmp_path}/c.log" in lines
    assert "retransmit_timeout = 1.0" in lines and "retransmit_tries = 2" in lines
    assert "cookie_threshold = 3" in lines
    assert not any(line.startswith("retransmit_base") for line in lines)  # unset = default
    assert "install_routes = yes" in lines


def test_settings_without_esp_drop_libipsec_and_key_logging_raises_ike_level(
    tmp_path: Path,
) -> None:
    assert "kernel-libipsec" not in CharonSettings(esp=False).plugin_list()
    text = CharonSettings.key_logging(esp=False).render(
        socket_path=tmp_path / "s", log_path=tmp_path / "l"
    )
    lines = [line.strip() for line in text.splitlines()]
    assert "ike = 4" in lines and "chd = 4" in lines


def test_extra_settings_merge_into_nested_sections(tmp_path: Path) -> None:
    settings = CharonSettings(extra={"plugins": {"vici": {"x": 1}}, "dos_protection": False})
    text = settings.render(socket_path=tmp_path / "s", log_path=tmp_path / "l")
    assert "socket = unix://" in text and "x = 1" in text and "dos_protection = no" in text


def test_to_vici_splits_list_keys_and_spells_booleans() -> None:
    conn, secrets = psk_gateway_configs(
        local_addr="10.200.0.1", remote_addr="10.200.0.2", local_id="a@x", remote_id="b@x",
        psk="k", proposals=["aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048"],
    )  # fmt: skip
    message = to_vici(conn["gw"])
    assert message["proposals"] == ["aes128gcm16-prfsha256-x25519", "aes256-sha256-modp2048"]
    assert message["local_addrs"] == ["10.200.0.1"]
    assert message["encap"] == "yes" and message["version"] == "2"
    assert message["children"]["net"]["local_ts"] == ["10.200.0.1/32"]
    assert message["local"] == {"auth": "psk", "id": "a@x"}
    assert secrets == {"ike-gw": {"id-local": "a@x", "id-remote": "b@x", "secret": "k"}}


def test_shared_secret_message_matches_swanctl_notation() -> None:
    body = {"id-1": "a@x", "id-2": "b@x", "secret": "0x0102ff"}
    assert shared_secret_message("ike-gw", body) == {
        "id": "ike-gw",
        "type": "IKE",
        "data": b"\x01\x02\xff",
        "owners": ["a@x", "b@x"],
    }
    assert decode_secret("0sAQI=") == b"\x01\x02"
    assert decode_secret("plain") == b"plain"
    with pytest.raises(LabError, match="only"):
        shared_secret_message("private-key", {"secret": "x"})
    with pytest.raises(LabError, match="no `secret`"):
        shared_secret_message("ike-x", {"id": "a"})


def test_ike_sa_view_reads_decoded_list_sas() -> None:
    raw = {  # the vici package decodes keys, not values
        "state": b"ESTABLISHED",
        "initiator-spi": b"0011223344556677",
        "child-sas": {
            "net-1": {"name": b"net", "state": b"INSTALLED", "local-ts": [b"10.0.0.0/8"]}
        },
    }
    data = decode_vici(raw)
    assert data["child-sas"]["net-1"]["local-ts"] == ["10.0.0.0/8"]
    view = IkeSaView("gw", data)
    assert view.state == "ESTABLISHED" and view.spi_i == "0011223344556677"
    assert view.child_state("net") == "INSTALLED" and view.child_state("other") is None
    assert decode_vici(b"\xff\xfe") == b"\xff\xfe"  # binary stays bytes


_LOG = """\
00:03:50.100 13[IKE] shared Diffie Hellman secret => 20 bytes @ 0x7fabc0003440
00:03:50.100 14[NET] received packet: from 10.200.0.2[500] to 10.200.0.1[500] (240 bytes)
00:03:50.100 13[IKE]    0: E2 83 E7 75 09 35 9C 55 74 62 CC 11 20 D8 43 1F  ...u.5.Utb.. .C.
00:03:50.101 14[IKE] natd_hash => 4 bytes @ 0x1
00:03:50.101 13[IKE]   16: C9 15 F9 F3                                      ....
00:03:50.101 14[IKE]    0: 41 42 43 44                                      ABCD
00:03:50.102 13[IKE] SKEYSEED => 2 bytes @ 0x7fabc000aa00
00:03:50.102 13[IKE]    0: 00 01                                            ..
00:03:50.102 13[IKE] Sk_d secret => 2 bytes @ 0x7fabc000aa00
00:03:50.102 13[IKE]    0: 0A 0B                                            ..
00:03:50.103 13[IKE] Sk_ai secret => 0 bytes @ (nil)
00:03:50.103 13[IKE] IDx' => 1 bytes @ 0x7fabecbf2890
00:03:50.103 13[IKE]    0: 03                                               .
00:03:50.103 13[IKE] octets = message + nonce + prf(Sk_px, IDx') => 1 bytes @ 0x7
00:03:50.103 13[IKE]    0: 04                                               .
00:03:50.103 13[IKE] AUTH = prf(prf(secret, keypad), octets) => 1 bytes @ 0x7
00:03:50.103 13[IKE]    0: 05                                               .
"""


def test_hexdumps_are_followed_per_thread_through_interleaved_lines() -> None:
    values = parse_hexdumps(_LOG.splitlines())
    labels = [v.label for v in values]
    assert labels == ["shared Diffie Hellman secret", "natd_hash", "SKEYSEED", "Sk_d secret",
                      "Sk_ai secret", "IDx'", "octets = message + nonce + prf(Sk_px, IDx')",
                      "AUTH = prf(prf(secret, keypad), octets)"]  # fmt: skip
    assert values[0].data == bytes.fromhex("E283E77509359C557462CC1120D8431FC915F9F3")
    assert values[1].data == b"ABCD" and values[1].thread == 14
    (keys,) = ike_keys(values)
    assert keys == {"dh_shared_secret": values[0].data, "skeyseed": b"\x00\x01",
                    "sk_d": b"\x0a\x0b", "sk_ai": b""}  # fmt: skip
    assert psk_auth_values(values) == [{"id_prime": b"\x03", "octets": b"\x04", "auth": b"\x05"}]


def test_a_hexdump_cut_short_is_an_error() -> None:
    lines = [
        "00:00:00.000 13[IKE] SKEYSEED => 32 bytes @ 0x1",
        "00:00:00.000 13[IKE]    0: 00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F  ................",
        "00:00:00.000 13[IKE] next message",
    ]
    with pytest.raises(KeyLogError, match="16 of 32"):
        parse_hexdumps(lines)


def test_count_pcap_records_ignores_a_partly_written_record(tmp_path: Path) -> None:
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    record = struct.pack("<IIII", 0, 0, 3, 3) + b"abc"
    path = tmp_path / "x.pcap"
    path.write_bytes(header + record + record + record[:10])
    assert count_pcap_records(path) == 2
    assert count_pcap_records(tmp_path / "missing.pcap") == 0
    (tmp_path / "bad.pcap").write_bytes(b"x" * 30)
    with pytest.raises(LabError, match="not a classic pcap"):
        count_pcap_records(tmp_path / "bad.pcap")


@pytest.mark.parametrize(("ci", "outcome"), [("", "skip"), ("true", "fail"), ("TRUE", "fail")])
def test_missing_prerequisites_skip_locally_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if outcome == "fail" else pytest.skip.Exception
    with pytest.raises(expected, match="needs a thing"):
        unavailable("needs a thing")
