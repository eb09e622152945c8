"""Crash and reboot, the simulated data plane, traffic sources."""

from __future__ import annotations

import pytest

from quickike.engine import events as ev
from quickike.engine.sa import IkeState
from quickike.sim import Params, TraceMode, World
from quickike.sim.scenarios import SCENARIOS
from quickike.sim.traffic import Pattern, TrafficSpec


def seed_world(**options: str) -> World:
    setup = SCENARIOS["seed"].build(Params(seed=3, options=dict(options),
                                           trace=TraceMode.FULL))
    assert setup.notes["crash_at"] == pytest.approx(CRASH)
    assert setup.notes["boot_delay"] == pytest.approx(BOOT - CRASH)
    return setup.world


CRASH = 20.001  # the seed story's defaults: peers power on within 1 ms, crash 20 s later
BOOT = 40.001


def test_crash_keeps_store_and_loses_sas() -> None:
    world = seed_world()
    gw1, gw2 = world.nodes["gw1"], world.nodes["gw2"]
    world.run(CRASH - 0.1, settle=None)
    assert gw2.engine is not None and any(sa.usable for sa in gw2.engine.sas.values())
    store = gw2.store
    secret_store = store.qcd_secrets
    secret_bytes = secret_store.data
    assert secret_bytes
    world.run(CRASH + 0.5, settle=None)
    assert not gw2.up and gw2.engine is None and gw2.dataplane is None
    world.run(BOOT + 0.0005, settle=None)  # booted, no packet arrived yet
    assert gw2.up and gw2.boots == 2
    assert gw2.engine is not None and not gw2.engine.sas
    assert gw2.dataplane is not None and not gw2.dataplane.children
    assert gw2.store is store and store.qcd_secrets is secret_store
    assert secret_store.data == secret_bytes  # the same secret, not a new one
    # the survivor still holds the SA the reboot made stale
    assert any(sa.state is IkeState.ESTABLISHED for sa in gw1.engine.sas.values())  # type: ignore[union-attr]


def test_flows_pause_while_the_gateway_is_down_and_resume_on_their_grid() -> None:
    world = seed_world()
    gw2 = world.nodes["gw2"]
    (flow,) = gw2.flows
    world.run(CRASH - 0.1, settle=None)
    before = flow.sent
    world.run(BOOT - 0.1, settle=None)
    assert flow.sent == before  # nothing sent while down
    assert flow.paused_at is not None
    world.run(BOOT + 5.0, settle=None)
    assert flow.sent == before + 5 and flow.paused_at is None
    # back on its one-second grid: the pattern does not restart at the boot instant
    assert world.tunnels[0].restored is not None


def test_unknown_spi_reported_at_most_once_a_second() -> None:
    # without QCD the survivor keeps sending into the stale SA for minutes: 10 packets a
    # second reach the rebooted gw2, its data plane tells the engine once a second
    setup = SCENARIOS["outgoing-only"].build(Params(seed=3, qcd=False, interval=0.1))
    world = setup.world
    world.run(BOOT + 30.0, settle=None)
    packets = world.stats["esp-unknown-spi"]
    reports = world.nodes["gw2"].total_counters()["esp-unknown-spi"]
    assert 290 <= packets <= 310
    assert 29 <= reports <= 31


def test_one_way_and_bursty_traffic() -> None:
    world = seed_world()
    t = world.tunnels[0]
    extra = TrafficSpec(pattern=Pattern.BURSTY, burst_packets=5, burst_spacing=0.01,
                        idle_mean=2.0, size=1000)
    world.add_traffic(t, "10.128.0.20", "10.0.0.20", forward=extra, reverse=None)
    world.run(15.0, settle=None)
    bursty = [f for f in world.flows if f.spec is extra]
    assert len(bursty) == 1 and bursty[0].node is world.nodes["gw1"]  # one way only
    assert bursty[0].sent >= 10 and bursty[0].sent % 5 in range(5)
    child = next(iter(world.nodes["gw2"].dataplane.children.values()))  # type: ignore[union-attr]
    assert child.counters.bytes_in >= 10 * 1000


def test_trap_holds_packets_and_acquires() -> None:
    setup = SCENARIOS["inter-domain"].build(Params(seed=2))
    world = setup.world
    world.run(5.0, settle=None)
    gw1 = world.nodes["gw1"]
    assert gw1.total_counters()["acquires"] == 1  # the first packet hit the trap
    assert world.stats["held"] >= 1
    assert world.tunnels[0].established_at is not None
    assert world.tunnels[0].delivered >= 3  # the held packet went out once the SA was up


def test_events_reach_world_hooks() -> None:
    world = seed_world()
    seen: list[str] = []
    world.event_hooks.append(lambda node, e: seen.append(type(e).__name__)
                             if isinstance(e, ev.IkeSaUp) else None)
    world.run(5.0, settle=None)
    assert seen == ["IkeSaUp", "IkeSaUp"]


def test_child_spi_map_survives_the_crash() -> None:
    world = seed_world(spi_map="yes")
    gw2 = world.nodes["gw2"]
    world.run(CRASH - 0.1, settle=None)
    assert gw2.engine is not None
    spi_in = next(iter(gw2.engine.children_in))
    spi_map = gw2.store.child_spi_map
    before = spi_map.get(spi_in)
    assert before is not None
    world.run(BOOT + 0.0005, settle=None)
    assert gw2.store.child_spi_map is spi_map and spi_map.get(spi_in) == before


def test_random_crash_time_comes_from_the_seed() -> None:
    def crash_at(seed: int) -> float:
        setup = SCENARIOS["seed"].build(Params(seed=seed, options={"crash_window": "20:60"}))
        at = float(setup.notes["crash_at"])  # type: ignore[arg-type]
        assert 20.0 <= at <= 60.0
        return at

    assert crash_at(1) == crash_at(1)
    assert len({crash_at(s) for s in range(1, 6)}) == 5


def test_long_partition_makes_dpd_tear_down_a_live_sa() -> None:
    from quickike.sim import run_scenario

    m = run_scenario("seed", Params(seed=1, qcd=False, horizon=300.0,
                                    options={"crash": "no", "partition": "30:230"})).metrics
    assert m["disrupted"] == 0
    # both ends give up after 165 s; the first to do so tears down what its peer still holds
    assert m["false_teardowns"] == 1
    assert m["engine"]["ike-down:dead-peer"] == 2
    short = run_scenario("seed", Params(seed=1, qcd=False, horizon=300.0,
                                        options={"crash": "no", "partition": "30:60"})).metrics
    assert short["false_teardowns"] == 0 and "ike-down:dead-peer" not in short["engine"]
