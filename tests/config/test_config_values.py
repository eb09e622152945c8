"""Value formats (durations, volumes, booleans, secrets) and the retransmission schedule."""

from __future__ import annotations

import pytest

from quickike.control.config.values import (
    parse_bool,
    parse_duration,
    parse_float,
    parse_int,
    parse_list,
    parse_secret,
    parse_volume,
)
from quickike.engine.config import RetransmitPolicy


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("30 s", 30.0),
        ("5m", 300.0),
        ("4h", 14400.0),
        ("1d", 86400.0),
        ("1D", 86400.0),
        ("1.5h", 5400.0),
        ("0", 0.0),
        (" 10m ", 600.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "s", "10x", "-5s", "5 m s", "1e3", "4h30m", "0x10", "1" * 400]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("1000", 1000),
        ("1k", 1024),
        ("1K", 1024),
        ("5M", 5 * 2**20),
        ("2g", 2 * 2**30),
        ("3 k", 3072),
    ],
)
def test_volumes(text: str, count: int) -> None:
    assert parse_volume(text) == count


@pytest.mark.parametrize("text", ["", "1.5k", "1t", "-1", "k"])
def test_bad_volumes(text: str) -> None:
    with pytest.raises(ValueError):
        parse_volume(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", True),
        ("Yes", True),
        ("true", True),
        ("1", True),
        ("enabled", True),
        ("no", False),
        ("FALSE", False),
        ("0", False),
        ("disabled", False),
    ],
)
def test_booleans(text: str, value: bool) -> None:
    assert parse_bool(text) is value


def test_bad_boolean() -> None:
    with pytest.raises(ValueError, match="not a boolean"):
        parse_bool("maybe")


def test_integers_decimal_and_hex_never_octal() -> None:
    assert parse_int("42") == 42
    assert parse_int("0x2A") == 42
    assert parse_int("010") == 10
    assert parse_int("-3") == -3
    for bad in ("1_000", "4.0", "0x", "²", "", "12abc"):
        with pytest.raises(ValueError):
            parse_int(bad)
    with pytest.raises(ValueError, match="maximum"):
        parse_int("70000", 0, 65535)


def test_floats() -> None:
    assert parse_float("4.0") == 4.0
    assert parse_float("1.8") == 1.8
    assert parse_float(".5") == 0.5
    for bad in ("nan", "inf", "1_0", "", "1e999"):
        with pytest.raises(ValueError):
            parse_float(bad)


def test_lists() -> None:
    assert parse_list("a, b ,c,,") == ("a", "b", "c")
    assert parse_list(" ") == ()


def test_secrets_string_hex_base64() -> None:
    assert parse_secret("This is a strong password") == b"This is a strong password"
    assert parse_secret("0xFF") == b"\xff"
    assert parse_secret("0x0102 0304") == b"\x01\x02\x03\x04"
    assert parse_secret("0x1:02") == b"\x01\x02"
    assert parse_secret("0xabc") == b"\x0a\xbc"
    assert parse_secret("0sAQID") == b"\x01\x02\x03"
    assert parse_secret("0S is text") == b"0S is text"


@pytest.mark.parametrize("text", ["0xzz-secret-material", "0s!!!secret-material"])
def test_bad_secret_messages_never_echo_the_secret(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_secret(text)
    assert "secret-material" not in str(err.value)


# -- retransmission -----------------------------------------------------------------------


def test_default_retransmit_schedule_matches_strongswan_docs() -> None:
    policy = RetransmitPolicy()
    # docs.strongswan.org "Retransmission": 4 * 1.8^n, five retransmits, give up
    assert policy.delays() == (4.0, 7.2, 12.96, 23.328, 41.99, 75.582)
    assert policy.send_times() == (0.0, 4.0, 11.2, 24.16, 47.488, 89.478)
    assert policy.give_up_after() == pytest.approx(165.06)
    assert round(policy.give_up_after()) == 165


def test_retransmit_limit_caps_each_wait() -> None:
    policy = RetransmitPolicy(timeout=1.0, base=2.0, tries=6, limit=10.0)
    assert policy.delays() == (1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0)
    assert policy.give_up_after() == 45.0


def test_retransmit_jitter_shortens_by_up_to_the_percentage() -> None:
    policy = RetransmitPolicy(jitter=20.0)
    assert policy.wait(0, draw=0.0) == 4.0
    assert policy.wait(0, draw=0.5) == 3.6
    assert policy.wait(1, draw=0.999) == pytest.approx(7.2 * (1 - 0.2 * 0.999), abs=1e-3)
    # the nominal schedule ignores jitter
    assert policy.delays() == RetransmitPolicy().delays()


def test_short_schedule_from_interop_notes() -> None:
    # retransmit_timeout = 1.0, retransmit_tries = 2: 1 + 1.8 + 3.24 s
    policy = RetransmitPolicy(timeout=1.0, tries=2)
    assert policy.send_times() == (0.0, 1.0, 2.8)
    assert policy.give_up_after() == pytest.approx(6.04)


def test_zero_tries_waits_once() -> None:
    assert RetransmitPolicy(tries=0).delays() == (4.0,)
