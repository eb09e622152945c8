"""Throughput of the crypto layer's hot paths.

Run:  python bench/bench_crypto.py [--seconds 3.0]   (best of 3 runs per case)

* SK: one protect (sender) plus one unprotect (receiver) of an IKE_AUTH-sized
  inner payload chain (about 500 octets), per second, for aes128gcm16 and
  aes256-sha256 (AES-256-CBC + HMAC-SHA-256-128).
* DH: one key pair generation plus one shared-secret computation (one side of
  an exchange), per second, for x25519, ecp256 and modp2048.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import cryptography

from quickike.crypto import (
    DH_ALGS,
    SeededRandomSource,
    SkProtector,
    SystemRandomSource,
    derive_ike_keys,
    parse_proposals,
    select_proposal,
    specs_to_sa_payload,
)
from quickike.wire import encode_payloads, notify
from quickike.wire.enums import DhGroup, ExchangeType, NotifyType, ProtocolId

SPI_I, SPI_R = b"\x01" * 8, b"\x02" * 8


REPEAT = 3


def rate(fn: Callable[[], None], seconds: float) -> float:
    """Best of REPEAT runs of calls per second of ``fn``, each lasting ``seconds / REPEAT``.

    The best run is reported because other load on the machine only ever
    makes a run slower.
    """
    for _ in range(20):
        fn()
    best = 0.0
    for _ in range(REPEAT):
        n, start = 0, time.perf_counter()
        deadline = start + seconds / REPEAT
        while True:
            for _ in range(50):
                fn()
            n += 50
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def sk_case(proposal: str, seconds: float) -> float:
    specs = parse_proposals(proposal, ProtocolId.IKE)
    suite = select_proposal(specs_to_sa_payload(specs), specs)
    assert suite is not None
    _, keys = derive_ike_keys(suite, b"\x42" * 32, b"\x03" * 32, b"\x04" * 32, SPI_I, SPI_R)
    rng = SystemRandomSource()
    sender = SkProtector(suite, keys, True, rng)
    receiver = SkProtector(suite, keys, False, rng)
    first, inner = encode_payloads([notify(NotifyType.QUICK_CRASH_DETECTION, b"\x5a" * 492)])
    assert len(inner) == 500

    def once() -> None:
        msg = sender.protect(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 0x08, 1, first, inner)
        receiver.unprotect(msg, 28)

    return rate(once, seconds)


def dh_case(group: DhGroup, seconds: float) -> float:
    alg = DH_ALGS[group]
    rng = SeededRandomSource(1)
    peer = alg.generate(rng).public

    def once() -> None:
        alg.generate(rng).shared(peer)

    return rate(once, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per case")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, cryptography {cryptography.__version__}, "
          f"{platform.machine()}")
    print("SK protect+unprotect, 500-octet inner payloads:")
    for proposal in ("aes128gcm16-prfsha256-x25519", "aes256-sha256-prfsha256-x25519"):
        print(f"  {proposal.split('-prf')[0]:<16} {sk_case(proposal, args.seconds):>10,.0f} /s")
    print("DH generate+shared:")
    for group in (DhGroup.CURVE25519, DhGroup.ECP_256, DhGroup.MODP_2048):
        print(f"  {DH_ALGS[group].keyword:<16} {dh_case(group, args.seconds):>10,.0f} /s")


if __name__ == "__main__":
    main()
