"""swanctl.conf meaning: realistic configurations, defaults, warnings and errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quickike.control.config import ConfigError, ConfigWarning, load_config, load_config_text
from quickike.engine.config import (
    AddrKind,
    AuthClass,
    ChildConfig,
    CloseAction,
    ConnectionConfig,
    DaemonSettings,
    DataplaneKind,
    DpdAction,
    Fragmentation,
    Identity,
    IpsecMode,
    LogFormat,
    Revocation,
    SendCertPolicy,
    StartAction,
    UniquePolicy,
)
from quickike.wire.enums import IdType

SITE_TO_SITE_PSK = """\
# gateway moon, 10.1.0.0/16 -- 192.168.0.1 === 192.168.0.2 -- 10.2.0.0/16
connections {
   gw-gw {
      version = 2
      local_addrs  = 192.168.0.1
      remote_addrs = 192.168.0.2
      proposals = aes128-sha256-x25519
      dpd_delay = 30s
      reauth_time = 3h

      local {
         auth = psk
         id = moon.strongswan.org
      }
      remote {
         auth = psk
         id = sun.strongswan.org
      }
      children {
         net-net {
            local_ts  = 10.1.0.0/16
            remote_ts = 10.2.0.0/16
            rekey_time = 5400
            rekey_bytes = 500000000
            rekey_packets = 1000000
            esp_proposals = aes128gcm128-x25519
            start_action = trap
            dpd_action = restart
         }
      }
   }
}

