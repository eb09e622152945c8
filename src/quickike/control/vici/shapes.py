"""Builders for charon-shaped VICI messages.

swanctl prints whatever keys it finds and silently prints "(null)" or nothing
for the ones it does not, so the exact key names, their order and their value
formats (hex SPIs without 0x, relative seconds, ``IKEv2`` in list-conn but
``2`` in list-sa) matter. These views carry the daemon's facts in typed fields
and render them the way charon 5.9 does; the daemon fills them from engine
snapshots, the test backend from its own tables.

Times are relative seconds computed by the caller from its own clock, because
this module must not read one (the simulator drives a virtual clock).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .backend import QcdEventKind
from .protocol import OutValue

#: charon's CHILD_SA states in which SPIs, algorithms and counters are meaningful
_CHILD_DETAIL_STATES = frozenset({"INSTALLED", "REKEYING", "REKEYED"})

Message = dict[str, OutValue]


def version_message(daemon: str, version: str) -> Message:
    """``version`` reply; sysname/release/machine come from uname as in charon."""
    uts = os.uname()
    return {
        "daemon": daemon,
        "version": version,
        "sysname": uts.sysname,
        "release": uts.release,
        "machine": uts.machine,
    }


def format_uptime(seconds: float) -> str:
    """Relative time the way strongSwan prints it: the largest unit that still reads as
    "more than two", e.g. ``95 seconds``, ``3 minutes``, ``5 hours``, ``3 days``."""
    value = max(0, int(seconds))
    unit = "second"
    for name, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if value > 2 * size:
            value //= size
            unit = name
            break
    return f"{value} {unit}{'' if value == 1 else 's'}"


def format_since(epoch_seconds: float) -> str:
    """Absolute local time as strongSwan prints it, e.g. ``Nov 26 23:52:40 2026``."""
    return time.strftime("%b %d %H:%M:%S %Y", time.localtime(epoch_seconds))


def stats_message(
    *,
    running_seconds: float,
    started_at: float,
    ikesas_total: int,
    ikesas_half_open: int,
    workers_total: int = 1,
    workers_idle: int = 1,
    queued: int = 0,
    scheduled: int = 0,
    plugins: Sequence[str] = (),
    extra: Mapping[str, OutValue] | None = None,
) -> Message:
    """``stats`` reply. charon's worker/queue sections are per job priority; quickike runs
    one event loop, so it reports that as one worker and its backlog as "medium"."""
    busy = workers_total - workers_idle
    message: Message = {
        "uptime": {"running": format_uptime(running_seconds), "since": format_since(started_at)},
        "workers": {
            "total": workers_total,
            "idle": workers_idle,
            "active": {"critical": 0, "high": 0, "medium": busy, "low": 0},
        },
        "queues": {"critical": 0, "high": 0, "medium": queued, "low": 0},
        "scheduled": scheduled,
        "ikesas": {"total": ikesas_total, "half-open": ikesas_half_open},
        "plugins": list(plugins),
    }
    if extra:
        message.update(extra)
    return message


def _flag(value: bool) -> str | None:
    # charon adds boolean keys only when true
    return "yes" if value else None


@dataclass(slots=True)
class ChildSaView:
    """One CHILD_SA as list-sa / child-updown show it."""

    name: str
    uniqueid: int
    reqid: int
    spi_in: int
    spi_out: int
    state: str = "INSTALLED"
    mode: str = "TUNNEL"
    protocol: str = "ESP"
    encap: bool = False
    encr_alg: str | None = None
    encr_keysize: int | None = None
    integ_alg: str | None = None
    integ_keysize: int | None = None
    dh_group: str | None = None
    esn: bool = False
    bytes_in: int = 0
    packets_in: int = 0
    use_in: int | None = None
    bytes_out: int = 0
    packets_out: int = 0
    use_out: int | None = None
    rekey_time: int | None = None
    life_time: int | None = None
    install_time: int = 0
    local_ts: Sequence[str] = ()
    remote_ts: Sequence[str] = ()

    @property
    def key(self) -> str:
        """Section name inside ``child-sas`` (charon 5.9: ``<name>-<uniqueid>``)."""
        return f"{self.name}-{self.uniqueid}"

    def to_message(self) -> Message:
        out: Message = {
            "name": self.name,
            "uniqueid": self.uniqueid,
            "reqid": self.reqid,
            "state": self.state,
            "mode": self.mode,
        }
        if self.state in _CHILD_DETAIL_STATES:
            out.update(
                {
                    "protocol": self.protocol,
                    "encap": _flag(self.encap),
                    "spi-in": f"{self.spi_in:08x}",
                    "spi-out": f"{self.spi_out:08x}",
                    "encr-alg": self.encr_alg,
                    "encr-keysize": self.encr_keysize or None,
                    "integ-alg": self.integ_alg,
                    "integ-keysize": self.integ_keysize or None,
                    "dh-group": self.dh_group,
                    "esn": "1" if self.esn else None,
                    "bytes-in": self.bytes_in,
                    "packets-in": self.packets_in,
                    "use-in": self.use_in,
                    "bytes-out": self.bytes_out,
                    "packets-out": self.packets_out,
                    "use-out": self.use_out,
                    "rekey-time": self.rekey_time,
                    "life-time": self.life_time,
                    "install-time": self.install_time,
                }
            )
        out["local-ts"] = list(self.local_ts)
        out["remote-ts"] = list(self.remote_ts)
        return out


@dataclass(slots=True)
class IkeSaView:
    """One IKE_SA as list-sa / ike-updown show it. ``extra`` carries quickike's own keys
    (e.g. ``qcd = yes``); swanctl ignores keys it does not know."""

    name: str
    uniqueid: int
    local_host: str
    remote_host: str
    initiator_spi: int
    responder_spi: int
    initiator: bool
    local_port: int = 500
    remote_port: int = 500
    local_id: str = ""
    remote_id: str = ""
    version: int = 2
    state: str = "ESTABLISHED"
    remote_eap_id: str | None = None
    nat_local: bool = False
    nat_remote: bool = False
    nat_fake: bool = False
    nat_any: bool = False
    encr_alg: str | None = None
    encr_keysize: int | None = None
    integ_alg: str | None = None
    integ_keysize: int | None = None
    prf_alg: str | None = None
    dh_group: str | None = None
    established: int | None = None
    rekey_time: int | None = None
    reauth_time: int | None = None
    local_vips: Sequence[str] = ()
    remote_vips: Sequence[str] = ()
    tasks_queued: Sequence[str] = ()
    tasks_active: Sequence[str] = ()
    tasks_passive: Sequence[str] = ()
    children: Sequence[ChildSaView] = ()
    extra: Mapping[str, OutValue] = field(default_factory=dict)

    def body(self, children: Iterable[ChildSaView] | None = None) -> Message:
        """The section under the IKE_SA name; ``children=None`` omits child-sas."""
        out: Message = {
            "uniqueid": self.uniqueid,
            "version": self.version,
            "state": self.state,
            "local-host": self.local_host,
            "local-port": self.local_port,
            "local-id": self.local_id,
            "remote-host": self.remote_host,
            "remote-port": self.remote_port,
            "remote-id": self.remote_id,
            "remote-eap-id": self.remote_eap_id,
            "initiator": _flag(self.initiator),
            "initiator-spi": f"{self.initiator_spi:016x}",
            "responder-spi": f"{self.responder_spi:016x}",
            "nat-local": _flag(self.nat_local),
            "nat-remote": _flag(self.nat_remote),
            "nat-fake": _flag(self.nat_fake),
            "nat-any": _flag(self.nat_any),
            "encr-alg": self.encr_alg,
            "encr-keysize": self.encr_keysize or None,
            "integ-alg": self.integ_alg,
            "integ-keysize": self.integ_keysize or None,
            "prf-alg": self.prf_alg,
            "dh-group": self.dh_group,
        }
        if self.state == "ESTABLISHED" and self.established is not None:
            out["established"] = self.established
            out["rekey-time"] = self.rekey_time
            out["reauth-time"] = self.reauth_time
        # charon leaves out empty vip/task lists entirely
        for key, items in (
            ("local-vips", self.local_vips),
            ("remote-vips", self.remote_vips),
            ("tasks-queued", self.tasks_queued),
            ("tasks-active", self.tasks_active),
            ("tasks-passive", self.tasks_passive),
        ):
            if items:
                out[key] = list(items)
        out.update(self.extra)
        if children is not None:
            out["child-sas"] = {child.key: child.to_message() for child in children}
        return out

    def to_message(self) -> Message:
        """The ``list-sa`` event: ``{name: {..., child-sas: {...}}}``."""
        return {self.name: self.body(self.children)}


def ike_updown_event(ike: IkeSaView, up: bool) -> Message:
    return {"up": _flag(up), ike.name: ike.body()}


def child_updown_event(ike: IkeSaView, child: ChildSaView, up: bool) -> Message:
    return {"up": _flag(up), ike.name: ike.body([child])}


def ike_rekey_event(old: IkeSaView, new: IkeSaView) -> Message:
    return {new.name: {"old": old.body(), "new": new.body()}}


def child_rekey_event(ike: IkeSaView, old: ChildSaView, new: ChildSaView) -> Message:
    body = ike.body()
    body["child-sas"] = {new.key: {"old": old.to_message(), "new": new.to_message()}}
    return {ike.name: body}


def log_event(
    msg: str,
    *,
    group: str = "CFG",
    level: int = 1,
    thread: int = 0,
    ike_name: str | None = None,
    ike_uniqueid: int | None = None,
) -> Message:
    """The ``log`` event (``control-log`` has the same keys minus ``thread``)."""
    return {
        "group": group,
        "level": level,
        "thread": thread,
        "ikesa-name": ike_name,
        "ikesa-uniqueid": ike_uniqueid,
        "msg": msg,
    }


def qcd_event(
    kind: QcdEventKind,
    *,
    ike_name: str | None = None,
    ike_uniqueid: int | None = None,
    remote_host: str | None = None,
    remote_port: int | None = None,
    initiator_spi: int | None = None,
    responder_spi: int | None = None,
    msg: str | None = None,
) -> Message:
    """quickike's ``qcd`` event: a QCD token was sent, accepted or rejected, or a token
    arrived that looks spoofed. Never carries the token or its secret."""
    return {
        "kind": kind.value,
        "ikesa-name": ike_name,
        "ikesa-uniqueid": ike_uniqueid,
        "remote-host": remote_host,
        "remote-port": remote_port,
        "initiator-spi": None if initiator_spi is None else f"{initiator_spi:016x}",
        "responder-spi": None if responder_spi is None else f"{responder_spi:016x}",
        "msg": msg,
    }


@dataclass(slots=True)
class AuthView:
    """One authentication round of a connection. ``auth_class`` uses charon's names:
    ``pre-shared key``, ``public key``, ``EAP``, ``any``."""

    auth_class: str
    id: str | None = None
    eap_id: str | None = None
    groups: Sequence[str] = ()
    certs: Sequence[str] = ()
    cacerts: Sequence[str] = ()

    def to_message(self) -> Message:
        return {
            "class": self.auth_class,
            "id": self.id,
            "eap_id": self.eap_id,
            "groups": list(self.groups),
            "certs": list(self.certs),
            "cacerts": list(self.cacerts),
        }


@dataclass(slots=True)
class ChildConfigView:
    """A CHILD_SA config as list-conn shows it (lifetimes in seconds, 0 = never)."""

    name: str
    mode: str = "TUNNEL"
    rekey_time: int = 3600
    rekey_bytes: int = 0
    rekey_packets: int = 0
    dpd_action: str = "clear"
    close_action: str = "clear"
    local_ts: Sequence[str] = ("dynamic",)
    remote_ts: Sequence[str] = ("dynamic",)
    interface: str | None = None
    priority: int | None = None

    def to_message(self) -> Message:
        return {
            "mode": self.mode,
            "rekey_time": self.rekey_time,
            "rekey_bytes": self.rekey_bytes,
            "rekey_packets": self.rekey_packets,
            "dpd_action": self.dpd_action,
            "close_action": self.close_action,
            "local-ts": list(self.local_ts),
            "remote-ts": list(self.remote_ts),
            "interface": self.interface,
            "priority": self.priority or None,
        }


@dataclass(slots=True)
class ConnView:
    """A loaded connection as the ``list-conn`` event shows it."""

    name: str
    local_addrs: Sequence[str] = ("%any",)
    remote_addrs: Sequence[str] = ("%any",)
    version: str = "IKEv2"
    reauth_time: int = 0
    rekey_time: int = 14400
    unique: str = "UNIQUE_NO"
    dpd_delay: int = 0
    dpd_timeout: int = 0
    local_auths: Sequence[AuthView] = ()
    remote_auths: Sequence[AuthView] = ()
    children: Sequence[ChildConfigView] = ()
    extra: Mapping[str, OutValue] = field(default_factory=dict)

    def to_message(self) -> Message:
        body: Message = {
            "local_addrs": list(self.local_addrs),
            "remote_addrs": list(self.remote_addrs),
            "version": self.version,
            "reauth_time": self.reauth_time,
            "rekey_time": self.rekey_time,
            "unique": self.unique,
            "dpd_delay": self.dpd_delay or None,
            "dpd_timeout": self.dpd_timeout or None,
        }
        body.update(self.extra)
        for index, auth in enumerate(self.local_auths, 1):
            body[f"local-{index}"] = auth.to_message()
        for index, auth in enumerate(self.remote_auths, 1):
            body[f"remote-{index}"] = auth.to_message()
        body["children"] = {child.name: child.to_message() for child in self.children}
        return {self.name: body}
