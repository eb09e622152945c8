"""One neutral description of a payload chain, computed from scapy's parse and from quickike's.

scapy's ``contrib.ikev2`` is an independent IKEv2 implementation: when both
give the same description of the same octets, both decoders agree field by
field. The description is plain tuples and bytes so a mismatch prints well.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest

ik = pytest.importorskip("scapy.contrib.ikev2")

from quickike.wire import (  # noqa: E402
    AUTH,
    CERT,
    CERTREQ,
    CP,
    EAP,
    KE,
    SA,
    Delete,
    Encrypted,
    EncryptedFragment,
    Identification,
    Message,
    Nonce,
    Notify,
    Payload,
    TrafficSelector,
    TSi,
    TSr,
    UnknownPayload,
    UnknownSelector,
    VendorId,
)

View = tuple[int, bool, dict[str, Any]]

_SCAPY_TYPES = {
    "IKEv2_SA": 33,
    "IKEv2_KE": 34,
    "IKEv2_IDi": 35,
    "IKEv2_IDr": 36,
    "IKEv2_CERT": 37,
    "IKEv2_CERTREQ": 38,
    "IKEv2_AUTH": 39,
    "IKEv2_Nonce": 40,
    "IKEv2_Notify": 41,
    "IKEv2_Delete": 42,
    "IKEv2_VendorID": 43,
    "IKEv2_TSi": 44,
    "IKEv2_TSr": 45,
    "IKEv2_Encrypted": 46,
    "IKEv2_CP": 47,
    "IKEv2_EAP": 48,
    "IKEv2_Encrypted_Fragment": 53,
}


def _b(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value)
    return bytes(value)


def _chain(layer: Any) -> list[Any]:
    out = []
    while layer is not None and isinstance(layer, ik.IKEv2_Payload):
        out.append(layer)
        layer = layer.payload
    return out


def scapy_header(pkt: Any) -> dict[str, Any]:
    return {
        "spi_i": pkt.init_SPI,
        "spi_r": pkt.resp_SPI,
        "exchange": pkt.exch_type,
        "flags": int(pkt.flags),
        "message_id": pkt.id,
        "length": pkt.length,
        "minor": pkt.version & 0x0F,
    }


def quickike_header(m: Message, length: int) -> dict[str, Any]:
    return {
        "spi_i": m.spi_i,
        "spi_r": m.spi_r,
        "exchange": int(m.exchange),
        "flags": m.flags,
        "message_id": m.message_id,
        "length": length,
        "minor": m.minor,
    }


def scapy_payloads(pkt: Any) -> list[View]:
    """Describe the chain after scapy's IKEv2 header."""
    views: list[View] = []
    for p in _chain(pkt.payload):
        name = type(p).__name__
        ptype = _SCAPY_TYPES.get(name)
        crit = bool(int(p.flags) & 0x80)
        f: dict[str, Any]
        if name == "IKEv2_SA":
            props = []
            for pr in _chain(p.prop):
                trans = [
                    (t.transform_type, t.transform_id, t.key_length if t.length > 8 else None)
                    for t in _chain(pr.trans)
                ]
                props.append((pr.proposal, pr.proto, _b(pr.SPI), trans))
            f = {"proposals": props}
        elif name == "IKEv2_KE":
            f = {"group": p.group, "data": _b(p.ke)}
        elif name in ("IKEv2_IDi", "IKEv2_IDr"):
            f = {"id_type": p.IDtype, "data": _b(p.ID)}
        elif name == "IKEv2_CERT":
            f = {"encoding": p.cert_encoding, "data": _b(p.cert_data)}
        elif name == "IKEv2_CERTREQ":
            f = {"encoding": p.cert_encoding, "data": _b(p.cert_authority)}
        elif name == "IKEv2_AUTH":
            f = {"method": p.auth_type, "data": _b(p.load)}
        elif name == "IKEv2_Nonce":
            f = {"data": _b(p.nonce)}
        elif name == "IKEv2_Notify":
            if p.type in (16407, 16408):  # scapy dissects the REDIRECT gateway identity
                gw = _b(p.gw_id)
                data = bytes((p.gw_id_type, len(gw))) + gw + _b(getattr(p, "nonce", b""))
            else:
                data = _b(p.notify)
            f = {"type": p.type, "protocol": p.proto, "spi": _b(p.SPI), "data": data}
        elif name == "IKEv2_Delete":
            f = {"protocol": p.proto, "spi_size": p.SPIsize, "spis": [_b(s) for s in p.SPI]}
        elif name == "IKEv2_VendorID":
            f = {"data": _b(p.vendorID)}
        elif name in ("IKEv2_TSi", "IKEv2_TSr"):
            sels = []
            for ts in p.traffic_selector:
                if ts.TS_type == 7:
                    addrs = _b(ts.starting_address_v4) + _b(ts.ending_address_v4)
                elif ts.TS_type == 8:
                    addrs = _b(ts.starting_address_v6) + _b(ts.ending_address_v6)
                else:
                    addrs = _b(ts.load)
                sels.append(
                    (
                        ts.TS_type,
                        ts.IP_protocol_ID,
                        ts.start_port if ts.TS_type in (7, 8) else None,
                        ts.end_port if ts.TS_type in (7, 8) else None,
                        addrs,
                    )
                )
            f = {"selectors": sels}
        elif name == "IKEv2_Encrypted":
            f = {"next_inner": p.next_payload, "data": _b(p.load)}
        elif name == "IKEv2_Encrypted_Fragment":
            f = {
                "next_inner": p.next_payload,
                "number": p.frag_number,
                "total": p.frag_total,
                "data": _b(p.load),
            }
        elif name == "IKEv2_CP":
            f = {"cfg_type": p.CFGType, "attributes": [(a.type, _b(a.value)) for a in p.attributes]}
        else:  # EAP and payloads scapy keeps as a generic load
            ptype = ptype or -1
            f = {"data": _b(p.load)}
        views.append((ptype if ptype is not None else -1, crit, f))
    return views


