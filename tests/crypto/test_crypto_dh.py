"""Diffie-Hellman groups: agreement, reproducibility, and RFC 6989 rejections."""

from __future__ import annotations

import pytest

from quickike.crypto import DH_ALGS, InvalidPublicValue, SeededRandomSource, dh_alg
from quickike.crypto.algorithms import MODP_PRIMES
from quickike.wire.enums import DhGroup

ALL_GROUPS = sorted(DH_ALGS)


@pytest.mark.parametrize("group", ALL_GROUPS)
def test_both_sides_agree_and_sizes_match_rfcs(group: int) -> None:
    alg = DH_ALGS[group]
    rng = SeededRandomSource(group)
    a, b = alg.generate(rng), alg.generate(rng)
    assert len(a.public) == alg.public_size
    secret = a.shared(b.public)
    assert secret == b.shared(a.public)
    assert len(secret) == alg.shared_size
    assert a.public != b.public


@pytest.mark.parametrize("group", ALL_GROUPS)
def test_same_seed_same_key_pair(group: int) -> None:
    alg = DH_ALGS[group]
    assert alg.generate(SeededRandomSource(7)).public == alg.generate(SeededRandomSource(7)).public
    assert alg.generate(SeededRandomSource(7)).public != alg.generate(SeededRandomSource(8)).public


def test_lookup() -> None:
    assert dh_alg(19) is DH_ALGS[DhGroup.ECP_256]
    assert dh_alg(2) is None  # MODP-1024 is not implemented (RFC 8247: SHOULD NOT)
    x25519 = dh_alg(DhGroup.CURVE25519)
    assert x25519 is not None and x25519.keyword == "x25519"


def _probable_prime(n: int) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in (2, 3, 5):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@pytest.mark.parametrize("group", sorted(MODP_PRIMES))
def test_modp_primes_are_the_rfc3526_safe_primes(group: DhGroup) -> None:
    # A transcription error in the hex would break primality of p or (p-1)/2.
    p, _ = MODP_PRIMES[group]
    bits = {DhGroup.MODP_2048: 2048, DhGroup.MODP_3072: 3072, DhGroup.MODP_4096: 4096}[group]
    assert p.bit_length() == bits
    assert p >> (bits - 64) == 2**64 - 1 and p & (2**64 - 1) == 2**64 - 1  # RFC 3526 shape
    assert _probable_prime(p)
    assert _probable_prime((p - 1) // 2)


# ---------------------------------------------------------------- RFC 6989


@pytest.mark.parametrize("group", [DhGroup.MODP_2048, DhGroup.MODP_3072])
def test_modp_rejects_0_1_p_minus_1_and_bad_lengths(group: DhGroup) -> None:
    alg = DH_ALGS[group]
    p, _ = MODP_PRIMES[group]
    size = alg.public_size
    mine = alg.generate(SeededRandomSource(1))
    for bad in (0, 1, p - 1, p, p + 1, 2**(8 * size) - 1):  # RFC 6989 §2.1: 1 < y < p-1
        with pytest.raises(InvalidPublicValue):
            mine.shared(bad.to_bytes(size, "big"))
    good = alg.generate(SeededRandomSource(2)).public
    for data in (good[1:], b"\x00" + good, b""):
        with pytest.raises(InvalidPublicValue):
            mine.shared(data)
    assert len(mine.shared((2).to_bytes(size, "big"))) == size  # 2 is a valid element


@pytest.mark.parametrize("group", [DhGroup.ECP_256, DhGroup.ECP_384, DhGroup.ECP_521])
def test_ecp_rejects_points_off_the_curve_and_bad_lengths(group: DhGroup) -> None:
    alg = DH_ALGS[group]
    mine = alg.generate(SeededRandomSource(3))
    peer = bytearray(alg.generate(SeededRandomSource(4)).public)
    coord = len(peer) // 2
    off_curve = bytearray(peer)
    off_curve[-1] ^= 1  # y changed: (x, y') is not on the curve
    cases = [
        bytes(off_curve),
        bytes(2 * coord),  # (0, 0)
        b"\xff" * (2 * coord),  # coordinates >= p
        bytes(peer[:-1]),
        bytes(peer) + b"\x00",
        b"\x04" + bytes(peer),  # SEC1 prefix is not part of KE data (RFC 5903 §7)
    ]
    for data in cases:
        with pytest.raises(InvalidPublicValue):
            mine.shared(data)


@pytest.mark.parametrize("group", [DhGroup.CURVE25519, DhGroup.CURVE448])
def test_x25519_x448_reject_bad_length_and_zero_result(group: DhGroup) -> None:
    alg = DH_ALGS[group]
    mine = alg.generate(SeededRandomSource(5))
    size = alg.public_size
    for data in (b"", bytes(size - 1), bytes(size + 1)):
        with pytest.raises(InvalidPublicValue):
            mine.shared(data)
    # Low-order points give an all-zero shared secret (RFC 7748 §6, RFC 8031 §2.3).
    low_order = [bytes(size), (1).to_bytes(size, "little")]
    for data in low_order:
        with pytest.raises(InvalidPublicValue):
            mine.shared(data)


def test_x25519_masks_the_top_bit() -> None:
    # RFC 7748 §5 / RFC 8031 §2: the most significant bit of the u-coordinate is ignored.
    alg = DH_ALGS[DhGroup.CURVE25519]
    a, b = alg.generate(SeededRandomSource(10)), alg.generate(SeededRandomSource(11))
    flipped = bytearray(b.public)
    flipped[31] |= 0x80
    assert a.shared(bytes(flipped)) == a.shared(b.public)