secrets {
   ike-moon-sun {
      id-1 = moon.strongswan.org
      id-2 =sun.strongswan.org
      secret = 0sv+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL
   }
}
"""

CERTIFICATES = """\
connections {
   home {
      remote_addrs = moon.strongswan.org
      local {
         auth = pubkey
         certs = carolCert.pem
         id = carol@strongswan.org
      }
      remote {
         auth = ecdsa-384-sha384
         id = "C=CH, O=strongSwan Project, CN=moon.strongswan.org"
         cacerts = strongswanCert.pem
         revocation = strict
      }
      children {
         home {
            remote_ts = 10.1.0.0/16
            start_action = trap|start
            close_action = start
         }
      }
      send_cert = always
      unique = replace
      fragmentation = force
   }
}
secrets {
   private-carol {
      file = carolKey.pem
      secret = "nH5ZQEWtku0RJEZ6"
   }
   ecdsa-moon {
      file = moonKey.pem
      secret = 0x01020304
   }
}
"""

MULTIPLE_CHILDREN = """\
connections {
   rw {
      local_addrs = 192.168.0.1
      local {
         auth = pubkey
         certs = moonCert.pem
         id = moon.strongswan.org
      }
      remote {
         auth = pubkey
      }
      children {
         net {
            local_ts = 10.1.0.0/28, 10.1.0.16/28
            esp_proposals = aes256gcm16-ecp384, aes128-sha256-modp3072
         }
         host {
            mode = transport
            rekey_time = 20m
            life_time = 30m
            inactivity = 5m
            close_action = trap
         }
         web {
            local_ts = 10.1.0.0/24[tcp/https]
            remote_ts = dynamic[tcp]
            reqid = 7
            hostaccess = yes
         }
      }
   }
}
"""


def load(
    text: str, tmp_path: Path, name: str = "swanctl.conf"
) -> tuple[object, list[ConfigWarning]]:
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


def conn_of(text: str, name: str) -> ConnectionConfig:
    config, _ = load_config_text(text)
    return config.connections[name]


# -- realistic configurations -------------------------------------------------------------


def test_site_to_site_psk(tmp_path: Path) -> None:
    path = tmp_path / "swanctl.conf"
    path.write_text(SITE_TO_SITE_PSK)
    config, warnings = load_config(path)
    assert warnings == []
    conn = config.connections["gw-gw"]
    assert conn.version == 2
    assert [str(a) for a in conn.local_addrs] == ["192.168.0.1"]
    assert conn.remote_addrs[0].kind == AddrKind.ADDRESS
    assert conn.proposals == ("aes128-sha256-x25519",)
    assert conn.dpd_delay == 30.0
    # reauth_time set and rekey_time not: strongSwan disables rekeying
    assert (conn.reauth_time, conn.rekey_time) == (10800.0, 0.0)
    assert (conn.over_time, conn.rand_time) == (1080.0, 1080.0)
    assert conn.local[0].auth == AuthClass.PSK
    assert conn.local_id == Identity(IdType.FQDN, b"moon.strongswan.org")
    assert conn.remote_id == Identity(IdType.FQDN, b"sun.strongswan.org")
    (child,) = conn.children
    assert child.name == "net-net"
    assert (
        str(child.local_ts[0].start) == "10.1.0.0" and str(child.remote_ts[0].end) == "10.2.255.255"
    )
    assert (child.rekey_time, child.life_time, child.rand_time) == (5400.0, 5940.0, 540.0)
    assert (child.rekey_bytes, child.life_bytes, child.rand_bytes) == (
        500000000,
        550000000,
        50000000,
    )
    assert (child.rekey_packets, child.life_packets) == (1000000, 1100000)
    assert child.start_action == StartAction.TRAP
    assert child.dpd_action == DpdAction.RESTART
    assert child.esp_proposals == ("aes128gcm128-x25519",)
    assert config.secrets.psk(conn.local_id, conn.remote_id) == bytes.fromhex(
        "bfe364c58f4b2d9bf08f8a820b6a3f806ad60c5d9ddb58cb"
    )
    assert config.sources == (str(path.resolve()),)
    assert conn.origin == f"{path}:3"
    assert config.origin("connections.gw-gw.children.net-net.rekey_time") == f"{path}:23"


def test_certificates() -> None:
    config, warnings = load_config_text(CERTIFICATES, "c.conf")
    assert warnings == []
    conn = config.connections["home"]
    assert conn.remote_addrs[0].kind == AddrKind.DNS
    assert conn.remote_addrs[0].text == "moon.strongswan.org"
    local, remote = conn.local[0], conn.remote[0]
    assert (local.auth, local.certs) == (AuthClass.PUBKEY, ("carolCert.pem",))
    assert local.id == Identity(IdType.RFC822_ADDR, b"carol@strongswan.org")
    assert (remote.auth, remote.auth_spec) == (AuthClass.PUBKEY, "ecdsa-384-sha384")
    assert remote.id is not None and remote.id.id_type == IdType.DER_ASN1_DN
    assert remote.cacerts == ("strongswanCert.pem",)
    assert remote.revocation == Revocation.STRICT
    assert conn.send_cert == SendCertPolicy.ALWAYS
    assert conn.unique == UniquePolicy.REPLACE
    assert conn.fragmentation == Fragmentation.FORCE
    child = conn.children[0]
    assert child.start_action == StartAction.TRAP | StartAction.START
    assert child.close_action == CloseAction.START
    assert child.local_ts[0].dynamic
    private = {p.name: p for p in config.secrets.private}
    assert private["private-carol"].kind == "private"
    assert private["private-carol"].secret == b"nH5ZQEWtku0RJEZ6"
    assert (private["ecdsa-moon"].kind, private["ecdsa-moon"].file) == ("ecdsa", "moonKey.pem")
    assert private["ecdsa-moon"].secret == b"\x01\x02\x03\x04"


def test_multiple_children() -> None:
    config, warnings = load_config_text(MULTIPLE_CHILDREN)
    assert warnings == []
    conn = config.connections["rw"]
    assert conn.remote_id.is_any
    assert [c.name for c in conn.children] == ["net", "host", "web"]
    net = conn.child("net")
    assert net is not None
    assert [t.text for t in net.local_ts] == ["10.1.0.0/28", "10.1.0.16/28"]
    assert net.esp_proposals == ("aes256gcm16-ecp384", "aes128-sha256-modp3072")
    host = conn.child("host")
    assert host is not None
    assert host.mode == IpsecMode.TRANSPORT
    assert (host.rekey_time, host.life_time, host.rand_time) == (1200.0, 1800.0, 600.0)
    assert host.inactivity == 300.0
    assert host.close_action == CloseAction.TRAP
    web = conn.child("web")
    assert web is not None
    assert (web.local_ts[0].protocol, web.local_ts[0].start_port) == (6, 443)
    assert web.remote_ts[0].dynamic and web.remote_ts[0].protocol == 6
    assert (web.reqid, web.hostaccess) == (7, True)
    assert conn.child("nope") is None


# -- defaults -----------------------------------------------------------------------------


def test_connection_defaults_are_strongswans() -> None:
    conn = conn_of("connections { c { children { x { } } } }", "c")
    assert conn == ConnectionConfig(name="c", children=(ChildConfig(name="x"),))
    assert conn.version == 0
    assert [a.kind for a in conn.local_addrs] == [AddrKind.ANY]
    assert [a.kind for a in conn.remote_addrs] == [AddrKind.ANY]
    assert (conn.local_port, conn.remote_port) == (500, 500)
    assert conn.proposals == ("default",)
    assert (conn.rekey_time, conn.reauth_time, conn.over_time, conn.rand_time) == (
        14400.0,
        0.0,
        1440.0,
        1440.0,
    )
    assert (conn.encap, conn.mobike, conn.send_certreq, conn.qcd) == (False, True, True, True)
    assert conn.fragmentation == Fragmentation.YES
    assert conn.unique == UniquePolicy.NO
    assert conn.keyingtries == 1
    assert conn.local[0].auth == AuthClass.PUBKEY and conn.local[0].id is None
    assert conn.remote[0].id is not None and conn.remote[0].id.is_any
    child = conn.children[0]
    assert child.local_ts[0].dynamic and child.remote_ts[0].dynamic
    assert child.esp_proposals == ("default",)
    assert (child.rekey_time, child.life_time, child.rand_time) == (3600.0, 3960.0, 360.0)
    assert (child.life_bytes, child.life_packets) == (0, 0)
    assert child.start_action == StartAction.NONE
    assert child.dpd_action == DpdAction.CLEAR
    assert child.close_action == CloseAction.NONE
    assert child.mode == IpsecMode.TUNNEL
    assert (child.policies, child.replay_window) == (True, 32)


def test_daemon_defaults() -> None:
    config, _ = load_config_text("")
    assert config.settings == DaemonSettings()
    s = config.settings
    assert (s.port, s.port_nat_t, s.cookie_threshold, s.fragment_size) == (500, 4500, 10, 1280)
    assert (s.half_open_timeout, s.keep_alive) == (30.0, 20.0)
    assert s.retransmit.give_up_after() == pytest.approx(165.06)
    assert s.state_dir == "/var/lib/quickike"
    assert s.vici_socket == "unix:///var/lib/quickike/quickike.vici"
    assert (s.qcd.enable, s.qcd.secret_length) == (True, 32)
    assert s.dataplane == DataplaneKind.NONE
    assert s.log.level == "info" and s.log.format == LogFormat.TEXT and s.log.file is None
    assert not s.metrics.enable
    assert config.connections == {}


def test_over_and_rand_time_follow_charon() -> None:
    both = conn_of("connections { c { rekey_time = 2h\n reauth_time = 10h } }", "c")
    assert (both.over_time, both.rand_time) == (3600.0, 3600.0)  # 10% of 10h; min(over, 2h/2)
    short = conn_of("connections { c { rekey_time = 100s } }", "c")
    assert (short.over_time, short.rand_time) == (10.0, 10.0)
    explicit = conn_of("connections { c { over_time = 5m\n rand_time = 0 } }", "c")
    assert (explicit.rekey_time, explicit.over_time, explicit.rand_time) == (14400.0, 300.0, 0.0)


def test_child_lifetime_defaults_follow_rekey() -> None:
    c = conn_of("connections { c { children { x { rekey_time = 0\n rekey_bytes = 1M } } } }", "c")
    child = c.children[0]
    assert (child.rekey_time, child.life_time, child.rand_time) == (0.0, 0.0, 0.0)
    assert (child.rekey_bytes, child.life_bytes, child.rand_bytes) == (2**20, 1153433, 104857)


def test_local_port_defaults_to_daemon_port() -> None:
    config, _ = load_config_text(
        "quickike { port = 1500 }\nconnections { c { } d { local_port = 600 } }"
    )
    assert config.connections["c"].local_port == 1500
    assert config.connections["d"].local_port == 600


# -- quickike section ---------------------------------------------------------------------


def test_quickike_section() -> None:
    text = """
