"""Throughput of the IKEv2 codec on the messages a gateway handles most.

Run: ``python bench/bench_wire.py`` (``--seconds N`` per measurement, default 1).
Prints operations per second for encode, decode and encode+decode of
(a) a typical IKE_AUTH inner payload chain (what SK carries) and
(b) a whole IKE_SA_INIT request.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address

from quickike.wire import (
    AUTH,
    KE,
    QCD_TOKEN,
    SA,
    AuthMethod,
    DhGroup,
    EncrId,
    EsnId,
    ExchangeType,
    IDi,
    IDr,
    IdType,
    IntegId,
    Message,
    Nonce,
    Notify,
    NotifyType,
    PrfId,
    Proposal,
    ProtocolId,
    TrafficSelector,
    Transform,
    TransformType,
    TSi,
    TSr,
    decode_message,
    decode_payloads,
    encode_payloads,
)


def ike_auth_inner() -> list:
    esp = SA(
        [
            Proposal(
                1,
                ProtocolId.ESP,
                b"\xc1\xa9\x65\x6b",
                [
                    Transform(TransformType.ENCR, EncrId.AES_GCM_16, 256),
                    Transform(TransformType.ENCR, EncrId.AES_GCM_16, 128),
                    Transform(TransformType.ESN, EsnId.NO_ESN),
                ],
            ),
            Proposal(
                2,
                ProtocolId.ESP,
                b"\xc1\xa9\x65\x6b",
                [
                    Transform(TransformType.ENCR, EncrId.AES_CBC, 256),
                    Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
                    Transform(TransformType.ESN, EsnId.NO_ESN),
                ],
            ),
        ]
    )
    return [
        IDi(IdType.FQDN, b"gw-a.example.net"),
        Notify(NotifyType.INITIAL_CONTACT),
        IDr(IdType.FQDN, b"gw-b.example.net"),
        AUTH(AuthMethod.PSK, bytes(32)),
        Notify(QCD_TOKEN, bytes(range(32)), ProtocolId.IKE),
        esp,
        TSi([TrafficSelector(IPv4Address("10.1.0.0"), IPv4Address("10.1.255.255"))]),
        TSr([TrafficSelector(IPv4Address("10.2.0.0"), IPv4Address("10.2.255.255"))]),
        Notify(NotifyType.ESP_TFC_PADDING_NOT_SUPPORTED),
        Notify(NotifyType.NON_FIRST_FRAGMENTS_ALSO),
    ]


def ike_sa_init() -> Message:
    sa = SA(
        [
            Proposal(
                1,
                ProtocolId.IKE,
                b"",
                [
                    Transform(TransformType.ENCR, EncrId.AES_GCM_16, 256),
                    Transform(TransformType.ENCR, EncrId.CHACHA20_POLY1305),
                    Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
                    Transform(TransformType.PRF, PrfId.HMAC_SHA2_384),
                    Transform(TransformType.DH, DhGroup.CURVE25519),
                    Transform(TransformType.DH, DhGroup.ECP_256),
                ],
            ),
            Proposal(
                2,
                ProtocolId.IKE,
                b"",
                [
                    Transform(TransformType.ENCR, EncrId.AES_CBC, 128),
                    Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
                    Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
                    Transform(TransformType.DH, DhGroup.MODP_2048),
                ],
            ),
        ]
    )
    return Message(
        bytes(range(1, 9)),
        bytes(8),
        ExchangeType.IKE_SA_INIT,
        0x08,
        0,
        [
            sa,
            KE(DhGroup.CURVE25519, bytes(range(32))),
            Nonce(bytes(range(32, 64))),
            Notify(NotifyType.NAT_DETECTION_SOURCE_IP, bytes(20)),
            Notify(NotifyType.NAT_DETECTION_DESTINATION_IP, bytes(20)),
            Notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED),
            Notify(NotifyType.SIGNATURE_HASH_ALGORITHMS, bytes.fromhex("0002000300040005")),
            Notify(NotifyType.REDIRECT_SUPPORTED),
        ],
    )


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second, timed over batches until ``seconds`` have passed (best of 3)."""
    batch = 1
    while True:  # size a batch to ~1/20 of the budget
        t = time.perf_counter()
        for _ in range(batch):
            fn()
        dt = time.perf_counter() - t
        if dt > seconds / 20:
            break
        batch *= 2
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while (el := time.perf_counter() - t0) < seconds / 3:
            for _ in range(batch):
                fn()
            n += batch
        best = max(best, n / el)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = ap.parse_args(argv)

    inner = ike_auth_inner()
    first, inner_bytes = encode_payloads(inner)
    assert decode_payloads(first, inner_bytes)[0] == inner
    init = ike_sa_init()
    init_bytes = init.encode()
    assert decode_message(init_bytes) == init

    cases: list[tuple[str, Callable[[], object]]] = [
        (
            f"IKE_AUTH inner chain encode ({len(inner)} payloads, {len(inner_bytes)} B)",
            lambda: encode_payloads(inner),
        ),
        ("IKE_AUTH inner chain decode", lambda: decode_payloads(first, inner_bytes)),
        ("IKE_AUTH inner chain encode+decode", lambda: decode_payloads(*encode_payloads(inner))),
        (
            f"IKE_SA_INIT message encode ({len(init.payloads)} payloads, {len(init_bytes)} B)",
            init.encode,
        ),
        ("IKE_SA_INIT message decode", lambda: decode_message(init_bytes)),
        ("IKE_SA_INIT message encode+decode", lambda: decode_message(init.encode())),
    ]
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on "
        f"{platform.machine()}, {args.seconds:g} s per case"
    )
    for name, fn in cases:
        r = rate(fn, args.seconds)
        print(f"{name:<62} {r:>10,.0f} /s  {1e6 / r:7.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
