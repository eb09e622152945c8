"""The engine's questions to the configuration, answered in one place.

Which connection answers an IKE_SA_INIT from this address pair, which
addresses an initiator uses, which proposals a connection offers (parsed
once, not per exchange), which pre-shared key belongs to a pair of
identities, which selectors a trap installs.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ..crypto.proposals import EncrKey, ProposalSpec, encr_of, parse_proposals
from ..wire.enums import IdType, IntegId, ProtocolId
from ..wire.payloads import Identification, TrafficSelector
from .config import (
    AddrKind,
    ChildConfig,
    ConnectionConfig,
    DaemonSettings,
    Identity,
    QuickikeConfig,
    RetransmitPolicy,
    TrafficSelectorConfig,
)
from .dataplane import EspTransformCheck, Selector

Address = tuple[str, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Limits:
    """Engine tunables that strongswan.conf has no name for (``quickike { limits { } }``)."""

    #: replies to unprotected messages (INVALID_IKE_SPI, INVALID_SPI, cookies) per source
    unprotected_reply_rate: float = 10.0
    unprotected_reply_burst: float = 20.0
    #: refuse new half-open SAs above this many (0 = no limit)
    half_open_limit: int = 10000
    #: answer requests for unknown IKE SPIs with INVALID_IKE_SPI (RFC 7296 §2.21.4, MAY)
    send_invalid_ike_spi: bool = True
    #: answer ESP for unknown SPIs with an unprotected INVALID_SPI (RFC 7296 §1.5, MAY)
    send_invalid_spi: bool = True


class EngineSettings:
    """DaemonSettings plus :class:`Limits`, flattened for the hot path."""

    __slots__ = (
        "cookie_threshold",
        "fragment_size",
        "half_open_limit",
        "half_open_timeout",
        "keep_alive",
        "port",
        "port_nat_t",
        "retransmit",
        "send_invalid_ike_spi",
        "send_invalid_spi",
        "unprotected_reply_burst",
        "unprotected_reply_rate",
    )

    def __init__(self, s: DaemonSettings, limits: Limits) -> None:
        self.port = s.port
        self.port_nat_t = s.port_nat_t
        self.retransmit = s.retransmit
        self.cookie_threshold = s.cookie_threshold
        self.half_open_timeout = s.half_open_timeout
        self.fragment_size = s.fragment_size
        self.keep_alive = s.keep_alive
        self.unprotected_reply_rate = limits.unprotected_reply_rate
        self.unprotected_reply_burst = limits.unprotected_reply_burst
        self.half_open_limit = limits.half_open_limit
        self.send_invalid_ike_spi = limits.send_invalid_ike_spi
        self.send_invalid_spi = limits.send_invalid_spi


def _limits_from(settings: DaemonSettings) -> Limits:
    raw = settings.extra.get("limits")
    return parse_limits(raw) if isinstance(raw, Mapping) else Limits()


def parse_limits(raw: Mapping[str, object]) -> Limits:
    """``quickike { limits { } }`` as raw strings; the loader calls this to report errors."""
    kw: dict[str, object] = {}
    for name, default in Limits.__dataclass_fields__.items():
        value = raw.get(name)
        if not isinstance(value, str):
            continue
        try:
            if isinstance(default.default, bool):
                kw[name] = value.lower() in ("yes", "true", "1")
            elif isinstance(default.default, int):
                kw[name] = int(value)
            else:
                kw[name] = float(value)
        except ValueError:
            raise ValueError(f"quickike.limits.{name}: {value!r} is not a number") from None
    return Limits(**kw)  # type: ignore[arg-type]


class Policy:
    __slots__ = ("_esp", "_ike", "_psk", "config", "esp_filter", "settings")

    def __init__(self, config: QuickikeConfig) -> None:
        self._ike: dict[tuple[str, ...], list[ProposalSpec]] = {}
        self._esp: dict[tuple[str, ...], list[ProposalSpec]] = {}
        #: (me, peer) -> pre-shared key: IKE_AUTH asks twice per SA, for the same few pairs
        self._psk: dict[tuple[Identity, Identity], bytes | None] = {}
        #: the data plane's ESP transforms (Capabilities.esp_transform); None: all
        self.esp_filter: EspTransformCheck | None = None
        self.reload(config)

    def reload(self, config: QuickikeConfig) -> None:
        self.config = config
        self.settings = EngineSettings(config.settings, _limits_from(config.settings))
        self._ike.clear()
        self._esp.clear()
        self._psk.clear()

    # connections ---------------------------------------------------------

    def connections(self) -> Iterable[ConnectionConfig]:
        return self.config.connections.values()

    def connection(self, name: str) -> ConnectionConfig | None:
        return self.config.connections.get(name)

    def ike_specs(self, conn: ConnectionConfig) -> list[ProposalSpec]:
        specs = self._ike.get(conn.proposals)
        if specs is None:
            specs = self._ike[conn.proposals] = _parse(conn.proposals, ProtocolId.IKE)
        return specs

    def esp_specs(self, child: ChildConfig) -> list[ProposalSpec]:
        specs = self._esp.get(child.esp_proposals)
        if specs is None:
            specs = _parse(child.esp_proposals, ProtocolId.ESP)
            if self.esp_filter is not None:
                specs = runnable_specs(specs, self.esp_filter)
            self._esp[child.esp_proposals] = specs
        return specs

    def retransmit_for(self, conn: ConnectionConfig | None) -> RetransmitPolicy:
        return self.settings.retransmit

    def responder_candidates(self, local: Address, remote: Address) -> list[ConnectionConfig]:
        """Connections that accept an IKE_SA_INIT on this address pair, most specific first."""
        try:
            lip = _ip(local[0])
            rip = _ip(remote[0])
        except ValueError:
            return []
        scored: list[tuple[int, int, ConnectionConfig]] = []
        for i, conn in enumerate(self.connections()):
            ls = _addr_score(conn.local_addrs, lip)
            rs = _addr_score(conn.remote_addrs, rip)
            if ls and rs:
                scored.append((-(ls + rs), i, conn))
        scored.sort(key=lambda t: (t[0], t[1]))
        return [c for _, _, c in scored]

    def initiator_addresses(
        self, conn: ConnectionConfig, source_address: Callable[[str], str | None] | None
    ) -> tuple[Address, Address]:
        remote_ip = None
        for spec in conn.remote_addrs:
            if spec.kind == AddrKind.ADDRESS and spec.start is not None:
                remote_ip = str(spec.start)
                break
            if spec.kind == AddrKind.DNS:
                remote_ip = spec.text
                break
        if remote_ip is None:
            raise ValueError(f"connection {conn.name!r} has no concrete remote address to initiate to")
        local_ip = None
        for spec in conn.local_addrs:
            if spec.kind == AddrKind.ADDRESS and spec.start is not None:
                local_ip = str(spec.start)
                break
        if local_ip is None and source_address is not None:
            local_ip = source_address(remote_ip)
        if local_ip is None:
            local_ip = "::" if ":" in remote_ip else "0.0.0.0"
        local_port = conn.local_port if conn.local_port != 500 else self.settings.port
        return (local_ip, local_port), (remote_ip, conn.remote_port)

    def nat_t_port(self, local: Address) -> int:
        """Our port after the move to NAT-T: port_nat_t unless we already use a custom port."""
        return self.settings.port_nat_t if local[1] == self.settings.port else local[1]

    # identities and secrets ------------------------------------------------

    def local_identity(self, conn: ConnectionConfig, local: Address, cert_subject: bytes | None = None) -> Identity:
        ident = conn.local_id
        if ident is not None and not ident.is_any:
            return ident
        if cert_subject is not None:
            return Identity(IdType.DER_ASN1_DN, cert_subject, "")
        return Identity.from_address(ipaddress.ip_address(local[0]))

    def psk(self, me: Identity, other: Identity) -> bytes | None:
        key = (me, other)
        try:
            return self._psk[key]
        except KeyError:
            pass
        secret = self.config.secrets.psk(me, other)
        if len(self._psk) >= 4096:  # peers may present any identity: stay bounded
            self._psk.clear()
        self._psk[key] = secret
        return secret

    # traffic selectors -------------------------------------------------------

    def trap_selectors(
        self, conn: ConnectionConfig, child: ChildConfig
    ) -> tuple[tuple[Selector, ...], tuple[Selector, ...]]:
        local: IPAddress | None = None
        remote: IPAddress | None = None
        for spec in conn.local_addrs:
            if spec.kind == AddrKind.ADDRESS and spec.start is not None:
                local = spec.start
                break
        for spec in conn.remote_addrs:
            if spec.kind == AddrKind.ADDRESS and spec.start is not None:
                remote = spec.start
                break
        return (
            tuple(s for t in child.local_ts if (s := to_selector(t, local)) is not None),
            tuple(s for t in child.remote_ts if (s := to_selector(t, remote)) is not None),
        )


def _parse(texts: tuple[str, ...], protocol: ProtocolId) -> list[ProposalSpec]:
    specs: list[ProposalSpec] = []
    for text in texts:
        specs.extend(parse_proposals(text, protocol))
    return specs


def runnable_specs(specs: list[ProposalSpec], check: EspTransformCheck) -> list[ProposalSpec]:
    """ESP proposals without the transforms a data plane cannot run; empty ones dropped.

    Proposing only what the data plane runs keeps a CHILD SA from being
    negotiated and then refused at install time.
    """
    out: list[ProposalSpec] = []
    for spec in specs:
        encr: list[EncrKey] = []
        integ: list[IntegId] = []
        for key in spec.encr:
            bits = 256 if key[1] is None else key[1]
            if encr_of(key).aead:
                if check(int(key[0]), bits, 0):
                    encr.append(key)
                continue
            ok = [i for i in spec.integ if check(int(key[0]), bits, int(i))]
            if ok:
                encr.append(key)
                integ.extend(i for i in ok if i not in integ)
        if encr:
            integ = [i for i in spec.integ if i in integ]  # the configured order
            out.append(dataclasses.replace(spec, encr=encr, integ=integ))
    return out


#: how specific an address spec is; built once (this runs per connection per IKE_SA_INIT)
_ADDR_SCORES: dict[object, int] = {
    AddrKind.ADDRESS: 3, AddrKind.RANGE: 2, AddrKind.SUBNET: 2, AddrKind.ANY: 1,
}


def _addr_score(specs: Iterable[object], ip: IPAddress) -> int:
    best = 0
    for spec in specs:
        if not spec.contains(ip):  # type: ignore[attr-defined]
            continue
        score = _ADDR_SCORES.get(getattr(spec, "kind", None), 0)
        if score > best:
            best = score
    return best


def to_selector(ts: TrafficSelectorConfig, host: IPAddress | None) -> Selector | None:
    """A configured selector as a data-plane selector; ``dynamic`` becomes ``host``."""
    if ts.dynamic:
        if host is None:
            return None
        # what ts.bind(host) gives, without building (and naming) a configuration object
        # that would be thrown away: this runs for every selector of every CHILD SA set up
        return Selector(host, host, ts.protocol, ts.start_port, ts.end_port)
    assert ts.start is not None and ts.end is not None
    return Selector(ts.start, ts.end, ts.protocol, ts.start_port, ts.end_port)


def to_wire(sel: Selector) -> TrafficSelector:
    return TrafficSelector(sel.start, sel.end, sel.protocol, sel.start_port, sel.end_port)


def from_wire(ts: TrafficSelector) -> Selector:
    sel = Selector(ts.start_addr, ts.end_addr, ts.ip_protocol, ts.start_port, ts.end_port)
    # one shared instance per distinct selector: 10,000 CHILD SAs between two sites hold the
    # same few, and every copy (with its two address objects) costs memory and GC scans
    shared = _selectors.get(sel)
    if shared is not None:
        return shared
    if len(_selectors) >= _SELECTORS_MAX:
        _selectors.clear()
    _selectors[sel] = sel
    return sel


_selectors: dict[Selector, Selector] = {}
_SELECTORS_MAX = 65536
#: address text -> address object (every IKE_SA_INIT asks for the same few)
_ip = functools.lru_cache(maxsize=4096)(ipaddress.ip_address)


def identity_of(payload: Identification) -> Identity:
    return Identity(payload.id_type, payload.data, payload.text())