quickike {
    port = 1500
    port_nat_t = 14500
    retransmit_timeout = 1.0
    retransmit_base = 2
    retransmit_tries = 3
    retransmit_jitter = 10
    retransmit_limit = 5
    cookie_threshold = 0
    half_open_timeout = 1m
    fragment_size = 1400
    keep_alive = 0
    state_dir = /run/qi
    qcd {
        enable = no
        secret_length = 48
        token_lifetime = 1d
        dampening { window = 10s }
    }
    metrics {
        enable = yes
        listen = [::1]:9100
    }
    log {
        level = debug
        format = json
        file = /var/log/quickike.log
    }
    dataplane = recording
    limits {
        half_open_limit = 5
    }
}
"""
    config, warnings = load_config_text(text)
    assert warnings == []
    s = config.settings
    assert (s.port, s.port_nat_t) == (1500, 14500)
    r = s.retransmit
    assert (r.timeout, r.base, r.tries, r.jitter, r.limit) == (1.0, 2.0, 3, 10.0, 5.0)
    assert r.delays() == (1.0, 2.0, 4.0, 5.0)
    assert (s.cookie_threshold, s.half_open_timeout, s.fragment_size, s.keep_alive) == (
        0,
        60.0,
        1400,
        0.0,
    )
    assert s.state_dir == "/run/qi" and s.vici_socket == "unix:///run/qi/quickike.vici"
    assert (s.qcd.enable, s.qcd.secret_length) == (False, 48)
    assert s.qcd.options["token_lifetime"] == "1d"
    assert s.qcd.options["dampening"] == {"window": "10s"}
    assert (s.metrics.enable, s.metrics.host, s.metrics.port) == (True, "::1", 9100)
    assert (s.log.level, s.log.format, s.log.file) == (
        "debug",
        LogFormat.JSON,
        "/var/log/quickike.log",
    )
    assert s.dataplane == DataplaneKind.RECORDING
    assert s.extra == {"limits": {"half_open_limit": "5"}}
    assert config.origin("quickike.limits.half_open_limit") == "<string>:32"


def test_keylog_is_accepted_with_a_warning() -> None:
    config, warnings = load_config_text("quickike {\n keylog = /tmp/ike.keys\n}\n")
    assert config.settings.keylog == "/tmp/ike.keys"
    assert len(warnings) == 1 and warnings[0].line == 2 and "keys" in warnings[0].message


def test_per_connection_qcd() -> None:
    text = "connections {\n c {\n  qcd = no\n  qcd_options {\n   token_rotation = 1h\n  }\n }\n}\n"
    conn = conn_of(text, "c")
    assert conn.qcd is False
    assert dict(conn.qcd_options) == {"token_rotation": "1h"}


# -- warnings -------------------------------------------------------------------------------


def test_unknown_keys_and_sections_warn_with_file_and_line(tmp_path: Path) -> None:
    text = """\