def quickike_payload(p: Payload) -> View:
    f: dict[str, Any]
    if isinstance(p, SA):
        f = {
            "proposals": [
                (
                    pr.number,
                    int(pr.protocol),
                    pr.spi,
                    [(int(t.type), t.id, t.key_length) for t in pr.transforms],
                )
                for pr in p.proposals
            ]
        }
    elif isinstance(p, KE):
        f = {"group": int(p.group), "data": p.data}
    elif isinstance(p, Identification):
        f = {"id_type": int(p.id_type), "data": p.data}
    elif isinstance(p, CERT | CERTREQ):
        f = {"encoding": int(p.encoding), "data": p.data}
    elif isinstance(p, AUTH):
        f = {"method": int(p.method), "data": p.data}
    elif isinstance(p, Nonce | VendorId | EAP | UnknownPayload):
        f = {"data": p.data}
    elif isinstance(p, Notify):
        f = {"type": int(p.type), "protocol": int(p.protocol), "spi": p.spi, "data": p.data}
    elif isinstance(p, Delete):
        size = p.spi_size if p.spi_size is not None else (0 if p.protocol == 1 else 4)
        f = {"protocol": int(p.protocol), "spi_size": size, "spis": list(p.spis)}
    elif isinstance(p, TSi | TSr):
        sels = []
        for s in p.selectors:
            if isinstance(s, TrafficSelector):
                sels.append(
                    (
                        int(s.ts_type),
                        s.ip_protocol,
                        s.start_port,
                        s.end_port,
                        s.start_addr.packed + s.end_addr.packed,
                    )
                )
            else:
                assert isinstance(s, UnknownSelector)
                sels.append((s.ts_type, s.ip_protocol, None, None, s.encode()[4:]))
        f = {"selectors": sels}
    elif isinstance(p, Encrypted):
        f = {"next_inner": p.next_inner, "data": p.data}
    elif isinstance(p, EncryptedFragment):
        f = {"next_inner": p.next_inner, "number": p.number, "total": p.total, "data": p.data}
    elif isinstance(p, CP):
        f = {
            "cfg_type": int(p.cfg_type),
            "attributes": [(int(a.type), a.value) for a in p.attributes],
        }
    else:  # pragma: no cover
        raise AssertionError(f"no view for {p!r}")
    return (p.payload_type, p.critical, f)


def quickike_payloads(m: Message) -> list[View]:
    return [quickike_payload(p) for p in m.payloads]
