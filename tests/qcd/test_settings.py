"""``quickike { qcd { } }`` and ``qcd_options { }`` parsing: types, defaults, keyed errors."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from engine.harness import config, conn
from quickike.engine.config import QcdSettings
from quickike.qcd import (
    ConnPolicy,
    Deployment,
    QcdConfigError,
    QcdPolicy,
    Role,
    TokenMethod,
    connection_policy,
    parse_connection_qcd,
    parse_qcd_settings,
    validate_config,
)
from quickike.qcd.settings import OverLimit, option_names


def test_defaults() -> None:
    p = parse_qcd_settings({})
    assert p == QcdPolicy()
    assert (p.enable, p.deployment, p.secret_length, p.token_method, p.token_length) == (
        True, Deployment.SINGLE, 32, TokenMethod.SPI_ADDRESS, 32)
    assert p.conn == ConnPolicy()
    c = p.conn
    assert (c.require_pending, c.accept_delay, c.accept_rtt_factor, c.rekey_before_delete,
            c.dampening) == (True, 0.010, 1.5, True, 2.0)
    assert parse_qcd_settings(None) == p


def test_every_key_parses() -> None:
    raw = {
        "enable": "yes", "deployment": "hot-standby", "secret_length": "48",
        "secret_file": "secret.qcd", "token_method": "spi", "token_length": "16",
        "rotate_period": "30d", "reply_window": "10m", "reply_rate": "5", "reply_burst": "7",
        "reply_rate_global": "50", "reply_burst_global": "70", "over_limit": "silent",
        "child_spi_map": "yes", "child_spi_map_file": "/x/map.db", "verify_rate": "2.5",
        "verify_burst": "3", "verify_rate_global": "20", "verify_burst_global": "30",
        "role": "taker", "require_pending": "no", "accept_delay": "25ms",
        "accept_rtt_factor": "2", "accept_delay_max": "1.5s", "rekey_before_delete": "false",
        "replace_timeout": "10s", "dampening": "1m", "dampening_max": "1h",
    }
    assert set(raw) == set(option_names()[0]) | set(option_names()[1])
    p = parse_qcd_settings(raw)
    assert p.deployment is Deployment.HOT_STANDBY and p.secret_length == 48
    assert p.token_method is TokenMethod.SPI and p.token_length == 16
    assert p.rotate_period == 30 * 86400 and p.reply_window == 600
    assert p.over_limit is OverLimit.SILENT and p.child_spi_map
    assert (p.verify_rate, p.verify_burst) == (2.5, 3.0)
    c = p.conn
    assert c.role is Role.TAKER and not c.require_pending and c.accept_delay == pytest.approx(0.025)
    assert (c.accept_rtt_factor, c.accept_delay_max, c.replace_timeout) == (2.0, 1.5, 10.0)
    assert not c.rekey_before_delete and (c.dampening, c.dampening_max) == (60.0, 3600.0)


@pytest.mark.parametrize(("key", "value"), [
    ("token_length", "8"), ("token_length", "65"), ("secret_length", "15"),
    ("secret_length", "128"), ("token_method", "sha1"), ("enable", "maybe"),
    ("accept_delay", "-1"), ("accept_delay", "soon"), ("reply_rate", "fast"),
    ("deployment", "cluster"), ("rotate_period", "1y"), ("secret_file", " "),
])
def test_bad_values_name_their_key(key: str, value: str) -> None:
    with pytest.raises(QcdConfigError) as e:
        parse_qcd_settings({key: value})
    assert e.value.key == f"quickike.qcd.{key}"
    assert str(e.value).startswith(f"quickike.qcd.{key}: ")
    assert isinstance(e.value, ValueError)


def test_unknown_keys_and_sections_are_errors() -> None:
    with pytest.raises(QcdConfigError) as e:
        parse_qcd_settings({"acept_delay": "1s"})
    assert e.value.key == "quickike.qcd.acept_delay" and "unknown option" in e.value.reason
    with pytest.raises(QcdConfigError) as e:
        parse_qcd_settings({"dampening": {"window": "10s"}})
    assert e.value.key == "quickike.qcd.dampening" and "section" in e.value.reason


def test_load_sharing_is_refused_citing_section_9_2() -> None:
    with pytest.raises(QcdConfigError) as e:
        parse_qcd_settings({"deployment": "load-sharing"})
    assert e.value.key == "quickike.qcd.deployment"
    assert "9.2" in str(e.value) and "cluster" in str(e.value)
    # switched off, the deployment no longer matters
    assert not parse_qcd_settings({"deployment": "load-sharing", "enable": "no"}).enable


def test_inconsistent_bounds() -> None:
    with pytest.raises(QcdConfigError) as e:
        parse_qcd_settings({"accept_delay": "2s", "accept_delay_max": "1s"})
    assert e.value.key == "quickike.qcd.accept_delay_max"
    with pytest.raises(QcdConfigError) as e:
        parse_qcd_settings({"dampening": "10m", "dampening_max": "1m"})
    assert e.value.key == "quickike.qcd.dampening_max"


def test_typed_loader_settings_win() -> None:
    typed = QcdSettings(enable=False, secret_length=48,
                        options=MappingProxyType({"enable": "yes", "token_method": "spi"}))
    p = parse_qcd_settings(typed)
    assert not p.enable and p.secret_length == 48 and p.token_method is TokenMethod.SPI


def test_per_connection_overrides_and_switch() -> None:
    base = parse_qcd_settings({"accept_delay": "20ms"})
    c = parse_connection_qcd({"require_pending": "no", "role": "maker"}, base,
                             path="connections.gw.qcd_options")
    assert not c.require_pending and c.role is Role.MAKER and c.accept_delay == pytest.approx(0.02)
    with pytest.raises(QcdConfigError) as e:
        parse_connection_qcd({"token_length": "20"}, base, path="connections.gw.qcd_options")
    assert e.value.key == "connections.gw.qcd_options.token_length"  # maker keys are daemon-wide
    off = connection_policy(
        conn("gw", "192.0.2.1", "192.0.2.2", "a", "b", qcd=False), base)
    assert off.role is Role.NONE


def test_validate_config_checks_every_connection() -> None:
    good = conn("good", "192.0.2.1", "192.0.2.2", "a", "b")
    bad = conn("bad", "192.0.2.1", "192.0.2.3", "a", "c",
               qcd_options=MappingProxyType({"dampening": "often"}))
    assert validate_config(config(good)).enable
    with pytest.raises(QcdConfigError) as e:
        validate_config(config(good, bad))
    assert e.value.key == "connections.bad.qcd_options.dampening"
