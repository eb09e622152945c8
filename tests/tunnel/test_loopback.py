"""The userspace data plane inside the daemon, without root: two daemons on loopback.

Real IKE and real ESP-in-UDP between 127.0.0.1 and 127.0.0.2; a socket pair stands in for
each TUN device, with an emulated host behind it (host B answers pings).
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from quickike.control.config import ConfigError
from quickike.daemon.demo import SHORT_RETRANSMIT, loopback_story
from quickike.engine.config import RetransmitPolicy

from .loopback import HOSTS, LoopbackPair

pytestmark = pytest.mark.timeout(60)


def run(scene: Callable[[LoopbackPair], Awaitable[None]]) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory(prefix="qt") as tmp:
            pair = LoopbackPair(tmp)
            try:
                await scene(pair)
            finally:
                pair.close()

    asyncio.run(main())


def test_first_packet_brings_a_trap_tunnel_up_and_is_delivered() -> None:
    """Traffic-triggered set-up: the packet that hit the trap waits and then goes through."""

    async def scene(p: LoopbackPair) -> None:
        p.configure("A", initiator=False, start_action="trap")
        p.configure("B", initiator=False, start_action="trap")
        await p.start("B")
        await p.start("A")
        assert p.a.count("ike-up") == 0  # traps only: nothing happens without traffic
        p.a.host.ping(HOSTS["B"], 1)
        await p.until(lambda: 1 in p.a.host.probes.answered, 5, "the first ping answered")
        stats = p.a.dataplane.stats
        assert stats.trapped == 1 and stats.released == 1 and stats.trap_dropped == 0
        assert p.a.daemon is not None and p.a.daemon.engine is not None
        assert p.a.daemon.engine.counters["acquires"] == 1
        # the packet's selectors went first in TSi/TSr (RFC 7296 §2.9); B narrowed the
        # proposal to its configured networks without keeping the contained host selectors
        up_b = next(r for r in p.b.records if r.get("event") == "child-up")
        assert list(up_b["local_ts"]) == ["10.201.2.0/24"]
        assert list(up_b["remote_ts"]) == ["10.201.1.0/24"]
        # the tunnel carries the other direction too, without another set-up
        p.b.host.ping(HOSTS["A"], 1)
        await p.until(lambda: 1 in p.b.host.probes.answered, 5, "B's ping answered")
        assert p.a.count("ike-up") == 1 and p.b.count("ike-up") == 1

    run(scene)


def test_userspace_forces_udp_encapsulation_on_the_nat_t_port() -> None:
    async def scene(p: LoopbackPair) -> None:
        p.configure("A", initiator=True)
        p.configure("B", initiator=False)
        await p.start("B")
        await p.start("A")
        await p.until(lambda: p.a.count("child-up") == 1 and p.b.count("child-up") == 1, 5,
                      "tunnel")  # fmt: skip
        (spec_a,) = p.a.dataplane.children()
        (spec_b,) = p.b.dataplane.children()
        assert spec_a.encap and spec_b.encap
        assert spec_a.remote_addr[1] == p.b.nat_t and spec_b.remote_addr[1] == p.a.nat_t
        await p.ping("A", "B", 5)
        await p.until(lambda: len(p.a.host.probes.answered) == 5, 5, "pings")
        # both ESP directions arrived on the NAT-T sockets that the data planes read
        assert p.a.dataplane.stats.esp_in >= 5 and p.b.dataplane.stats.esp_in >= 5
        assert p.a.dataplane.stats.ike_in >= 1  # IKE_AUTH's answer came the same way

    run(scene)


def test_only_transforms_the_data_plane_runs_are_proposed() -> None:
    async def scene(p: LoopbackPair) -> None:
        # aes128gcm12 would be preferred, but the userspace data plane has no 12-octet ICV
        p.configure("A", initiator=True, esp_proposals="aes128gcm12-aes128gcm16")
        p.configure("B", initiator=False, esp_proposals="aes128gcm12-aes128gcm16")
        await p.start("B")
        await p.start("A")
        await p.until(lambda: p.a.count("child-up") == 1, 5, "tunnel")
        up = next(r for r in p.a.records if r.get("event") == "child-up")
        assert up["suite"] == "aes128gcm16-noesn"

    run(scene)


def test_a_child_the_data_plane_cannot_run_is_a_configuration_error() -> None:
    async def scene(p: LoopbackPair) -> None:
        p.configure("A", initiator=True, esp_proposals="aes128gcm12")
        with pytest.raises(ConfigError, match=r"esp_proposals: no proposal the userspace"):
            await p.start("A")

    run(scene)


def test_held_packets_are_dropped_when_the_tunnel_does_not_come() -> None:
    async def scene(p: LoopbackPair) -> None:
        # hold long enough that a busy machine's loop still sees all three held
        p.configure("A", initiator=False, start_action="trap", tun={"hold": "1s"})
        await p.start("A")  # B never starts
        await p.ping("A", "B", 3)
        dp = p.a.dataplane
        tq = dp.trap_queue("site", "net")
        assert tq is not None and len(tq.packets) == 3 and dp.stats.trapped == 3
        await p.until(lambda: dp.stats.trap_dropped == 3, 5, "held packets dropped")
        assert not tq.packets and not p.a.host.probes.answered

    run(scene)


def test_esp_with_unknown_spis_gets_rate_limited_invalid_spi() -> None:
    async def scene(p: LoopbackPair) -> None:
        p.configure("B", initiator=False)
        await p.start("B")
        assert p.b.daemon is not None and p.b.daemon.engine is not None
        eng = p.b.daemon.engine
        stats = p.b.dataplane.stats
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        got: list[bytes] = []

        def all_answers_in() -> bool:
            while True:
                try:
                    got.append(peer.recv(2048))
                except BlockingIOError:
                    return len(got) >= eng.counters["invalid-spi-sent"]

        try:
            for _ in range(200):  # a flood of ESP for SPIs B never had
                peer.sendto(os.urandom(4) + b"\0\0\0\1" + os.urandom(40), ("127.0.0.2", p.b.nat_t))
            await p.until(lambda: stats.unknown_spi == 200, 5, "B read the whole flood")
            await p.until(all_answers_in, 5, "every INVALID_SPI B sent")
        finally:
            peer.close()
        reported = eng.counters["esp-unknown-spi"]
        assert 0 < reported <= 32 and stats.unknown_spi_suppressed == 200 - reported
        sent = eng.counters["invalid-spi-sent"]
        assert 0 < sent <= 20 and len(got) == sent
        # each answer is an IKE INFORMATIONAL behind the non-ESP marker, sent from the NAT-T port
        assert all(g[:4] == b"\0\0\0\0" and g[4 + 18] == 37 for g in got)

    run(scene)


def test_packet_lifetime_makes_the_engine_rekey_the_child() -> None:
    async def scene(p: LoopbackPair) -> None:
        child = {"rekey_packets": "30", "life_packets": "1000", "rekey_time": "0"}
        p.configure("A", initiator=True, child=child)
        p.configure("B", initiator=False)
        await p.start("B")
        await p.start("A")
        await p.until(lambda: p.a.count("child-up") == 1, 5, "tunnel")
        await p.ping("A", "B", 50)
        await p.until(lambda: p.a.count("child-up") == 2, 5, "the rekeyed CHILD SA")
        new = [r for r in p.a.records if r.get("event") == "child-up"][-1]
        assert new["rekeyed_from"] is not None
        await p.until(lambda: len(p.a.host.probes.answered) >= 48, 5, "pings answered")

    run(scene)


def _story(qcd: bool, **kw: Any) -> Any:
    async def main() -> Any:
        with tempfile.TemporaryDirectory(prefix="qt") as tmp:
            return await loopback_story(tmp, qcd=qcd, **kw)

    return asyncio.run(main())


def test_crash_story_with_qcd_recovers_within_a_second() -> None:
    story = _story(True)
    assert story.outage is not None and story.outage < 1.0
    kinds = [m.what for m in story.marks if m.t >= story.ready]
    expected = ["ESP for an unknown SPI: INVALID_SPI sent", "liveness check (hint-invalid-spi)",
                "INVALID_IKE_SPI + QCD token received", "token matches: B rebooted",
                "old tunnel deleted (QCD)", "new tunnel up", "first ping answered"]  # fmt: skip
    assert [k for k in kinds if k in expected] == expected


def test_crash_story_without_qcd_waits_for_the_retransmissions() -> None:
    story = _story(False, retransmit=SHORT_RETRANSMIT)
    give_up = RetransmitPolicy(timeout=0.5, tries=2).give_up_after()
    assert story.outage is not None and give_up <= story.outage < give_up + 1.0
    whats = [m.what for m in story.marks]
    assert "INVALID_IKE_SPI (no token)" in whats and "peer declared dead" in whats
    assert not any("QCD" in w for w in whats)


def test_reload_refuses_esp_proposals_the_data_plane_cannot_run() -> None:
    async def scene(p: LoopbackPair) -> None:
        text = p.configure("A", initiator=False)
        path = f"{p.a.state}.conf"
        with open(path, "w") as f:
            f.write(text)
        gw = await p.start("A")
        assert gw.daemon is not None
        gw.daemon.config_path = path
        with open(path, "w") as f:
            f.write(text.replace("esp_proposals = aes128gcm16", "esp_proposals = aes128gcm8"))
        assert gw.daemon.reload() is False
        assert "aes128gcm16" in gw.daemon.config.connections["site"].children[0].esp_proposals
        with open(path, "w") as f:
            f.write(text.replace("esp_proposals = aes128gcm16", "esp_proposals = aes256gcm16"))
        assert gw.daemon.reload() is True
        assert gw.daemon.config.connections["site"].children[0].esp_proposals == ("aes256gcm16",)

    run(scene)
