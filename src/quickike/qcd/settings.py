"""QCD configuration: the raw ``quickike { qcd { } }`` keys and ``qcd_options { }``, typed.

The config loader keeps the section's keys as strings (``QcdSettings.options``)
so that this package can define them; :func:`parse_qcd_settings` turns them
into one frozen :class:`QcdPolicy` and names the offending key in every error,
so a typo in a security option stops the daemon at start instead of silently
running with a default.  The taker's hardening knobs can be overridden per
connection (:func:`parse_connection_qcd`); the maker's cannot, because after a
reboot the maker no longer knows which connection an SPI pair belonged to.

Every default is chosen so that a survivor rebuilds within one round trip of
the rebooted gateway's answer; ``docs/qcd.md`` gives the trade-off of each.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, TypeVar

from ..engine.config import QcdSettings

if TYPE_CHECKING:
    from ..engine.config import ConnectionConfig, QuickikeConfig, RawTree

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

#: token lengths this implementation makes (RFC 6290 §5 allows 16..128 on receipt)
TOKEN_LENGTH_MIN = 16
TOKEN_LENGTH_MAX = 64
SECRET_LENGTH_MIN = 16
SECRET_LENGTH_MAX = 64


class QcdConfigError(ValueError):
    """A QCD option with a bad value; ``key`` is the dotted path of the option."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


class Deployment(enum.Enum):
    """How many gateways share the QCD secret (RFC 6290 §6, §9.2)."""

    SINGLE = "single"
    HOT_STANDBY = "hot-standby"
    LOAD_SHARING = "load-sharing"


class TokenMethod(enum.Enum):
    """RFC 6290 §5.1 (SPIs only) or §5.2 (SPIs and the taker's address)."""

    SPI = "spi"
    SPI_ADDRESS = "spi-address"


class Role(enum.Enum):
    """RFC 6290 §8.1: which half of QCD this gateway plays."""

    BOTH = "both"
    MAKER = "maker"
    TAKER = "taker"
    NONE = "none"

    @property
    def makes(self) -> bool:
        return self in _MAKERS

    @property
    def takes(self) -> bool:
        return self in _TAKERS


#: built once: ``Role.X`` goes through EnumType's attribute hook, and QCD asks makes/takes
#: several times per IKE SA
_MAKERS = frozenset({Role.BOTH, Role.MAKER})
_TAKERS = frozenset({Role.BOTH, Role.TAKER})


class OverLimit(enum.Enum):
    """What the maker does above its token rate limit (RFC 6290 §8.1)."""

    INVALID_IKE_SPI = "invalid-ike-spi"
    SILENT = "silent"


@dataclass(frozen=True, slots=True)
class ConnPolicy:
    """The per-connection part: role and the taker's defences (seed issue 202)."""

    role: Role = Role.BOTH
    #: a token is only taken as the answer to a protected request we have outstanding
    require_pending: bool = True
    #: minimum wait between a valid token and the teardown (a genuine reply cancels it)
    accept_delay: float = 0.010
    #: ... and at least this many smoothed round trips after the request left
    accept_rtt_factor: float = 1.5
    #: upper bound of the acceptance wait (dampening may extend it)
    accept_delay_max: float = 2.0
    #: build the new IKE SA before the old one goes (connections that restart at once)
    rekey_before_delete: bool = True
    #: make-before-break gives up on the old SA after this long
    replace_timeout: float = 5.0
    #: minimum interval between two QCD teardowns for one peer, doubled per repetition
    dampening: float = 2.0
    dampening_max: float = 300.0


@dataclass(frozen=True, slots=True)
class QcdPolicy:
    """Everything the QCD extension needs to know, validated."""

    enable: bool = True
    deployment: Deployment = Deployment.SINGLE
    secret_length: int = 32
    secret_file: str = "qcd.secret"
    token_method: TokenMethod = TokenMethod.SPI_ADDRESS
    token_length: int = 32
    #: a new secret generation every this many seconds (0 = only by `quickike qcd rotate`)
    rotate_period: float = 0.0
    #: tokens are given only this long after start (0 = always)
    reply_window: float = 0.0
    reply_rate: float = 50.0
    reply_burst: float = 100.0
    reply_rate_global: float = 2000.0
    reply_burst_global: float = 4000.0
    over_limit: OverLimit = OverLimit.INVALID_IKE_SPI
    #: persist CHILD SPI -> IKE SPIs for the one-message §8.2 answer to ESP
    child_spi_map: bool = False
    child_spi_map_file: str = "qcd-spi-map.sqlite"
    verify_rate: float = 50.0
    verify_burst: float = 100.0
    verify_rate_global: float = 2000.0
    verify_burst_global: float = 4000.0
    conn: ConnPolicy = field(default_factory=ConnPolicy)


