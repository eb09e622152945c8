"""Gateway configurations for the scenarios, built as the engine's dataclasses.

A :class:`Behaviour` bundles what differs between implementations in the
comparison: whether QCD runs, the dead-peer-detection delay, the
retransmission schedule, and whether a gateway answers unknown SPIs at all
(strongSwan's charon and the Linux kernel do not, quickike does, as RFC 7296
allows).  The same engine plays every part; only these knobs change.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..engine.config import (
    AddressSpec,
    AddrKind,
    AuthClass,
    AuthConfig,
    ChildConfig,
    CloseAction,
    ConnectionConfig,
    DaemonSettings,
    DpdAction,
    Identity,
    IkeSecret,
    QcdSettings,
    QuickikeConfig,
    RetransmitPolicy,
    Secrets,
    StartAction,
    TrafficSelectorConfig,
)
from ..wire.enums import IdType

#: one PSK for every simulated pair (the simulator does not model credentials)
PSK = b"quickike-sim pre-shared key, long enough for every PRF"
IKE_PROPOSAL = "aes128gcm16-prfsha256-x25519"
ESP_PROPOSAL = "aes128gcm16-esn"


@dataclass(frozen=True, slots=True)
class Behaviour:
    name: str
    qcd: bool
    dpd_delay: float = 30.0
    retransmit: RetransmitPolicy = field(default_factory=RetransmitPolicy)
    send_invalid_spi: bool = True
    send_invalid_ike_spi: bool = True
    #: raw keys of ``quickike { qcd { } }`` for the QCD plug-in (daemon-wide, which also sets
    #: the per-connection defaults such as the issue-202 defences)
    qcd_options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: replies to unprotected messages per source and second (RFC 7296 §2.21.4 limit)
    unprotected_rate: float = 10.0
    unprotected_burst: float = 20.0
    cookie_threshold: int = 10

    def with_options(self, **options: str) -> Behaviour:
        merged = dict(self.qcd_options)
        merged.update(options)
        return replace(self, qcd_options=MappingProxyType(merged))


#: quickike with Quick Crash Detection, DPD on strongSwan's timers as a fallback
QUICKIKE = Behaviour("quickike+qcd", qcd=True)
#: strongSwan 5.9 defaults with dpd_delay = 30s: retransmits at 0, 4, 11.2, 24.16, 47.488,
#: 89.478 s, dead at 165.06 s; a restarted charon answers unknown SPIs with nothing
STRONGSWAN = Behaviour("strongswan", qcd=False, send_invalid_spi=False,
                       send_invalid_ike_spi=False)
#: libreswan-like: dpddelay=30s, retransmits from 0.5 s doubling, given up 60 s after the probe
#: (retransmit-interval=500ms, retransmit-timeout=60s): waits 0.5 1 2 4 8 16 28.5 s
LIBRESWAN = Behaviour("libreswan", qcd=False,
                      retransmit=RetransmitPolicy(timeout=0.5, base=2.0, tries=6, limit=28.5),
                      send_invalid_spi=False, send_invalid_ike_spi=False)


def fqdn(name: str) -> Identity:
    return Identity(IdType.FQDN, name.encode(), name)


def address(ip: str) -> AddressSpec:
    a = ipaddress.ip_address(ip)
    return AddressSpec(AddrKind.ADDRESS, ip, a, a)


def ts(network: str) -> TrafficSelectorConfig:
    return TrafficSelectorConfig.from_network(network)


def settings(b: Behaviour) -> DaemonSettings:
    limits = {
        "send_invalid_spi": "yes" if b.send_invalid_spi else "no",
        "send_invalid_ike_spi": "yes" if b.send_invalid_ike_spi else "no",
        "unprotected_reply_rate": str(b.unprotected_rate),
        "unprotected_reply_burst": str(b.unprotected_burst),
    }
    return DaemonSettings(
        retransmit=b.retransmit,
        cookie_threshold=b.cookie_threshold,
        qcd=QcdSettings(enable=b.qcd, options=MappingProxyType(dict(b.qcd_options))),
        extra=MappingProxyType({"limits": MappingProxyType(limits)}),
    )


@dataclass(frozen=True, slots=True)
class Side:
    """One end of a connection as the scenario sees it."""

    ip: str
    ident: str
    subnet: str


def connection(b: Behaviour, me: Side, peer: Side | None, *, name: str = "tunnel",
               start: StartAction = StartAction.START,
               dpd_action: DpdAction = DpdAction.RESTART,
               close_action: CloseAction = CloseAction.NONE,
               remote_subnet: str | None = None, remote_id: str | None = None,
               encap: bool = False) -> ConnectionConfig:
    """A site-to-site connection; ``peer=None`` makes a responder for any address."""
    remote_addrs = (address(peer.ip),) if peer is not None else (AddressSpec.any(),)
    rid = remote_id or (peer.ident if peer is not None else "%any")
    remote_ident = Identity.any() if rid == "%any" else fqdn(rid)
    child = ChildConfig(
        "net",
        local_ts=(ts(me.subnet),),
        remote_ts=(ts(remote_subnet or (peer.subnet if peer is not None else "0.0.0.0/0")),),
        esp_proposals=(ESP_PROPOSAL,),
        start_action=start,
        dpd_action=dpd_action,
        close_action=close_action,
    )
    return ConnectionConfig(
        name,
        local_addrs=(address(me.ip),),
        remote_addrs=remote_addrs,
        proposals=(IKE_PROPOSAL,),
        encap=encap,
        dpd_delay=b.dpd_delay,
        keyingtries=0,  # %forever, as site-to-site gateways are configured: never give up
        local=(AuthConfig(auth=AuthClass.PSK, auth_spec="psk", id=fqdn(me.ident)),),
        remote=(AuthConfig(name="remote", auth=AuthClass.PSK, auth_spec="psk", id=remote_ident),),
        children=(child,),
        qcd=b.qcd,
    )


def gateway_config(b: Behaviour, *conns: ConnectionConfig, ids: tuple[str, ...]) -> QuickikeConfig:
    return QuickikeConfig(
        connections=MappingProxyType({c.name: c for c in conns}),
        secrets=Secrets(ike=(IkeSecret("ike-sim", tuple(fqdn(i) for i in ids), PSK),)),
        settings=settings(b),
    )


def subnet_of(index: int) -> str:
    """The /24 behind peer ``index`` (0-based): 10.128.0.0/24, 10.128.1.0/24, ..."""
    return f"10.{128 + index // 256}.{index % 256}.0/24"


def peer_ip(index: int) -> str:
    """Public address of peer ``index``: 198.18.0.0/15 (RFC 2544 benchmarking space)."""
    n = int(ipaddress.IPv4Address("198.18.0.1")) + index
    return str(ipaddress.IPv4Address(n))


def host_in(subnet: str, n: int = 10) -> str:
    return str(ipaddress.ip_network(subnet)[n])
