"""Hostile input never crashes: every bad packet ends in a typed error or a counter."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quickike.dataplane import esp as esp_module
from quickike.dataplane.errors import EspError
from quickike.dataplane.esp import decryptor_for, encryptor_for
from quickike.dataplane.spd import summarize
from quickike.engine.dataplane import TrapSpec
from quickike.wire.enums import EncrId, IntegId

from .helpers import SUITES, Clock, Gateway, ipv4, net, spec_pair

SPI_A = b"\xaa\x00\x00\x01"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(SUITES[:1] + SUITES[3:5]))
def test_decryptor_raises_only_typed_errors(
    data: bytes, suite: tuple[str, int, int, int, int, int]
) -> None:
    _, eid, bits, iid, ek, ik = suite
    _, b = spec_pair(eid, bits, iid, ek, ik, esn=bool(len(data) % 2))
    dec = decryptor_for(b)
    try:
        dec.open(b.spi_in + data, 0.0)
    except EspError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_dataplane_survives_garbage_both_ways(data: bytes) -> None:
    clock = Clock()
    gw = Gateway(clock)
    sa, _ = spec_pair()
    gw.dp.install_child(sa)
    gw.dp.install_trap(TrapSpec("gw", "t", (net("0.0.0.0/0"),), (net("0.0.0.0/0"),)))
    gw.dp.receive_esp(data, ("192.0.2.2", 4500))
    gw.dp.receive_esp(SPI_A + data, ("192.0.2.2", 4500))  # our SPI, garbage after it
    gw.dp.send_packet(data)
    gw.tun.inbox.append(data)
    gw.dp.tun_readable()
    summarize(data)
    s = gw.dp.stats
    assert s.tun_out == 0  # nothing unauthenticated ever reaches the TUN device


@pytest.mark.parametrize("eid", [EncrId.AES_GCM_16, EncrId.CHACHA20_POLY1305])
def test_fallback_without_encrypt_into(monkeypatch: pytest.MonkeyPatch, eid: int) -> None:
    """cryptography versions without encrypt_into/decrypt_into take the allocating calls."""
    a, b = spec_pair(
        eid, 128 if eid == EncrId.AES_GCM_16 else 256, 0, 20 if eid == EncrId.AES_GCM_16 else 36
    )
    enc_fast, dec_fast = encryptor_for(a), decryptor_for(b)
    pkt = ipv4("10.1.0.1", "10.2.0.1", payload=os.urandom(99))
    fast = enc_fast.seal(pkt, 4, 0.0)
    monkeypatch.setattr(esp_module, "_HAS_INTO", False)
    enc_slow, dec_slow = encryptor_for(a), decryptor_for(b)
    slow = enc_slow.seal(pkt, 4, 0.0)
    assert slow == fast  # same key, same sequence number, same IV: same bytes
    assert dec_slow.open(fast, 0.0) == (4, pkt)
    monkeypatch.setattr(esp_module, "_HAS_INTO", True)
    assert dec_fast.open(slow, 0.0) == (4, pkt)
    bad = bytearray(slow)
    bad[-1] ^= 1
    monkeypatch.setattr(esp_module, "_HAS_INTO", False)
    with pytest.raises(EspError):
        decryptor_for(b).open(bytes(bad), 0.0)


def test_cbc_with_esn_and_all_hmacs_round_trip() -> None:
    for _, eid, bits, iid, ek, ik in SUITES:
        if eid != EncrId.AES_CBC:
            continue
        a, b = spec_pair(eid, bits, iid, ek, ik, esn=True)
        p = ipv4("10.1.0.1", "10.2.0.1", payload=b"x" * 33)
        assert decryptor_for(b).open(encryptor_for(a).seal(p, 4, 0.0), 0.0) == (4, p)
    assert IntegId.HMAC_SHA2_512_256 in {s[3] for s in SUITES}
