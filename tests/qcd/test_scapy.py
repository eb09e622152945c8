"""scapy's independent IKEv2 decoder reads our unprotected QCD answers as intended."""

from __future__ import annotations

import pytest

from quickike.engine.config import StartAction
from quickike.qcd import MemoryChildSpiMap

from .helpers import B_IP, auto_child, bring_up, esp_from, gateways, only_sa, peer_tokens

ik = pytest.importorskip("scapy.contrib.ikev2")


def _notifies(pkt) -> list[tuple[int, int, int, bytes]]:  # type: ignore[no-untyped-def]
    out = []
    p = pkt.payload
    while p is not None and p.__class__.__name__ == "IKEv2_Notify":
        out.append((int(p.type), int(p.proto), int(p.SPIsize), bytes(p.notify)))
        p = p.payload if p.payload.__class__.__name__ != "NoPayload" else None
    return out


def _setup(spi_map=None):  # type: ignore[no-untyped-def]
    net, ga, gb = gateways(a_children=(auto_child("a", start_action=StartAction.START),))
    if spi_map is not None:
        gb.spi_map = spi_map
        gb.crash_and_reboot(net)
    bring_up(net, ga, gb)
    sa = only_sa(ga)
    tokens = peer_tokens(gb, sa)
    spi_out = sa.children[0].spi_out
    gb.crash_and_reboot(net)
    since = net.now
    esp_from(ga, gb, net)
    net.advance(1.0)
    sent = [d.data for t, d in net.wire if t >= since and d.local[0] == B_IP]
    return sa, tokens, spi_out, sent


def test_invalid_ike_spi_with_token_decodes_in_scapy() -> None:
    sa, tokens, _, sent = _setup()
    reply = next(d for d in sent if d[18] == 37 and d[19] & 0x20)  # INFORMATIONAL, R=1
    pkt = ik.IKEv2(reply)
    assert bytes(pkt.init_SPI) == sa.spi_i and bytes(pkt.resp_SPI) == sa.spi_r
    assert pkt.exch_type == 37 and pkt.version == 0x20
    assert "Response" in str(pkt.flags) and "Initiator" not in str(pkt.flags)
    assert pkt.id == 2 and pkt.length == len(reply)
    assert _notifies(pkt) == [(4, 0, 0, b""), (16419, 1, 0, tokens[0])]
    assert ik.IKEv2NotifyMessageTypes[16419] == "QUICK_CRASH_DETECTION"


def test_invalid_spi_with_token_decodes_in_scapy() -> None:
    sa, tokens, spi_out, sent = _setup(MemoryChildSpiMap())
    first = sent[0]
    pkt = ik.IKEv2(first)
    assert (bytes(pkt.init_SPI), bytes(pkt.resp_SPI)) == (sa.spi_i, sa.spi_r)
    assert pkt.exch_type == 37 and pkt.id == 0
    assert "Initiator" in str(pkt.flags) and "Response" not in str(pkt.flags)
    # INVALID_SPI: the SPI as data, Protocol ID 0 with the empty SPI field (RFC 7296 §3.10)
    assert _notifies(pkt) == [(11, 0, 0, spi_out), (16419, 1, 0, tokens[0])]
