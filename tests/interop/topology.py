"""Who is where in the interop tests, and the two sides' configurations for one tunnel.

quickike always runs on gateway A (10.200.0.1, LAN 10.200.1.0/24), charon on gateway B
(10.200.0.2, LAN 10.200.2.0/24); each gateway has an address in its own LAN because charon
will not install a CHILD SA otherwise. Both use the standard ports 500/4500. charon gets what
its kernel-libipsec backend needs on this machine (``encap = yes``) and ``mobike = no`` (MOBIKE
would add INFORMATIONALs that quickike ignores).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quickike.lab.netns import GatewayPair

PSK = "interop psk: long, random enough for a lab"
QI_ID = "qi.lab.test"
CH_ID = "charon.lab.test"

#: the three suites of the issue, with the ESP suite each CHILD SA uses alongside
SUITES: dict[str, str] = {
    "aes128gcm16-prfsha256-x25519": "aes128gcm16",
    "aes256-sha256-modp2048": "aes256-sha256",
    "chacha20poly1305-prfsha256-ecp256": "chacha20poly1305",
}

#: how quickike's events name the negotiated suite (the PRF is always spelled out)
QUICKIKE_KEYWORDS: dict[str, str] = {
    "aes128gcm16-prfsha256-x25519": "aes128gcm16-prfsha256-x25519",
    "aes256-sha256-modp2048": "aes256-sha256-prfsha256-modp2048",
    "chacha20poly1305-prfsha256-ecp256": "chacha20poly1305-prfsha256-ecp256",
    "aes128gcm16-prfsha256-ecp256": "aes128gcm16-prfsha256-ecp256",
}

#: how charon's list-sas names what those keywords negotiate
CHARON_NAMES: dict[str, dict[str, str]] = {
    "aes128gcm16-prfsha256-x25519": {
        "encr-alg": "AES_GCM_16", "encr-keysize": "128", "prf-alg": "PRF_HMAC_SHA2_256",
        "dh-group": "CURVE_25519",
    },
    "aes256-sha256-modp2048": {
        "encr-alg": "AES_CBC", "encr-keysize": "256", "integ-alg": "HMAC_SHA2_256_128",
        "prf-alg": "PRF_HMAC_SHA2_256", "dh-group": "MODP_2048",
    },
    "chacha20poly1305-prfsha256-ecp256": {
        "encr-alg": "CHACHA20_POLY1305", "prf-alg": "PRF_HMAC_SHA2_256", "dh-group": "ECP_256",
    },
    "aes128gcm16-prfsha256-ecp256": {
        "encr-alg": "AES_GCM_16", "encr-keysize": "128", "prf-alg": "PRF_HMAC_SHA2_256",
        "dh-group": "ECP_256",
    },
}  # fmt: skip
CHARON_ESP_NAMES: dict[str, dict[str, str]] = {
    "aes128gcm16": {"encr-alg": "AES_GCM_16", "encr-keysize": "128"},
    "aes256-sha256": {"encr-alg": "AES_CBC", "encr-keysize": "256",
                      "integ-alg": "HMAC_SHA2_256_128"},
    "chacha20poly1305": {"encr-alg": "CHACHA20_POLY1305"},
}  # fmt: skip


@dataclass(slots=True)
class Side:
    """One gateway's half of a tunnel: connection ``gw`` with CHILD ``net``."""

    proposals: str = "aes128gcm16-prfsha256-x25519"
    esp_proposals: str = "aes128gcm16"
    auth: str = "psk"  # or "pubkey"
    certs: str | None = None
    cacerts: str | None = None
    conn: dict[str, Any] = field(default_factory=dict)
    child: dict[str, Any] = field(default_factory=dict)
    #: more CHILD configurations beside ``net``, each given in full
    children: dict[str, dict[str, Any]] = field(default_factory=dict)


def _auth_round(side: Side, ident: str, *, local: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"auth": side.auth, "id": ident}
    if side.auth != "psk":
        if local and side.certs:
            body["certs"] = side.certs
        if not local and side.cacerts:
            body["cacerts"] = side.cacerts
    return body


def quickike_config(pair: GatewayPair, side: Side) -> tuple[dict[str, Any], dict[str, Any]]:
    """(connections, secrets) of quickike on gateway A."""
    body: dict[str, Any] = {
        "local_addrs": pair.wire_a,
        "remote_addrs": pair.wire_b,
        "proposals": side.proposals,
        "local": _auth_round(side, QI_ID, local=True),
        "remote": _auth_round(side, CH_ID, local=False),
        "children": {
            "net": {
                "local_ts": pair.lan_a,
                "remote_ts": pair.lan_b,
                "esp_proposals": side.esp_proposals,
                **side.child,
            },
            **side.children,
        },
        **side.conn,
    }
    secrets = {"ike-gw": {"id-a": QI_ID, "id-b": CH_ID, "secret": PSK}} if side.auth == "psk" else {}
    return {"gw": body}, secrets


def charon_config(pair: GatewayPair, side: Side) -> tuple[dict[str, Any], dict[str, Any]]:
    """(connections, secrets) of charon on gateway B, for `Charon` (VICI load-conn)."""
    body: dict[str, Any] = {
        "version": 2,
        "local_addrs": pair.wire_b,
        "remote_addrs": pair.wire_a,
        "proposals": side.proposals,
        "encap": True,
        "mobike": False,
        "local": _auth_round(side, CH_ID, local=True),
        "remote": _auth_round(side, QI_ID, local=False),
        "children": {
            "net": {
                "local_ts": pair.lan_b,
                "remote_ts": pair.lan_a,
                "esp_proposals": side.esp_proposals,
                **side.child,
            },
            **side.children,
        },
        **side.conn,
    }
    secrets = {"ike-gw": {"id-a": QI_ID, "id-b": CH_ID, "secret": PSK}} if side.auth == "psk" else {}
    return {"gw": body}, secrets