# --------------------------------------------------------------------------
# value parsers (same syntax as the rest of the configuration)
# --------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|[smhd]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "ms": 0.001, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = re.compile(r"^\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*$")
_INT = re.compile(r"^\s*[+-]?[0-9]+\s*$")
_TRUE = frozenset({"yes", "true", "enabled", "1", "on"})
_FALSE = frozenset({"no", "false", "disabled", "0", "off"})


def _bool(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"'{text}' is not a boolean (yes or no)")


def _duration(low: float = 0.0, high: float = 10 * 365 * 86400.0) -> Callable[[str], float]:
    def parse(text: str) -> float:
        m = _DURATION.match(text)
        if not m:
            raise ValueError(f"'{text}' is not a duration (number with optional ms, s, m, h or d)")
        value = float(m.group(1)) * _UNITS[m.group(2).lower()]
        if not math.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{text!r} is outside {low:g}..{high:g} seconds")
        return value

    return parse


def _number(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        if not _NUMBER.match(text):
            raise ValueError(f"'{text}' is not a number")
        value = float(text)
        if not low <= value <= high:
            raise ValueError(f"{value:g} is outside {low:g}..{high:g}")
        return value

    return parse


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not _INT.match(text):
            raise ValueError(f"'{text}' is not an integer")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value

    return parse


def _choice(kind: type[E]) -> Callable[[str], E]:
    def parse(text: str) -> E:
        word = text.strip().lower()
        for member in kind:
            if member.value == word:
                return member
        names = ", ".join(str(m.value) for m in kind)
        raise ValueError(f"'{text}' is not one of: {names}")

    return parse


def _name(text: str) -> str:
    value = text.strip()
    if not value or "\x00" in value:
        raise ValueError("must be a non-empty file name")
    return value


_CONN_KEYS: dict[str, Callable[[str], object]] = {
    "role": _choice(Role),
    "require_pending": _bool,
    "accept_delay": _duration(0.0, 60.0),
    "accept_rtt_factor": _number(0.0, 10.0),
    "accept_delay_max": _duration(0.0, 600.0),
    "rekey_before_delete": _bool,
    "replace_timeout": _duration(0.1, 600.0),
    "dampening": _duration(0.0, 86400.0),
    "dampening_max": _duration(0.0, 7 * 86400.0),
}

_GLOBAL_KEYS: dict[str, Callable[[str], object]] = {
    "enable": _bool,
    "deployment": _choice(Deployment),
    "secret_length": _int(SECRET_LENGTH_MIN, SECRET_LENGTH_MAX),
    "secret_file": _name,
    "token_method": _choice(TokenMethod),
    "token_length": _int(TOKEN_LENGTH_MIN, TOKEN_LENGTH_MAX),
    "rotate_period": _duration(0.0),
    "reply_window": _duration(0.0),
    "reply_rate": _number(0.0, 1e6),
    "reply_burst": _number(0.0, 1e6),
    "reply_rate_global": _number(0.0, 1e7),
    "reply_burst_global": _number(0.0, 1e7),
    "over_limit": _choice(OverLimit),
    "child_spi_map": _bool,
    "child_spi_map_file": _name,
    "verify_rate": _number(0.0, 1e6),
    "verify_burst": _number(0.0, 1e6),
    "verify_rate_global": _number(0.0, 1e7),
    "verify_burst_global": _number(0.0, 1e7),
}


def _values(raw: Mapping[str, object], known: Mapping[str, Callable[[str], object]],
            path: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        parser = known.get(key)
        if parser is None:
            raise QcdConfigError(where, f"unknown option (known: {', '.join(sorted(known))})")
        if not isinstance(value, str):
            raise QcdConfigError(where, "is a section; a value is expected")
        try:
            out[key] = parser(value)
        except ValueError as e:
            raise QcdConfigError(where, str(e)) from None
    return out


def _check_conn(policy: ConnPolicy, path: str) -> ConnPolicy:
    if policy.accept_delay_max < policy.accept_delay:
        raise QcdConfigError(f"{path}.accept_delay_max",
                             f"{policy.accept_delay_max:g}s is below accept_delay "
                             f"({policy.accept_delay:g}s)")
    if policy.dampening and policy.dampening_max < policy.dampening:
        raise QcdConfigError(f"{path}.dampening_max",
                             f"{policy.dampening_max:g}s is below dampening "
                             f"({policy.dampening:g}s)")
    return policy


def parse_qcd_settings(raw: RawTree | QcdSettings | None = None, *,
                       path: str = "quickike.qcd") -> QcdPolicy:
    """The ``quickike { qcd { } }`` section as a :class:`QcdPolicy`.

    ``raw`` is the section's key tree (strings, nested mappings for
    sections) or the loader's :class:`QcdSettings`, whose typed ``enable``
    and ``secret_length`` win over the raw strings.  Raises
    :class:`QcdConfigError` (a ``ValueError``) naming the key.
    """
    typed: QcdSettings | None = None
    if isinstance(raw, QcdSettings):
        typed, tree = raw, raw.options
    else:
        tree = raw if raw is not None else {}
    conn_raw = {k: v for k, v in tree.items() if k in _CONN_KEYS}
    glob_raw = {k: v for k, v in tree.items() if k not in _CONN_KEYS}
    values = _values(glob_raw, _GLOBAL_KEYS, path)
    if typed is not None:
        values["enable"] = typed.enable
        if not SECRET_LENGTH_MIN <= typed.secret_length <= SECRET_LENGTH_MAX:
            raise QcdConfigError(f"{path}.secret_length",
                                 f"{typed.secret_length} is outside "
                                 f"{SECRET_LENGTH_MIN}..{SECRET_LENGTH_MAX}")
        values["secret_length"] = typed.secret_length
    conn = _check_conn(ConnPolicy(**_values(conn_raw, _CONN_KEYS, path)), path)  # type: ignore[arg-type]
    policy = QcdPolicy(conn=conn, **values)  # type: ignore[arg-type]
    if policy.deployment is Deployment.LOAD_SHARING and policy.enable:
        raise QcdConfigError(
            f"{path}.deployment",
            "load-sharing is refused: RFC 6290 §9.2 requires that every cluster member can tell "
            "whether an IKE SA is alive anywhere in the cluster before it sends a token in the "
            "clear, and quickike has no cluster-wide SA registry yet; use single or hot-standby "
            "(one active gateway at a time), or set enable = no",
        )
    return policy


def parse_connection_qcd(options: Mapping[str, str], base: QcdPolicy, *,
                         path: str = "connections.?.qcd_options") -> ConnPolicy:
    """A connection's ``qcd_options { }`` on top of the daemon-wide taker defaults."""
    if not options:
        return base.conn
    values = _values(options, _CONN_KEYS, path)
    return _check_conn(replace(base.conn, **values), path)  # type: ignore[arg-type]


def connection_policy(conn: ConnectionConfig, base: QcdPolicy) -> ConnPolicy:
    """The effective per-connection policy; ``qcd = no`` means role none."""
    policy = parse_connection_qcd(conn.qcd_options, base,
                                  path=f"connections.{conn.name}.qcd_options")
    if not conn.qcd or not base.enable:
        return replace(policy, role=Role.NONE)
    return policy


def validate_config(config: QuickikeConfig) -> QcdPolicy:
    """Parse the daemon-wide section and every connection's options (for the loader)."""
    policy = parse_qcd_settings(config.settings.qcd)
    for conn in config.connections.values():
        connection_policy(conn, policy)
    return policy


def option_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(daemon-wide keys, per-connection keys), for documentation and completion."""
    return tuple(_GLOBAL_KEYS), tuple(_CONN_KEYS)


def _defaults_match() -> bool:  # pragma: no cover - import-time sanity check
    names = {f.name for f in fields(QcdPolicy)} - {"conn"}
    return names == set(_GLOBAL_KEYS) and {f.name for f in fields(ConnPolicy)} == set(_CONN_KEYS)


assert _defaults_match(), "QcdPolicy/ConnPolicy fields and option tables disagree"

__all__ = [
    "ConnPolicy",
    "Deployment",
    "OverLimit",
    "QcdConfigError",
    "QcdPolicy",
    "Role",
    "TokenMethod",
    "connection_policy",
    "option_names",
    "parse_connection_qcd",
    "parse_qcd_settings",
    "validate_config",
]
