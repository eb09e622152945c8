"""Value formats of swanctl.conf / strongswan.conf.

Every converter takes the raw string and returns a typed value or raises
``ValueError`` with a short reason; the loader adds ``file:line`` and the key.
Formats follow charon: integers are decimal or ``0x`` hex; durations take an
optional ``s``/``m``/``h``/``d`` suffix (a blank before it is allowed);
volumes take ``k``/``m``/``g`` (powers of 1024); booleans are
yes/no/true/false/enabled/disabled/1/0; lists are comma separated.  Unlike
charon's ``strtoul(..., 0)`` a leading zero never means octal.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from typing import TypeVar

E = TypeVar("E")

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([smhdSMHD]?)\s*$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_VOLUME = re.compile(r"^\s*([0-9]+)\s*([kmgKMG]?)\s*$")
_INT = re.compile(r"^[+-]?(?:0[xX][0-9a-fA-F]+|[0-9]+)$")
_FLOAT = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")
_VOLUME_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_TRUE = frozenset({"yes", "true", "enabled", "1"})
_FALSE = frozenset({"no", "false", "disabled", "0"})


def parse_int(text: str, low: int | None = None, high: int | None = None) -> int:
    raw = text.strip()
    if not _INT.match(raw):
        raise ValueError(f"'{text}' is not an integer")
    sign = -1 if raw.startswith("-") else 1
    digits = raw.lstrip("+-")
    value = sign * (int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 10))
    if low is not None and value < low:
        raise ValueError(f"{value} is below the minimum of {low}")
    if high is not None and value > high:
        raise ValueError(f"{value} is above the maximum of {high}")
    return value


def parse_float(text: str, low: float | None = None, high: float | None = None) -> float:
    raw = text.strip()
    if not _FLOAT.match(raw):
        raise ValueError(f"'{text}' is not a number")
    value = float(raw)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"'{text}' is not a finite number")
    if low is not None and value < low:
        raise ValueError(f"{value:g} is below the minimum of {low:g}")
    if high is not None and value > high:
        raise ValueError(f"{value:g} is above the maximum of {high:g}")
    return value


def parse_duration(text: str) -> float:
    """Seconds from ``30``, ``30s``, ``5m``, ``4h``, ``1d``, ``1.5h``."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a duration (number with optional s, m, h or d)")
    value = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if not math.isfinite(value):
        raise ValueError(f"'{text}' is too long a duration")
    return value


def parse_volume(text: str) -> int:
    """Bytes from ``1000``, ``1k``, ``5M``, ``2g`` (powers of 1024, like charon)."""
    match = _VOLUME.match(text)
    if not match:
        raise ValueError(f"'{text}' is not a byte count (integer with optional k, m or g)")
    return int(match.group(1)) * _VOLUME_UNITS[match.group(2).lower()]


def parse_bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"'{text}' is not a boolean (yes or no)")


def parse_list(text: str) -> tuple[str, ...]:
    """Comma separated items, blanks trimmed, empty items dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def parse_choice(text: str, choices: Mapping[str, E]) -> E:
    """One keyword of ``choices`` (case-insensitive)."""
    word = text.strip().lower()
    if word in choices:
        return choices[word]
    expected = ", ".join(sorted(choices))
    raise ValueError(f"'{text}' is not one of: {expected}")


def parse_secret(text: str) -> bytes:
    """A secret: ``0x`` hex, ``0s`` base64, else the UTF-8 string itself.

    Error messages never repeat the value: it is key material.
    """
    if text[:2].lower() == "0x":
        digits = "".join(text[2:].split()).replace(":", "")
        if len(digits) % 2:
            digits = "0" + digits  # like charon's chunk_from_hex: odd count, leading zero
        try:
            return bytes.fromhex(digits)
        except ValueError:
            raise ValueError("secret starts with 0x but is not valid hex") from None
    if text[:2] == "0s":
        try:
            return base64.b64decode("".join(text[2:].split()), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("secret starts with 0s but is not valid base64") from None
    return text.encode("utf-8")
