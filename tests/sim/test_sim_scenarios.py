"""Every scenario runs at small scale and its key metric has the expected shape."""

from __future__ import annotations

from typing import Any

import pytest

from quickike.engine.config import RetransmitPolicy
from quickike.sim import Params, run_scenario

RTT = 0.020  # default one-way latency 10 ms
EPS = 1e-6
STRONGSWAN_DEAD = RetransmitPolicy().give_up_after()  # 165.06 s


def run(name: str, **kw: Any) -> dict[str, Any]:
    options = kw.pop("options", {})
    result = run_scenario(name, Params(seed=kw.pop("seed", 1), options=options, **kw),
                          per_tunnel=True)
    m = result.metrics
    assert m["established"] == m["tunnels"], m
    assert m["restored"] == m["disrupted"] == m["tunnels"], m
    return m


def one(m: dict[str, Any], key: str) -> float:
    d = m[key]
    assert d["count"] >= 1, (key, d)
    return float(d["max"])


def test_seed_story_qcd_detects_within_one_rtt_of_the_answer() -> None:
    m = run("seed")
    assert m["detect_reasons"] == {"qcd (make-before-break)": 1}
    assert one(m, "answer_to_detect") <= RTT + EPS
    # ESP -> INVALID_SPI, liveness check -> INVALID_IKE_SPI + token: two round trips
    assert one(m, "detect_from_hit") <= 2 * RTT + EPS
    (t,) = m["per_tunnel"]
    assert [k for _, k in t["answers"]] == ["INVALID_SPI", "INVALID_IKE_SPI+QCD_TOKEN"]
    # back within one traffic interval (1 s) plus a few round trips of the reboot
    assert t["restored"] - t["rebooted"] < 1.0 + 6 * RTT
    assert m["false_teardowns"] == 0
    assert m["engine"]["qcd:teardowns"] == 1


def test_seed_story_without_qcd_waits_for_the_retransmissions() -> None:
    m = run("seed", qcd=False)
    assert m["detect_reasons"] == {"dead-peer": 1}
    assert one(m, "detect_from_check") == pytest.approx(STRONGSWAN_DEAD, abs=1e-3)


def test_spi_map_answers_in_one_message_when_taken_at_once() -> None:
    m = run("seed", options={"spi_map": "yes", "qcd.require_pending": "no",
                             "qcd.accept_delay": "0", "qcd.accept_rtt_factor": "0"})
    assert one(m, "detect_from_hit") <= RTT + EPS  # ESP -> INVALID_SPI + token
    (t,) = m["per_tunnel"]
    assert t["answers"][0][1] == "INVALID_SPI+QCD_TOKEN"
    # with the default defences the unsolicited token only starts a liveness check
    d = run("seed", options={"spi_map": "yes"})
    assert d["engine"]["qcd:tokens-rejected:unsolicited"] == 1
    assert one(d, "detect_from_hit") == pytest.approx(2 * RTT, abs=EPS)


def test_seed_story_through_nat() -> None:
    m = run("seed", options={"nat": "yes"})
    assert m["detect_reasons"] == {"qcd (make-before-break)": 1}
    assert one(m, "answer_to_detect") <= RTT + EPS
    assert m["traffic"]["survivor"]["keepalive_packets"] >= 1  # NAT-T keepalives flowed


def test_initiator_crash_responder_detects_with_the_initiators_token() -> None:
    m = run("initiator-crash")
    assert m["detect_reasons"] == {"qcd (wait-for-traffic)": 1}
    assert one(m, "answer_to_detect") <= RTT + EPS
    (t,) = m["per_tunnel"]
    assert t["detected"] < t["rebooted"] + 1.0 + 3 * RTT
    slow = run("initiator-crash", qcd=False)
    assert one(slow, "detect_from_check") == pytest.approx(STRONGSWAN_DEAD, abs=1e-3)


