"""swanctl.conf meaning: the parsed tree turned into ``quickike.engine.config`` objects.

Top-level sections:

* ``connections { NAME { ... } }``: IKE connections, keys and defaults as in
  swanctl.conf(5) of strongSwan 5.9; quickike adds ``qcd = yes|no`` (RFC 6290
  for this connection, default yes) and a ``qcd_options { }`` section whose
  raw keys the QCD plug-in interprets.
* ``secrets { ike-*, private-*, rsa-*, ecdsa-*, pkcs8-*, pkcs12-* }``.
* ``quickike { ... }``: daemon settings, named after strongswan.conf's
  ``charon { }`` where charon has a counterpart (see ``_load_settings``).
* ``authorities`` and ``pools`` are strongSwan features quickike lacks: warned
  about and ignored.

Unknown keys and sections produce warnings, never errors; a value that cannot
be used (bad syntax, or a feature quickike cannot honour safely such as IKEv1,
EAP, AH or BEET mode) is a :class:`ConfigError` naming ``file:line`` and key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TypeVar

from quickike.control.config.errors import ConfigError, ConfigWarning
from quickike.control.config.identity import parse_identity
from quickike.control.config.proposals import check_proposals
from quickike.control.config.selectors import parse_address_spec, parse_traffic_selector
from quickike.control.config.syntax import ParseResult, Section, Setting, parse_file, parse_text
from quickike.control.config.values import (
    parse_bool,
    parse_choice,
    parse_duration,
    parse_float,
    parse_int,
    parse_list,
    parse_secret,
    parse_volume,
)
from quickike.engine.config import (
    DEFAULT_STATE_DIR,
    AddressSpec,
    AuthClass,
    AuthConfig,
    ChildConfig,
    CloseAction,
    ConnectionConfig,
    DaemonSettings,
    DataplaneKind,
    DpdAction,
    Fragmentation,
    Identity,
    IkeSecret,
    IpsecMode,
    LogFormat,
    LogSettings,
    MetricsSettings,
    PrivateKeySecret,
    QcdSettings,
    QuickikeConfig,
    RawTree,
    RetransmitPolicy,
    Revocation,
    Secrets,
    SendCertPolicy,
    StartAction,
    TrafficSelectorConfig,
    UniquePolicy,
)
from quickike.engine.policy import parse_limits
from quickike.wire.enums import ProtocolId

T = TypeVar("T")

UINT32 = 2**32 - 1
UINT64 = 2**64 - 1

# -- keyword tables -------------------------------------------------------------

_FRAGMENTATION = {f.value: f for f in Fragmentation}
_UNIQUE = {u.value: u for u in UniquePolicy}
_SEND_CERT = {s.value: s for s in SendCertPolicy}
_REVOCATION = {r.value: r for r in Revocation}
_DPD_ACTION = {
    "clear": DpdAction.CLEAR,
    "none": DpdAction.CLEAR,
    "trap": DpdAction.TRAP,
    "route": DpdAction.TRAP,
    "restart": DpdAction.RESTART,
    "start": DpdAction.RESTART,
}
_CLOSE_ACTION = {
    "none": CloseAction.NONE,
    "clear": CloseAction.NONE,
    "trap": CloseAction.TRAP,
    "route": CloseAction.TRAP,
    "start": CloseAction.START,
    "restart": CloseAction.START,
}
_START_WORDS = {
    "none": StartAction.NONE,
    "trap": StartAction.TRAP,
    "route": StartAction.TRAP,
    "start": StartAction.START,
    "restart": StartAction.START,
}
_LOG_LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "critical": "critical",
}
_LOG_FORMATS = {f.value: f for f in LogFormat}
_DATAPLANES = {d.value: d for d in DataplaneKind}
_SECRET_KINDS_PRIVATE = ("private", "rsa", "ecdsa", "pkcs8", "pkcs12")
_SECRET_KINDS_UNSUPPORTED = ("eap", "xauth", "ntlm", "token")

# strongSwan keys quickike recognises but does not implement: key -> why
_CONN_UNSUPPORTED = {
    "vips": "virtual IPs (configuration payloads) are not implemented",
    "pools": "address pools are not implemented",
    "aggressive": "IKEv1 only",
    "pull": "IKEv1 only",
    "dscp": "DSCP marking of IKE packets is not implemented",
    "if_id_in": "XFRM interface ids are not implemented",
    "if_id_out": "XFRM interface ids are not implemented",
    "mediation": "IKE mediation is not implemented",
    "mediated_by": "IKE mediation is not implemented",
    "mediation_peer": "IKE mediation is not implemented",
    "ppk_id": "post-quantum preshared keys are not implemented",
    "ppk_required": "post-quantum preshared keys are not implemented",
    "childless": "childless IKE_SA setup is not implemented",
}
_AUTH_UNSUPPORTED = {
    "eap_id": "EAP is not implemented",
    "aaa_id": "EAP is not implemented",
    "xauth_id": "XAuth is IKEv1 only",
    "groups": "group membership checks are not implemented",
    "cert_policy": "certificate policy checks are not implemented",
    "ca_id": "CA identity constraints are not implemented",
}
_CHILD_UNSUPPORTED = {
    "ipcomp": "IPComp is not implemented",
    "mark_in": "netfilter marks are not implemented",
    "mark_in_sa": "netfilter marks are not implemented",
    "mark_out": "netfilter marks are not implemented",
    "set_mark_in": "netfilter marks are not implemented",
    "set_mark_out": "netfilter marks are not implemented",
    "if_id_in": "XFRM interface ids are not implemented",
    "if_id_out": "XFRM interface ids are not implemented",
    "tfc_padding": "TFC padding is not implemented",
    "priority": "policy priorities are not implemented",
    "interface": "interface-bound policies are not implemented",
    "policies_fwd_out": "forward policies are not implemented",
    "sha256_96": "truncated SHA-256 (96 bit) is not implemented",
    "copy_df": "header copy options are not implemented",
    "copy_ecn": "header copy options are not implemented",
    "copy_dscp": "header copy options are not implemented",
    "hw_offload": "hardware offload is not implemented",
    "per_cpu_sas": "per-CPU SAs are not implemented",
    "label": "security labels are not implemented",
    "label_mode": "security labels are not implemented",
}


def load_config(path: str | os.PathLike[str]) -> tuple[QuickikeConfig, list[ConfigWarning]]:
    """Read a swanctl.conf-style file (and its includes) into a :class:`QuickikeConfig`."""
    return _Loader(parse_file(path)).load()


def load_config_text(
    text: str, name: str = "<string>", base_dir: str | None = None
) -> tuple[QuickikeConfig, list[ConfigWarning]]:
    """As :func:`load_config`, from a string (tests, VICI-pushed configuration)."""
    return _Loader(parse_text(text, name, base_dir)).load()


def load_config_tree(root: Section) -> tuple[QuickikeConfig, list[ConfigWarning]]:
    """As :func:`load_config`, from a section tree built in memory.

    VICI's load-conn and load-shared carry swanctl.conf's keys as a message
    tree, not as text: building :class:`Section` objects from it and loading
    them here gives them exactly the file's meaning without quoting values
    back into text first.
    """
    return _Loader(ParseResult(root, [], [])).load()


class _Reader:
    """Typed access to one section that remembers which keys were consumed."""

    def __init__(self, loader: _Loader, section: Section, path: str) -> None:
        self.loader = loader
        self.section = section
        self.path = path
        self.used: set[str] = set()
        self.used_sections: set[str] = set()

    def label(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def setting(self, key: str) -> Setting | None:
        """The setting if present with a value (``key =`` counts as absent)."""
        self.used.add(key)
        setting = self.section.settings.get(key)
        if setting is None or setting.value is None:
            return None
        return setting

    def fail(self, setting: Setting, reason: str) -> ConfigError:
        return ConfigError(f"{self.label(setting.key)}: {reason}", setting.file, setting.line)

    def opt(self, key: str, conv: Callable[[str], T]) -> T | None:
        setting = self.setting(key)
        if setting is None:
            return None
        assert setting.value is not None
        try:
            return conv(setting.value)
        except ValueError as exc:
            raise self.fail(setting, str(exc)) from None

    def get(self, key: str, conv: Callable[[str], T], default: T) -> T:
        value = self.opt(key, conv)
        return default if value is None else value

    def sub(self, name: str) -> Section | None:
        self.used_sections.add(name)
        return self.section.sections.get(name)

    def warn(self, message: str, setting: Setting | None = None) -> None:
        where = setting if setting is not None else self.section
        self.loader.warnings.append(ConfigWarning(message, where.file, where.line))

    def finish(self, unsupported: Mapping[str, str] | None = None) -> None:
        unsupported = unsupported or {}
        scope = self.path or "the top level"
        for key, setting in self.section.settings.items():
            if key in self.used:
                continue
            if key in unsupported:
                self.warn(f"{self.label(key)} ignored: {unsupported[key]}", setting)
            else:
                self.warn(f"unknown key '{key}' in {scope} (ignored)", setting)
        for name, sub in self.section.sections.items():
            if name not in self.used_sections:
                self.loader.warnings.append(
                    ConfigWarning(
                        f"unknown section '{name}' in {scope} (ignored)", sub.file, sub.line
                    )
                )


class _Loader:
    def __init__(self, parsed: ParseResult) -> None:
        self.parsed = parsed
        self.warnings: list[ConfigWarning] = list(parsed.warnings)

    def load(self) -> tuple[QuickikeConfig, list[ConfigWarning]]:
        root = self.parsed.root
        top = _Reader(self, root, "")
        settings_sec = top.sub("quickike")
        settings = self.settings(settings_sec) if settings_sec else DaemonSettings()
        connections: dict[str, ConnectionConfig] = {}
        conns_sec = top.sub("connections")
        if conns_sec is not None:
            conns = _Reader(self, conns_sec, "connections")
            for name, sec in conns_sec.sections.items():
                conns.used_sections.add(name)
                connections[name] = self.connection(name, sec, settings)
            conns.finish()
        secrets_sec = top.sub("secrets")
        secrets = self.secrets(secrets_sec) if secrets_sec else Secrets()
        for name, why in (
            ("authorities", "CA attributes (CRL/OCSP URIs) are not implemented"),
            ("pools", "address pools (virtual IPs) are not implemented"),
            ("charon", "daemon settings go in 'quickike { }' (same key names as charon's)"),
        ):
            ignored = top.sub(name)
            if ignored is not None:
                self.warnings.append(
                    ConfigWarning(f"section '{name}' ignored: {why}", ignored.file, ignored.line)
                )
        top.finish()
        config = QuickikeConfig(
            connections=MappingProxyType(connections),
            secrets=secrets,
            settings=settings,
            sources=tuple(self.parsed.sources),
            origins=MappingProxyType(_origins(root)),
        )
        return config, self.warnings

    # -- connections ------------------------------------------------------------

    def connection(self, name: str, sec: Section, settings: DaemonSettings) -> ConnectionConfig:
        r = _Reader(self, sec, f"connections.{name}")
        version = r.get("version", _version, 0)
        local_addrs = r.opt("local_addrs", _addresses) or (AddressSpec.any(),)
        remote_addrs = r.opt("remote_addrs", _addresses) or (AddressSpec.any(),)
        local_port = r.get("local_port", lambda t: parse_int(t, 0, 65535), 0) or settings.port
        remote_port = r.get("remote_port", lambda t: parse_int(t, 1, 65535), 500)
        proposals = self.proposals(r, "proposals", ProtocolId.IKE)
        dpd_timeout_setting = r.setting("dpd_timeout")
        dpd_timeout = r.get("dpd_timeout", parse_duration, 0.0)
        if dpd_timeout_setting is not None and dpd_timeout:
            r.warn(
                f"{r.label('dpd_timeout')} has no effect with IKEv2 (as in strongSwan): "
                "liveness checks give up after the retransmission schedule",
                dpd_timeout_setting,
            )
        rekey = r.opt("rekey_time", parse_duration)
        reauth = r.opt("reauth_time", parse_duration)
        if rekey is None and reauth is None:
            rekey, reauth = 14400.0, 0.0
        rekey = rekey or 0.0
        reauth = reauth or 0.0
        over = r.opt("over_time", parse_duration)
        if over is None:
            over = max(rekey, reauth) / 10
        rand = r.opt("rand_time", parse_duration)
        if rand is None:
            base = min(rekey, reauth) if rekey and reauth else max(rekey, reauth)
            rand = min(over, base / 2)

        local_rounds: list[tuple[int, int, AuthConfig]] = []
        remote_rounds: list[tuple[int, int, AuthConfig]] = []
        children: list[ChildConfig] = []
        qcd_options: dict[str, str] = {}
        for position, (sub_name, sub) in enumerate(sec.sections.items()):
            lowered = sub_name.lower()
            if lowered.startswith("local") or lowered.startswith("remote"):
                r.used_sections.add(sub_name)
                is_local = lowered.startswith("local")
                auth = self.auth_round(r.path, sub_name, sub, is_local)
                (local_rounds if is_local else remote_rounds).append((auth.round, position, auth))
            elif lowered == "children":
                r.used_sections.add(sub_name)
                kids = _Reader(self, sub, f"{r.path}.{sub_name}")
                for child_name, child_sec in sub.sections.items():
                    kids.used_sections.add(child_name)
                    children.append(self.child(kids.path, child_name, child_sec))
                kids.finish()
            elif sub_name == "qcd_options":
                r.used_sections.add(sub_name)
                qcd_options = self.flat_options(f"{r.path}.qcd_options", sub)
        local = tuple(a for _, _, a in sorted(local_rounds, key=lambda t: t[:2])) or (
            AuthConfig(name="local"),
        )
        remote = tuple(a for _, _, a in sorted(remote_rounds, key=lambda t: t[:2])) or (
            AuthConfig(name="remote", id=Identity.any()),
        )
        for rounds, side in ((local, "local"), (remote, "remote")):
            if len(rounds) > 1:
                r.warn(
                    f"{r.path}: {len(rounds)} {side} authentication rounds configured; multiple "
                    "authentication (RFC 4739) is not implemented, only the first round is used"
                )
        conn = ConnectionConfig(
            name=name,
            version=version,
            local_addrs=local_addrs,
            remote_addrs=remote_addrs,
            local_port=local_port,
            remote_port=remote_port,
            proposals=proposals,
            encap=r.get("encap", parse_bool, False),
            mobike=r.get("mobike", parse_bool, True),
            dpd_delay=r.get("dpd_delay", parse_duration, 0.0),
            dpd_timeout=dpd_timeout,
            fragmentation=r.get(
                "fragmentation", lambda t: parse_choice(t, _FRAGMENTATION), Fragmentation.YES
            ),
            send_certreq=r.get("send_certreq", parse_bool, True),
            send_cert=r.get(
                "send_cert", lambda t: parse_choice(t, _SEND_CERT), SendCertPolicy.IFASKED
            ),
            keyingtries=r.get("keyingtries", lambda t: parse_int(t, 0, UINT32), 1),
            unique=r.get("unique", lambda t: parse_choice(t, _UNIQUE), UniquePolicy.NO),
            rekey_time=rekey,
            reauth_time=reauth,
            over_time=over,
            rand_time=rand,
            local=local,
            remote=remote,
            children=tuple(children),
            qcd=r.get("qcd", parse_bool, True),
            qcd_options=MappingProxyType(qcd_options),
            origin=sec.where,
        )
        starters = [c.name for c in conn.children if c.start_action != StartAction.NONE]
        if starters and not any(a.is_concrete for a in conn.remote_addrs):
            r.warn(
                f"{r.path}: children {', '.join(starters)} have a start_action but remote_addrs "
                "names no specific host, so quickike cannot initiate them"
            )
        r.finish(_CONN_UNSUPPORTED)
        return conn

    def proposals(self, r: _Reader, key: str, protocol: ProtocolId) -> tuple[str, ...]:
        setting = r.setting(key)
        if setting is None:
            return ("default",)
        assert setting.value is not None
        items = parse_list(setting.value)
        if not items:
            return ("default",)
        problem = check_proposals(items, protocol)
        if problem is not None:
            raise r.fail(setting, f"invalid proposal {problem}")
        return items

    def auth_round(self, parent: str, name: str, sec: Section, is_local: bool) -> AuthConfig:
        r = _Reader(self, sec, f"{parent}.{name}")
        auth_class, auth_spec = r.get("auth", _auth, (AuthClass.PUBKEY, "pubkey"))
        ident = self.identity(r, "id")
        if ident is None and not is_local:
            ident = Identity.any()
        for cert_name in sec.sections:
            if cert_name.lower().startswith(("cert", "cacert")):
                r.used_sections.add(cert_name)
                r.warn(
                    f"{r.path}.{cert_name} ignored: certificates on tokens (PKCS#11) are not "
                    "implemented"
                )
        auth = AuthConfig(
            name=name,
            round=r.get("round", lambda t: parse_int(t, 0, UINT32), 0),
            auth=auth_class,
            auth_spec=auth_spec,
            id=ident,
            certs=r.opt("certs", parse_list) or (),
            cacerts=r.opt("cacerts", parse_list) or (),
            pubkeys=r.opt("pubkeys", parse_list) or (),
            revocation=r.get(
                "revocation", lambda t: parse_choice(t, _REVOCATION), Revocation.RELAXED
            ),
            origin=sec.where,
        )
        r.finish(_AUTH_UNSUPPORTED)
        return auth

    def identity(self, r: _Reader, key: str) -> Identity | None:
        setting = r.setting(key)
        if setting is None:
            return None
        assert setting.value is not None
        try:
            ident, warning = parse_identity(setting.value)
        except ValueError as exc:
            raise r.fail(setting, str(exc)) from None
        if warning:
            r.warn(f"{r.label(key)}: {warning}", setting)
        return ident

    def child(self, parent: str, name: str, sec: Section) -> ChildConfig:
        r = _Reader(self, sec, f"{parent}.{name}")
        ah = r.setting("ah_proposals")
        if ah is not None:
            raise r.fail(ah, "AH is not supported by quickike (use esp_proposals)")
        rekey_time = r.get("rekey_time", parse_duration, 3600.0)
        life_time = r.opt("life_time", parse_duration)
        if life_time is None:
            life_time = rekey_time * 110 / 100
        rand_time = r.opt("rand_time", parse_duration)
        if rand_time is None:
            rand_time = life_time - min(life_time, rekey_time)
        rekey_bytes, life_bytes, rand_bytes = _count_limits(r, "bytes", _volume)
        rekey_packets, life_packets, rand_packets = _count_limits(r, "packets", _count)
        if rekey_time and life_time and life_time <= rekey_time:
            where = sec.settings.get("life_time") or sec.settings.get("rekey_time")
            r.warn(
                f"{r.path}: life_time ({life_time:g}s) is not above rekey_time "
                f"({rekey_time:g}s): the CHILD_SA expires before it is rekeyed",
                where,
            )
        updown_setting = r.setting("updown")
        if updown_setting is not None:
            r.warn(
                f"{r.label('updown')} is accepted but quickike runs no updown scripts",
                updown_setting,
            )
        ipcomp = r.opt("ipcomp", parse_bool)
        if ipcomp:
            r.warn(
                f"{r.label('ipcomp')} ignored: IPComp is not implemented", sec.settings["ipcomp"]
            )
        child = ChildConfig(
            name=name,
            local_ts=r.opt("local_ts", _selectors) or (TrafficSelectorConfig.dynamic_any(),),
            remote_ts=r.opt("remote_ts", _selectors) or (TrafficSelectorConfig.dynamic_any(),),
            esp_proposals=self.proposals(r, "esp_proposals", ProtocolId.ESP),
            mode=r.get("mode", _mode, IpsecMode.TUNNEL),
            start_action=r.get("start_action", _start_action, StartAction.NONE),
            dpd_action=r.get("dpd_action", lambda t: parse_choice(t, _DPD_ACTION), DpdAction.CLEAR),
            close_action=r.get(
                "close_action", lambda t: parse_choice(t, _CLOSE_ACTION), CloseAction.NONE
            ),
            rekey_time=rekey_time,
            life_time=life_time,
            rand_time=rand_time,
            rekey_bytes=rekey_bytes,
            life_bytes=life_bytes,
            rand_bytes=rand_bytes,
            rekey_packets=rekey_packets,
            life_packets=life_packets,
            rand_packets=rand_packets,
            inactivity=r.get("inactivity", parse_duration, 0.0),
            reqid=r.get("reqid", lambda t: parse_int(t, 0, UINT32), 0),
            replay_window=r.get("replay_window", lambda t: parse_int(t, 0, UINT32), 32),
            policies=r.get("policies", parse_bool, True),
            hostaccess=r.get("hostaccess", parse_bool, False),
            updown=updown_setting.value if updown_setting else None,
            origin=sec.where,
        )
        r.finish(_CHILD_UNSUPPORTED)
        return child

    def flat_options(self, path: str, sec: Section) -> dict[str, str]:
        for name, sub in sec.sections.items():
            self.warnings.append(
                ConfigWarning(
                    f"section '{name}' in {path} ignored: only keys are allowed", sub.file, sub.line
                )
            )
        return {k: s.value for k, s in sec.settings.items() if s.value is not None}

    # -- secrets ----------------------------------------------------------------

    def secrets(self, sec: Section) -> Secrets:
        top = _Reader(self, sec, "secrets")
        ike: list[IkeSecret] = []
        private: list[PrivateKeySecret] = []
        for name, sub in sec.sections.items():
            lowered = name.lower()
            path = f"secrets.{name}"
            if lowered.startswith("ike"):
                top.used_sections.add(name)
                ike.append(self.ike_secret(path, name, sub))
            elif lowered.startswith(_SECRET_KINDS_PRIVATE):
                top.used_sections.add(name)
                kind = next(k for k in _SECRET_KINDS_PRIVATE if lowered.startswith(k))
                private.append(self.private_secret(path, name, kind, sub))
            elif lowered.startswith(_SECRET_KINDS_UNSUPPORTED):
                top.used_sections.add(name)
                self.warnings.append(
                    ConfigWarning(
                        f"{path} ignored: EAP, XAuth, NTLM and token secrets are not implemented",
                        sub.file,
                        sub.line,
                    )
                )
        top.finish()
        return Secrets(tuple(ike), tuple(private))

    def secret_value(self, r: _Reader, sec: Section) -> bytes:
        setting = r.setting("secret")
        if setting is None:
            raise ConfigError(f"{r.path} has no 'secret'", sec.file, sec.line)
        assert setting.value is not None
        try:
            return parse_secret(setting.value)
        except ValueError as exc:
            raise r.fail(setting, str(exc)) from None

    def ike_secret(self, path: str, name: str, sec: Section) -> IkeSecret:
        r = _Reader(self, sec, path)
        secret = self.secret_value(r, sec)
        ids: list[Identity] = []
        for key in sec.settings:
            if key.lower().startswith("id"):
                ident = self.identity(r, key)
                if ident is not None:
                    ids.append(ident)
        r.finish()
        return IkeSecret(name, tuple(ids), secret, sec.where)

    def private_secret(self, path: str, name: str, kind: str, sec: Section) -> PrivateKeySecret:
        r = _Reader(self, sec, path)
        file_setting = r.setting("file")
        if file_setting is None or not file_setting.value:
            raise ConfigError(f"{path} has no 'file'", sec.file, sec.line)
        secret = self.secret_value(r, sec)
        r.finish()
        return PrivateKeySecret(name, kind, file_setting.value, secret, sec.where)

    # -- daemon settings --------------------------------------------------------

    def settings(self, sec: Section) -> DaemonSettings:
        """``quickike { }``.

        charon counterparts (same names and defaults): ``port`` 500,
        ``port_nat_t`` 4500, ``retransmit_timeout`` 4.0, ``retransmit_base``
        1.8, ``retransmit_tries`` 5, ``retransmit_jitter`` 0 (percent),
        ``retransmit_limit`` 0 (seconds, no cap), ``cookie_threshold`` 10,
        ``half_open_timeout`` 30s, ``fragment_size`` 1280, ``keep_alive`` 20s.
        quickike's own: ``state_dir`` (/var/lib/quickike), ``vici_socket``
        (unix://STATE_DIR/quickike.vici), ``qcd { enable = yes,
        secret_length = 32 (16..64), ... }``, ``metrics { enable = no,
        listen = 127.0.0.1:9464 }``, ``log { level = info, format =
        text|json, file = (stderr) }``, ``keylog = PATH`` (off),
        ``dataplane = none|userspace|recording`` (none).  Other sub-sections
        are kept raw in ``DaemonSettings.extra``.
        """
        r = _Reader(self, sec, "quickike")
        retransmit = RetransmitPolicy(
            timeout=r.get("retransmit_timeout", lambda t: parse_float(t, 0.001, 86400.0), 4.0),
            base=r.get("retransmit_base", lambda t: parse_float(t, 0.001, 100.0), 1.8),
            tries=r.get("retransmit_tries", lambda t: parse_int(t, 0, 1000), 5),
            jitter=r.get("retransmit_jitter", lambda t: parse_float(t, 0.0, 100.0), 0.0),
            limit=r.get("retransmit_limit", lambda t: parse_float(t, 0.0, 86400.0), 0.0),
        )
        state_dir = r.get("state_dir", _nonempty, DEFAULT_STATE_DIR)
        vici_socket = r.get(
            "vici_socket", _socket_uri, f"unix://{os.path.join(state_dir, 'quickike.vici')}"
        )
        keylog_setting = r.setting("keylog")
        keylog = keylog_setting.value if keylog_setting and keylog_setting.value else None
        if keylog_setting is not None and keylog:
            r.warn(
                f"quickike.keylog writes IKE and ESP keys to '{keylog}': for debugging only",
                keylog_setting,
            )
        settings = DaemonSettings(
            port=r.get("port", lambda t: parse_int(t, 0, 65535), 500),
            port_nat_t=r.get("port_nat_t", lambda t: parse_int(t, 0, 65535), 4500),
            retransmit=retransmit,
            cookie_threshold=r.get("cookie_threshold", lambda t: parse_int(t, 0, UINT32), 10),
            half_open_timeout=r.get("half_open_timeout", parse_duration, 30.0),
            fragment_size=r.get("fragment_size", lambda t: parse_int(t, 256, 65535), 1280),
            keep_alive=r.get("keep_alive", parse_duration, 20.0),
            state_dir=state_dir,
            vici_socket=vici_socket,
            qcd=self.qcd_settings(r),
            metrics=self.metrics_settings(r),
            log=self.log_settings(r),
            keylog=keylog,
            dataplane=r.get(
                "dataplane", lambda t: parse_choice(t, _DATAPLANES), DataplaneKind.NONE
            ),
            extra=MappingProxyType(
                {
                    name: _raw(sub)
                    for name, sub in sec.sections.items()
                    if name not in r.used_sections
                }
            ),
        )
        limits = sec.sections.get("limits")
        if limits is not None:
            try:
                parse_limits(_raw(limits))
            except ValueError as e:
                raise ConfigError(str(e), limits.file, limits.line) from None
        r.used_sections.update(sec.sections)
        r.finish()
        return settings

    def qcd_settings(self, parent: _Reader) -> QcdSettings:
        sec = parent.sub("qcd")
        if sec is None:
            return QcdSettings()
        r = _Reader(self, sec, "quickike.qcd")
        result = QcdSettings(
            enable=r.get("enable", parse_bool, True),
            secret_length=r.get("secret_length", lambda t: parse_int(t, 16, 64), 32),
            options=_raw(sec),
        )
        # other keys belong to the QCD plug-in: no unknown-key warnings here
        return result

    def metrics_settings(self, parent: _Reader) -> MetricsSettings:
        sec = parent.sub("metrics")
        if sec is None:
            return MetricsSettings()
        r = _Reader(self, sec, "quickike.metrics")
        host, port = r.get("listen", _listen, ("127.0.0.1", 9464))
        result = MetricsSettings(enable=r.get("enable", parse_bool, False), host=host, port=port)
        r.finish()
        return result

    def log_settings(self, parent: _Reader) -> LogSettings:
        sec = parent.sub("log")
        if sec is None:
            return LogSettings()
        r = _Reader(self, sec, "quickike.log")
        file_setting = r.setting("file")
        result = LogSettings(
            level=r.get("level", lambda t: parse_choice(t, _LOG_LEVELS), "info"),
            format=r.get("format", lambda t: parse_choice(t, _LOG_FORMATS), LogFormat.TEXT),
            file=file_setting.value if file_setting and file_setting.value else None,
        )
        r.finish()
        return result


# -- value converters specific to this file -------------------------------------


def _version(text: str) -> int:
    version = parse_int(text)
    if version == 1:
        raise ValueError("IKEv1 is not supported by quickike (use version = 2 or 0)")
    if version not in (0, 2):
        raise ValueError(f"unknown IKE version {version} (use 2, or 0 for any)")
    return version


def _addresses(text: str) -> tuple[AddressSpec, ...]:
    return tuple(parse_address_spec(item) for item in parse_list(text))


def _selectors(text: str) -> tuple[TrafficSelectorConfig, ...]:
    return tuple(parse_traffic_selector(item) for item in parse_list(text))


def _volume(text: str) -> int:
    value = parse_volume(text)
    if value > UINT64:
        raise ValueError(f"'{text}' is above 2^64-1 bytes")
    return value


def _count(text: str) -> int:
    return parse_int(text, 0, UINT64)


def _count_limits(r: _Reader, kind: str, parse: Callable[[str], int]) -> tuple[int, int, int]:
    """``rekey_<kind>``, ``life_<kind>``, ``rand_<kind>`` of a CHILD SA with charon's defaults:
    life 110 % of rekey, rand the gap between the two."""
    rekey = r.get(f"rekey_{kind}", parse, 0)
    life = r.opt(f"life_{kind}", parse)
    if life is None:
        life = rekey * 110 // 100
    rand = r.opt(f"rand_{kind}", parse)
    if rand is None:
        rand = life - min(life, rekey)
    return rekey, life, rand


def _nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _socket_uri(text: str) -> str:
    uri = text.strip()
    if not uri.startswith(("unix://", "tcp://")) or len(uri) <= len("unix://"):
        raise ValueError(f"'{uri}' is not a unix:// or tcp:// URI")
    return uri


def _listen(text: str) -> tuple[str, int]:
    s = text.strip()
    if s.isascii() and s.isdigit():
        return "127.0.0.1", parse_int(s, 0, 65535)
    if s.startswith("["):
        host, sep, port = s[1:].partition("]:")
    else:
        host, sep, port = s.rpartition(":")
    if not sep or not host:
        raise ValueError(f"'{s}' is not HOST:PORT")
    return host, parse_int(port, 0, 65535)


def _auth(text: str) -> tuple[AuthClass, str]:
    spec = text.strip()
    lowered = spec.lower()
    if lowered == "psk":
        return AuthClass.PSK, spec
    if lowered.startswith(("pubkey", "rsa", "ecdsa", "ed25519", "ed448", "ike:")):
        return AuthClass.PUBKEY, spec
    if lowered.startswith(("eap", "xauth")):
        raise ValueError(f"'{spec}': EAP and XAuth authentication are not supported by quickike")
    raise ValueError(f"unknown authentication method '{spec}' (use pubkey, rsa, ecdsa or psk)")


def _mode(text: str) -> IpsecMode:
    word = text.strip().lower()
    if word == "tunnel":
        return IpsecMode.TUNNEL
    if word == "transport":
        return IpsecMode.TRANSPORT
    if word in ("transport_proxy", "beet", "pass", "drop"):
        raise ValueError(f"mode '{word}' is not supported by quickike (use tunnel or transport)")
    raise ValueError(f"'{text}' is not one of: transport, tunnel")


def _start_action(text: str) -> StartAction:
    words = [w.strip().lower() for w in text.split("|")]
    result = StartAction.NONE
    for word in words:
        if word not in _START_WORDS:
            raise ValueError(f"'{text}' is not one of: none, trap, start, trap|start")
        if word == "none" and len(words) > 1:
            raise ValueError(f"'{text}': none cannot be combined")
        result |= _START_WORDS[word]
    return result


def _raw(sec: Section) -> RawTree:
    tree: dict[str, str | RawTree] = {
        key: setting.value for key, setting in sec.settings.items() if setting.value is not None
    }
    for name, sub in sec.sections.items():
        tree[name] = _raw(sub)
    return MappingProxyType(tree)


def _origins(root: Section) -> dict[str, str]:
    origins: dict[str, str] = {}
    stack: list[tuple[str, Section]] = [("", root)]
    while stack:
        prefix, sec = stack.pop()
        for key, setting in sec.settings.items():
            origins[f"{prefix}{key}"] = setting.where
        for name, sub in sec.sections.items():
            origins[f"{prefix}{name}"] = sub.where
            stack.append((f"{prefix}{name}.", sub))
    return origins