connections {
   c {
      versoin = 2
      local {
         auth = psk
         colour = blue
      }
      children {
         x {
            esp_proposal = aes128gcm16
         }
      }
      weird { }
   }
}
bogus = 1
authorities { ca { cacert = ca.pem } }
charon { retransmit_tries = 2 }
"""
    _, warnings = load(text, tmp_path)
    where = {(w.line, w.message.split(" (")[0].split(":")[0]) for w in warnings}
    path = str(tmp_path / "swanctl.conf")
    assert all(w.file == path for w in warnings)
    assert (3, "unknown key 'versoin' in connections.c") in where
    assert (6, "unknown key 'colour' in connections.c.local") in where
    assert (10, "unknown key 'esp_proposal' in connections.c.children.x") in where
    assert (13, "unknown section 'weird' in connections.c") in where
    assert (16, "unknown key 'bogus' in the top level") in where
    assert any(w.line == 17 and "authorities" in w.message for w in warnings)
    assert any(w.line == 18 and "'quickike { }'" in w.message for w in warnings)
    assert len(warnings) == 7
    assert str(warnings[0]).startswith(f"{path}:")


def test_supported_elsewhere_but_not_here_warns() -> None:
    text = """
connections {
    c {
        vips = 0.0.0.0
        dpd_timeout = 150s
        local { eap_id = %any }
        local-2 { auth = pubkey }
        children {
            x {
                updown = /usr/lib/ipsec/_updown iptables
                mark_in = 42
                ipcomp = yes
            }
        }
    }
}
pools { p { addrs = 10.3.0.0/24 } }
"""
    config, warnings = load_config_text(text)
    messages = " | ".join(w.message for w in warnings)
    for needle in (
        "vips ignored",
        "dpd_timeout has no effect",
        "eap_id ignored",
        "authentication rounds",
        "updown",
        "mark_in ignored",
        "ipcomp ignored",
        "'pools' ignored",
    ):
        assert needle in messages, needle
    conn = config.connections["c"]
    assert conn.dpd_timeout == 150.0
    assert [a.name for a in conn.local] == ["local", "local-2"]
    assert conn.children[0].updown == "/usr/lib/ipsec/_updown iptables"


def test_auth_rounds_sorted_by_round_then_position() -> None:
    conn = conn_of(
        "connections { c {\n remote-b { round = 2\n auth = psk }\n remote-a { round = 1\n auth = pubkey }\n} }",
        "c",
    )
    assert [a.name for a in conn.remote] == ["remote-a", "remote-b"]


def test_start_action_without_remote_host_warns() -> None:
    _, warnings = load_config_text("connections { c { children { x { start_action = start } } } }")
    assert any("cannot initiate" in w.message for w in warnings)


def test_life_time_not_above_rekey_time_warns() -> None:
    _, warnings = load_config_text(
        "connections { c { children { x {\n rekey_time = 1h\n life_time = 30m\n } } } }"
    )
    assert [w.line for w in warnings if "expires before" in w.message] == [3]


def test_unquoted_hash_in_identity_warns() -> None:
    config, warnings = load_config_text("connections { c {\n remote {\n  id = @#0102\n } } }")
    assert config.connections["c"].remote_id == Identity(IdType.FQDN, b"")
    assert [w.line for w in warnings] == [3] and "quote" in warnings[0].message
    quoted, _ = load_config_text('connections { c {\n remote {\n  id = "@#0102"\n } } }')
    assert quoted.connections["c"].remote_id == Identity(IdType.KEY_ID, b"\x01\x02")


def test_unknown_dn_attribute_warns() -> None:
    config, warnings = load_config_text("connections { c {\n remote {\n  id = XYZ=1, CN=a\n } } }")
    assert config.connections["c"].remote_id.id_type == IdType.KEY_ID
    assert [w.line for w in warnings] == [3]


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("version = 1", "IKEv1 is not supported"),
        ("version = 3", "unknown IKE version"),
        ("rekey_time = soon", "connections.c.rekey_time: 'soon' is not a duration"),
        ("dpd_delay = -1", "dpd_delay"),
        ("remote_port = 70000", "remote_port"),
        ("remote_addrs = 10.0.0.0/40", "remote_addrs"),
        ("encap = sometimes", "encap: 'sometimes' is not a boolean"),
        ("fragmentation = maybe", "fragmentation"),
        ("unique = always", "unique"),
        ("send_cert = sometimes", "send_cert"),
        ("proposals = aes128-sha256-x2551", "x2551"),
        ("keyingtries = many", "keyingtries"),
        ("local {\n auth = eap-mschapv2\n }", "EAP and XAuth"),
        ("local {\n auth = magic\n }", "unknown authentication method"),
        ('remote {\n id = "@#xyz"\n }', "connections.c.remote.id: 'xyz' is not valid hex"),
        ("remote {\n revocation = never\n }", "revocation"),
        ("children { x {\n local_ts = 10.0.0.0/8[nosuchproto]\n } }", "local_ts"),
        ("children { x {\n esp_proposals = aes128-nosuch\n } }", "esp_proposals: invalid proposal"),
        ("children { x {\n ah_proposals = sha256\n } }", "AH is not supported"),
        ("children { x {\n mode = beet\n } }", "mode 'beet' is not supported"),
        ("children { x {\n start_action = now\n } }", "start_action"),
        ("children { x {\n start_action = none|trap\n } }", "none cannot be combined"),
        ("children { x {\n dpd_action = explode\n } }", "dpd_action"),
        ("children { x {\n close_action = explode\n } }", "close_action"),
        ("children { x {\n rekey_bytes = 1t\n } }", "rekey_bytes"),
        ("children { x {\n life_packets = -1\n } }", "life_packets"),
        ("children { x {\n reqid = 0x1ffffffff\n } }", "reqid"),
    ],
)
def test_invalid_values_are_errors_with_file_line_and_key(body: str, needle: str) -> None:
    text = f"# header\nconnections {{\n c {{\n {body}\n }}\n}}\n"
    with pytest.raises(ConfigError) as err:
        load_config_text(text, "bad.conf")
    assert needle in str(err.value)
    assert err.value.file == "bad.conf"
    assert 4 <= err.value.line <= 4 + body.count("\n")
    assert str(err.value).startswith(f"bad.conf:{err.value.line}: ")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("port = 65536", "quickike.port"),
        ("retransmit_timeout = 0", "retransmit_timeout"),
        ("retransmit_tries = lots", "retransmit_tries"),
        ("retransmit_jitter = 150", "retransmit_jitter"),
        ("fragment_size = 100", "fragment_size"),
        ("vici_socket = /run/x.vici", "vici_socket"),
        ("dataplane = kernel", "dataplane"),
        ("qcd {\n secret_length = 8\n }", "secret_length"),
        ("metrics {\n listen = nowhere\n }", "listen"),
        ("log {\n format = xml\n }", "format"),
        ("log {\n level = chatty\n }", "level"),
    ],
)
def test_invalid_daemon_settings(body: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text(f"quickike {{\n {body}\n}}\n", "q.conf")
    assert needle in err.value.message and err.value.line >= 2


def test_secret_errors_do_not_leak_the_secret() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text("secrets {\n ike-x {\n  id = a\n  secret = 0xnot-hex-topsecret\n }\n}\n")
    assert err.value.line == 4
    assert "topsecret" not in str(err.value)
    with pytest.raises(ConfigError, match="has no 'secret'") as missing:
        load_config_text("secrets {\n ike-x {\n  id = a\n }\n}\n")
    assert missing.value.line == 2
    with pytest.raises(ConfigError, match="has no 'file'"):
        load_config_text("secrets { rsa-x { secret = x } }")


def test_secrets_with_several_ids_and_no_ids() -> None:
    config, warnings = load_config_text(
        "secrets {\n ike-a {\n  id-1 = 192.168.0.1\n  id-2 = @sun\n  secret = abc\n }\n"
        ' ike-b {\n  secret = "shared by all"\n }\n eap-x { secret = y }\n}\n'
    )
    a, b = config.secrets.ike
    assert [i.id_type for i in a.ids] == [IdType.IPV4_ADDR, IdType.FQDN]
    assert a.secret == b"abc" and b.ids == () and b.secret == b"shared by all"
    assert (
        config.secrets.psk(Identity.from_address(ipaddress.ip_address("192.168.0.1")), None)
        == b"abc"
    )
    assert [w.line for w in warnings] == [10]


def test_include_and_sources(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "gw.conf").write_text(
        "connections {\n gw {\n  remote_addrs = 192.0.2.1\n }\n}\n"
    )
    (tmp_path / "secrets.conf").write_text("secrets { ike-1 { secret = s } }\n")
    main = tmp_path / "swanctl.conf"
    main.write_text("include conf.d/*.conf\ninclude secrets.conf\nquickike { port = 600 }\n")
    config, warnings = load_config(main)
    assert warnings == []
    assert list(config.connections) == ["gw"]
    assert config.connections["gw"].local_port == 600
    assert len(config.sources) == 3 and config.sources[0] == str(main.resolve())
    assert config.connections["gw"].origin == f"{tmp_path / 'conf.d' / 'gw.conf'}:2"


def test_connection_order_is_file_order() -> None:
    config, _ = load_config_text("connections { b { }\n a { }\n c { } }")
    assert list(config.connections) == ["b", "a", "c"]


def test_configuration_objects_are_immutable() -> None:
    config, _ = load_config_text(SITE_TO_SITE_PSK)
    conn = config.connections["gw-gw"]
    with pytest.raises(AttributeError):
        conn.version = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.connections["x"] = conn  # type: ignore[index]
    assert hash(conn) == hash(config.connections["gw-gw"])


# -- robustness of the semantic layer ---------------------------------------------------------

_CONN_KEYS = [
    "version",
    "local_addrs",
    "remote_addrs",
    "local_port",
    "remote_port",
    "proposals",
    "dpd_delay",
    "rekey_time",
    "reauth_time",
    "over_time",
    "rand_time",
    "encap",
    "fragmentation",
    "unique",
    "keyingtries",
    "send_cert",
    "qcd",
]
_CHILD_KEYS = [
    "local_ts",
    "remote_ts",
    "esp_proposals",
    "start_action",
    "dpd_action",
    "close_action",
    "rekey_time",
    "life_time",
    "rekey_bytes",
    "life_packets",
    "mode",
    "inactivity",
    "reqid",
]
_AUTH_KEYS = ["auth", "id", "certs", "revocation", "round"]
_DAEMON_KEYS = [
    "port",
    "retransmit_timeout",
    "retransmit_base",
    "retransmit_tries",
    "retransmit_limit",
    "fragment_size",
    "keep_alive",
    "vici_socket",
    "dataplane",
]
_VALUE = st.text(
    alphabet=st.characters(exclude_characters='\n\r#}"\\', codec="utf-8"),
    max_size=30,
) | st.sampled_from(["0", "1", "yes", "10.0.0.0/8", "%any", "@#", "C=CH", "[tcp/80]", "0x", "1h"])


def _pairs(keys: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.tuples(st.sampled_from(keys), _VALUE), max_size=4).map(
        lambda kvs: "".join(f"  {k} = {v}\n" for k, v in kvs)
    )


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(_pairs(_CONN_KEYS), _pairs(_AUTH_KEYS), _pairs(_CHILD_KEYS), _pairs(_DAEMON_KEYS), _VALUE)
def test_random_values_raise_nothing_but_config_error(
    conn: str, auth: str, child: str, daemon: str, secret: str
) -> None:
    text = (
        f"connections {{\n c {{\n{conn} remote {{\n{auth} }}\n children {{\n x {{\n{child} }}\n }}\n }}\n}}\n"
        f"quickike {{\n{daemon}}}\nsecrets {{\n ike-1 {{\n  id = {secret}\n  secret = {secret}\n }}\n}}\n"
    )
    try:
        load_config_text(text)
    except ConfigError as exc:
        assert exc.line > 0


def test_engine_limits_are_checked_at_load() -> None:
    from quickike.engine.policy import Policy

    cfg, _ = load_config_text(
        "quickike {\n  limits {\n    half_open_limit = 50\n    send_invalid_spi = no\n  }\n}\n", "l.conf"
    )
    s = Policy(cfg).settings
    assert (s.half_open_limit, s.send_invalid_spi) == (50, False)
    with pytest.raises(ConfigError, match=r"l\.conf:2: quickike\.limits\.half_open_limit"):
        load_config_text("quickike {\n  limits {\n    half_open_limit = lots\n  }\n}\n", "l.conf")