def test_outgoing_only_is_found_by_the_liveness_check() -> None:
    m = run("outgoing-only")
    (t,) = m["per_tunnel"]
    # gw2 never answers ESP: every answer is to an IKE request
    assert [k for _, k in t["answers"]] == ["INVALID_IKE_SPI+QCD_TOKEN"]
    assert one(m, "answer_to_detect") <= RTT + EPS
    assert m["engine"].get("invalid-spi-sent", 0) == 0
    slow = run("outgoing-only", qcd=False)
    assert one(slow, "detect_from_check") == pytest.approx(STRONGSWAN_DEAD, abs=1e-3)
    assert one(slow, "outage") > one(m, "outage") + 100


def test_inter_domain_trap_recreates_after_qcd() -> None:
    m = run("inter-domain")
    assert m["detect_reasons"] == {"qcd (wait-for-traffic)": 1}
    assert one(m, "answer_to_detect") <= RTT + EPS
    assert m["engine"]["acquires"] == 2  # the first SA, then its replacement after QCD
    slow = run("inter-domain", qcd=False)
    assert slow["detect_reasons"] == {"dead-peer": 1}


def test_dpd_strongswan_165_s_after_the_first_check() -> None:
    m = run("dpd-strongswan")
    assert m["detect_reasons"] == {"dead-peer": 1}
    assert one(m, "detect_from_check") == pytest.approx(STRONGSWAN_DEAD, abs=1e-3)
    (t,) = m["per_tunnel"]
    # the first check comes dpd_delay (30 s) after the last packet from gw2
    assert t["first_check"] - t["disrupted"] == pytest.approx(30.0, abs=1.0)
    assert t["answers"] == []  # a strongSwan-like gw2 answers unknown SPIs with nothing


def test_dpd_libreswan_60_s_after_the_probe() -> None:
    m = run("dpd-libreswan")
    assert one(m, "detect_from_check") == pytest.approx(60.0, abs=1e-3)


def test_thirty_percent_loss_still_recovers_without_false_teardowns() -> None:
    result = run_scenario("loss", Params(seed=2, tunnels=6))
    m = result.metrics
    assert m["restored"] == m["disrupted"] >= 5
    assert m["false_teardowns"] == 0
    sent = sum(v for k, v in m["traffic"]["total"].items() if k.endswith("_packets")
               and not k.startswith("keepalive"))
    assert 0.25 < m["network"]["drop:loss"] / sent < 0.35


def test_mass_reboot_small() -> None:
    m = run("mass-reboot", tunnels=150)
    assert m["detect_reasons"] == {"qcd (make-before-break)": 150}
    assert one(m, "detection") < 2.0  # one traffic interval plus a few round trips
    assert m["false_teardowns"] == 0


@pytest.mark.parametrize(("mitigations", "naive", "smart", "harmless"), [
    ("none", 3, 3, False),
    ("pending", 0, 3, False),
    ("delay", 0, 0, True),
    ("rekey", 3, 3, True),
    ("all", 0, 0, True),
])
def test_issue_202_each_defence(mitigations: str, naive: int, smart: int,
                                harmless: bool) -> None:
    for strategy, expected in (("naive", naive), ("smart", smart)):
        m = run("standby-spoof", options={"mitigations": mitigations, "attacker": strategy,
                                          "attacks": "3", "attack_period": "5"})
        (a,) = m["attack"]
        assert a["attempts"] == 3
        assert a["successes"] == expected, (mitigations, strategy)
        assert m["false_teardowns"] == expected
        assert (a["outage_caused"] == 0.0) == (harmless or expected == 0)
        # the genuine failover afterwards is still caught by QCD
        assert m["detect_reasons"] and all(k.startswith("qcd") for k in m["detect_reasons"])


def test_issue_202_dampening_limits_repeated_attacks() -> None:
    m = run("standby-spoof", options={"mitigations": "dampening", "attacker": "naive",
                                      "attacks": "10", "attack_period": "1"})
    (a,) = m["attack"]
    assert 0 < a["successes"] < a["attempts"] == 10
    assert m["engine"]["qcd:dampened"] >= 1


def test_issue_202_delay_costs_a_genuine_failover_little() -> None:
    none = run("standby-spoof", options={"mitigations": "none", "attacks": "1"})
    delay = run("standby-spoof", options={"mitigations": "delay", "attacks": "1"})
    added = one(delay, "detection") - one(none, "detection")
    assert 0 < added <= 1.5 * RTT + EPS
