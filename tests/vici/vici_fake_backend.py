"""A ViciBackend holding real data structures, standing in for the engine.

Connections loaded over VICI are stored and listed back; initiate creates IKE and
CHILD SAs (reusing the IKE SA of a connection, as charon does), terminate removes
them, rekey replaces SPIs, and every change is published as the charon event the
daemon will publish. Time is a field the test drives, never the wall clock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from quickike import __version__
from quickike.control.config.values import parse_duration
from quickike.control.vici.backend import (
    BackendError,
    EventSink,
    InitiateRequest,
    LogCallback,
    LogRecord,
    QcdEventKind,
    SaSelector,
    SharedSecret,
    TerminateRequest,
    TerminateResult,
)
from quickike.control.vici.protocol import OutSection, Section, get_list, get_str
from quickike.control.vici.shapes import (
    AuthView,
    ChildConfigView,
    ChildSaView,
    ConnView,
    IkeSaView,
    child_rekey_event,
    child_updown_event,
    ike_rekey_event,
    ike_updown_event,
    qcd_event,
    stats_message,
    version_message,
)

_AUTH_CLASSES = {"psk": "pre-shared key", "pubkey": "public key", "rsa": "public key"}


def _seconds(text: str | None, default: int) -> int:
    if text is None:
        return default
    try:
        return int(parse_duration(text))
    except ValueError:
        raise BackendError(f"invalid duration {text!r}") from None


def _host(addrs: Sequence[str], fallback: str) -> str:
    for addr in addrs:
        if addr and addr != "%any" and "/" not in addr and "-" not in addr:
            return addr
    return fallback


@dataclass(slots=True)
class Child:
    name: str
    uniqueid: int
    reqid: int
    spi_in: int
    spi_out: int
    installed_at: float
    local_ts: list[str]
    remote_ts: list[str]
    bytes_in: int = 0
    packets_in: int = 0
    bytes_out: int = 0
    packets_out: int = 0


@dataclass(slots=True)
class IkeSa:
    name: str
    uniqueid: int
    local_host: str
    remote_host: str
    local_id: str
    remote_id: str
    spi_i: int
    spi_r: int
    established_at: float
    rekey_after: int
    children: dict[int, Child] = field(default_factory=dict)


class FakeBackend:
    def __init__(self, seed: int = 1) -> None:
        self.now = 1000.0
        self.started_at_monotonic = 1000.0
        self.started_at_wall = 1_700_000_000.0
        self.events: EventSink | None = None
        self.conns: dict[str, Section] = {}
        self.shared: dict[str, SharedSecret] = {}
        self.anonymous_shared: list[SharedSecret] = []
        self.sas: dict[int, IkeSa] = {}
        self.reload_count = 0
        self.qcd_generation = 1
        self.tokens_sent = 0
        self.initiate_gate: asyncio.Event | None = None
        self.terminate_gate: asyncio.Event | None = None
        self.calls: list[str] = []
        self._rng = random.Random(seed)
        self._next_ike = 1
        self._next_child = 1
        self._next_reqid = 1

    # ---------------------------------------------------------------- helpers

    def _spi32(self) -> int:
        return self._rng.getrandbits(32) | 0xC0000000

    def _spi64(self) -> int:
        return self._rng.getrandbits(64) | (1 << 63)

    def _publish(self, name: str, message: OutSection) -> None:
        if self.events is not None:
            self.events.publish_event(name, message)

    def _conn_children(self, conn: Section) -> dict[str, Section]:
        children = conn.get("children", {})
        if not isinstance(children, dict):
            return {}
        return {name: cfg for name, cfg in children.items() if isinstance(cfg, dict)}

    def _auth_id(self, conn: Section, side: str) -> str:
        for key, value in conn.items():
            if key.startswith(side) and isinstance(value, dict):
                ident = get_str(value, "id")
                if ident:
                    return ident
        return ""

    def ike_view(self, sa: IkeSa, children: Iterable[Child] | None = None) -> IkeSaView:
        kids = list(sa.children.values()) if children is None else list(children)
        return IkeSaView(
            name=sa.name,
            uniqueid=sa.uniqueid,
            local_host=sa.local_host,
            remote_host=sa.remote_host,
            local_port=4500,
            remote_port=4500,
            local_id=sa.local_id,
            remote_id=sa.remote_id,
            initiator=True,
            initiator_spi=sa.spi_i,
            responder_spi=sa.spi_r,
            nat_any=False,
            encr_alg="AES_GCM_16",
            encr_keysize=256,
            prf_alg="PRF_HMAC_SHA2_256",
            dh_group="CURVE_25519",
            established=int(self.now - sa.established_at),
            rekey_time=max(0, int(sa.established_at + sa.rekey_after - self.now)),
            children=[self.child_view(c) for c in kids],
            extra={"qcd": "yes"},
        )

    def child_view(self, child: Child) -> ChildSaView:
        return ChildSaView(
            name=child.name,
            uniqueid=child.uniqueid,
            reqid=child.reqid,
            spi_in=child.spi_in,
            spi_out=child.spi_out,
            encap=True,
            encr_alg="AES_GCM_16",
            encr_keysize=256,
            bytes_in=child.bytes_in,
            packets_in=child.packets_in,
            use_in=3 if child.packets_in else None,
            bytes_out=child.bytes_out,
            packets_out=child.packets_out,
            rekey_time=max(0, int(child.installed_at + 3300 - self.now)),
            life_time=max(0, int(child.installed_at + 3600 - self.now)),
            install_time=int(self.now - child.installed_at),
            local_ts=child.local_ts,
            remote_ts=child.remote_ts,
        )

    def _find_child_cfg(self, request: InitiateRequest) -> tuple[str, str | None]:
        if request.child is None:
            assert request.ike is not None
            if request.ike not in self.conns:
                raise BackendError(f"IKE_SA config '{request.ike}' not found")
            return request.ike, None
        for name, conn in self.conns.items():
            if request.ike is not None and name != request.ike:
                continue
            if request.child in self._conn_children(conn):
                return name, request.child
        raise BackendError(f"CHILD_SA config '{request.child}' not found")

    # ---------------------------------------------------------------- queries

    def version(self) -> OutSection:
        return version_message("quickike", __version__)

    def stats(self) -> OutSection:
        return stats_message(
            running_seconds=self.now - self.started_at_monotonic,
            started_at=self.started_at_wall,
            ikesas_total=len(self.sas),
            ikesas_half_open=0,
            plugins=["quickike-engine", "qcd", "vici"],
        )

    def list_sas(self) -> Iterable[OutSection]:
        return [self.ike_view(sa).to_message() for sa in self.sas.values()]

    def list_conns(self) -> Iterable[OutSection]:
        out = []
        for name, conn in self.conns.items():
            children = []
            for child_name, cfg in self._conn_children(conn).items():
                children.append(
                    ChildConfigView(
                        name=child_name,
                        mode=(get_str(cfg, "mode") or "tunnel").upper(),
                        rekey_time=_seconds(get_str(cfg, "rekey_time"), 3600),
                        dpd_action=get_str(cfg, "dpd_action") or "clear",
                        local_ts=get_list(cfg, "local_ts") or ["dynamic"],
                        remote_ts=get_list(cfg, "remote_ts") or ["dynamic"],
                    )
                )
            auths: dict[str, list[AuthView]] = {"local": [], "remote": []}
            for key, value in conn.items():
                side = key.split("-", 1)[0]
                if side in auths and isinstance(value, dict):
                    kind = get_str(value, "auth") or "pubkey"
                    auths[side].append(
                        AuthView(
                            auth_class=_AUTH_CLASSES.get(kind, "EAP" if "eap" in kind else kind),
                            id=get_str(value, "id"),
                        )
                    )
            out.append(
                ConnView(
                    name=name,
                    local_addrs=get_list(conn, "local_addrs") or ["%any"],
                    remote_addrs=get_list(conn, "remote_addrs") or ["%any"],
                    rekey_time=_seconds(get_str(conn, "rekey_time"), 14400),
                    dpd_delay=_seconds(get_str(conn, "dpd_delay"), 0),
                    local_auths=auths["local"],
                    remote_auths=auths["remote"],
                    children=children,
                ).to_message()
            )
        return out

    def get_conns(self) -> Sequence[str]:
        return list(self.conns)

    def get_shared(self) -> Sequence[str]:
        return list(self.shared)

    def qcd_show(self) -> OutSection:
        return {
            "enabled": "yes",
            "token-generation": self.qcd_generation,
            "tokens-sent": self.tokens_sent,
        }

    def qcd_rotate(self) -> OutSection:
        self.qcd_generation += 1
        return {"token-generation": self.qcd_generation}

    # ---------------------------------------------------------------- control

    async def initiate(self, request: InitiateRequest, log: LogCallback) -> None:
        self.calls.append("initiate")
        conn_name, child_name = self._find_child_cfg(request)
        conn = self.conns[conn_name]
        sa = next((s for s in self.sas.values() if s.name == conn_name), None)
        if sa is None:
            uid = self._next_ike
            local = _host(get_list(conn, "local_addrs"), "192.0.2.1")
            remote = _host(get_list(conn, "remote_addrs"), "192.0.2.2")
            log(
                LogRecord(
                    f"initiating IKE_SA {conn_name}[{uid}] to {remote}", "IKE", 1, conn_name, uid
                )
            )
            log(
                LogRecord(
                    "generating IKE_SA_INIT request 0 [ SA KE No N(NATD_S_IP) ]",
                    "ENC",
                    2,
                    conn_name,
                    uid,
                )
            )
            if self.initiate_gate is not None:
                await self.initiate_gate.wait()
            self._next_ike += 1
            sa = IkeSa(
                name=conn_name,
                uniqueid=uid,
                local_host=local,
                remote_host=remote,
                local_id=self._auth_id(conn, "local") or local,
                remote_id=self._auth_id(conn, "remote") or remote,
                spi_i=self._spi64(),
                spi_r=self._spi64(),
                established_at=self.now,
                rekey_after=_seconds(get_str(conn, "rekey_time"), 14400),
            )
            self.sas[uid] = sa
            log(
                LogRecord(
                    f"IKE_SA {conn_name}[{uid}] established between "
                    f"{local}[{sa.local_id}]...{remote}[{sa.remote_id}]",
                    "IKE",
                    0,
                    conn_name,
                    uid,
                )
            )
            self._publish("ike-updown", ike_updown_event(self.ike_view(sa, []), True))
        if child_name is None:
            return
        cfg = self._conn_children(conn)[child_name]
        child = Child(
            name=child_name,
            uniqueid=self._next_child,
            reqid=self._next_reqid,
            spi_in=self._spi32(),
            spi_out=self._spi32(),
            installed_at=self.now,
            local_ts=get_list(cfg, "local_ts") or ["dynamic"],
            remote_ts=get_list(cfg, "remote_ts") or ["dynamic"],
        )
        self._next_child += 1
        self._next_reqid += 1
        sa.children[child.uniqueid] = child
        log(
            LogRecord(
                f"CHILD_SA {child_name}{{{child.uniqueid}}} established with SPIs "
                f"{child.spi_in:08x}_i {child.spi_out:08x}_o and TS "
                f"{' '.join(child.local_ts)} === {' '.join(child.remote_ts)}",
                "CHD",
                0,
                conn_name,
                sa.uniqueid,
            )
        )
        self._publish(
            "child-updown", child_updown_event(self.ike_view(sa), self.child_view(child), True)
        )

    def _select(self, selector: SaSelector) -> list[tuple[IkeSa, Child | None]]:
        found: list[tuple[IkeSa, Child | None]] = []
        for sa in self.sas.values():
            if selector.targets_children:
                if selector.ike is not None and sa.name != selector.ike:
                    continue
                if selector.ike_id is not None and sa.uniqueid != selector.ike_id:
                    continue
                for child in sa.children.values():
                    if selector.child is not None and child.name != selector.child:
                        continue
                    if selector.child_id is not None and child.uniqueid != selector.child_id:
                        continue
                    found.append((sa, child))
            elif (selector.ike is not None and sa.name == selector.ike) or (
                selector.ike_id is not None and sa.uniqueid == selector.ike_id
            ):
                found.append((sa, None))
        return found

    async def terminate(self, request: TerminateRequest, log: LogCallback) -> TerminateResult:
        self.calls.append("terminate")
        targets = self._select(request.selector)
        if targets and self.terminate_gate is not None:
            await self.terminate_gate.wait()
        done = 0
        for sa, child in targets:
            if child is not None:
                log(
                    LogRecord(
                        f"closing CHILD_SA {child.name}{{{child.uniqueid}}}",
                        "CHD",
                        1,
                        sa.name,
                        sa.uniqueid,
                    )
                )
                view = self.ike_view(sa, [])
                del sa.children[child.uniqueid]
                self._publish(
                    "child-updown", child_updown_event(view, self.child_view(child), False)
                )
            else:
                log(
                    LogRecord(
                        f"deleting IKE_SA {sa.name}[{sa.uniqueid}] between {sa.local_host}...{sa.remote_host}",
                        "IKE",
                        1,
                        sa.name,
                        sa.uniqueid,
                    )
                )
                del self.sas[sa.uniqueid]
                log(
                    LogRecord(
                        f"IKE_SA {sa.name}[{sa.uniqueid}] deleted", "IKE", 1, sa.name, sa.uniqueid
                    )
                )
                self._publish("ike-updown", ike_updown_event(self.ike_view(sa, []), False))
            done += 1
        return TerminateResult(matches=len(targets), terminated=done)

    def rekey(self, selector: SaSelector, reauth: bool) -> int:
        self.calls.append("reauth" if reauth else "rekey")
        targets = self._select(selector)
        for sa, child in targets:
            if child is None:
                old = self.ike_view(sa, [])
                sa.spi_i, sa.spi_r = self._spi64(), self._spi64()
                sa.established_at = self.now
                self._publish("ike-rekey", ike_rekey_event(old, self.ike_view(sa, [])))
            else:
                old_view = self.child_view(child)
                del sa.children[child.uniqueid]
                child.uniqueid = self._next_child
                self._next_child += 1
                child.spi_in, child.spi_out = self._spi32(), self._spi32()
                child.installed_at = self.now
                sa.children[child.uniqueid] = child
                self._publish(
                    "child-rekey",
                    child_rekey_event(self.ike_view(sa, []), old_view, self.child_view(child)),
                )
        return len(targets)

    # ---------------------------------------------------------------- configuration

    def load_conn(self, name: str, config: Section) -> None:
        self.calls.append(f"load-conn {name}")
        version = get_str(config, "version")
        if version not in (None, "0", "2"):
            raise BackendError(f"IKEv{version} is not supported by quickike (connection '{name}')")
        children = config.get("children", {})
        if not isinstance(children, dict):
            raise BackendError(f"'children' of connection '{name}' must be a section")
        for child_name, cfg in children.items():
            if not isinstance(cfg, dict):
                raise BackendError(f"child '{child_name}' of connection '{name}' must be a section")
        self.conns[name] = config

    def unload_conn(self, name: str) -> None:
        self.calls.append(f"unload-conn {name}")
        if self.conns.pop(name, None) is None:
            raise BackendError(f"unloading connection '{name}' failed, not found")

    def load_shared(self, secret: SharedSecret) -> None:
        self.calls.append(f"load-shared {secret.id}")
        if secret.id is None:
            self.anonymous_shared.append(secret)
        else:
            self.shared[secret.id] = secret

    def unload_shared(self, secret_id: str) -> None:
        self.calls.append(f"unload-shared {secret_id}")
        if self.shared.pop(secret_id, None) is None:
            raise BackendError(f"unloading shared secret '{secret_id}' failed, not found")

    def reload_settings(self) -> None:
        self.reload_count += 1

    # ---------------------------------------------------------------- for tests

    def emit_qcd(self, kind: QcdEventKind) -> None:
        sa = next(iter(self.sas.values()), None)
        if kind is QcdEventKind.TOKEN_SENT:
            self.tokens_sent += 1
        self._publish(
            "qcd",
            qcd_event(
                kind,
                ike_name=sa.name if sa else None,
                ike_uniqueid=sa.uniqueid if sa else None,
                remote_host=sa.remote_host if sa else None,
                remote_port=4500 if sa else None,
                msg=f"QCD {kind.value}",
            ),
        )
