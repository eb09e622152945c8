"""Crash recovery with real processes: gateway B (the responder) SIGKILLed and restarted.

Host A pings host B every 10 ms.  With QCD the survivor A restores the tunnel within a second
of B being ready; without QCD it cannot know before its liveness check has been retransmitted
to the end (0.5 s timeout, 2 tries: 3.02 s here; bench/bench_recovery.py measures the numbers).
"""

from __future__ import annotations

import pytest

from needs import require_tun
from quickike.daemon.demo import SHORT_RETRANSMIT, namespace_story
from quickike.engine.config import RetransmitPolicy
from quickike.lab.netns import Lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

STORY = ["ESP for an unknown SPI: INVALID_SPI sent", "liveness check (hint-invalid-spi)",
         "INVALID_IKE_SPI + QCD token received", "token matches: B rebooted",
         "old tunnel deleted (QCD)", "new tunnel up", "first ping answered"]  # fmt: skip


def test_with_qcd_the_survivor_restores_the_tunnel_within_a_second(lab: Lab) -> None:
    require_tun()
    pair = lab.gateway_pair(hosts=True, ipv6=False)
    run = namespace_story(lab, pair, lab.workdir, qcd=True)
    assert run.outage is not None and run.outage < 1.0, lab.describe()
    told = [m.what for m in run.marks if m.t >= run.ready]
    assert [w for w in told if w in STORY] == STORY
    # the pings that were lost are those of the outage, nothing after the new tunnel
    assert run.probes.answers_since(run.first_answer or 0) >= 3


def test_without_qcd_not_before_the_retransmissions_end(lab: Lab) -> None:
    require_tun()
    pair = lab.gateway_pair(hosts=True, ipv6=False)
    run = namespace_story(lab, pair, lab.workdir, qcd=False, retransmit=SHORT_RETRANSMIT,
                          timeout=10.0)  # fmt: skip
    give_up = RetransmitPolicy(timeout=0.5, tries=2).give_up_after()
    assert run.outage is not None, lab.describe()
    assert give_up <= run.outage < give_up + 1.5
    told = [m.what for m in run.marks]
    assert "INVALID_IKE_SPI (no token)" in told and "peer declared dead" in told
    assert not any("QCD" in w for w in told)
