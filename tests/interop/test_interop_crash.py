"""charon dies (SIGKILL): quickike notices through its liveness check and gives up on the
schedule its retransmission settings promise, which the test reads off quickike's own log.

With ``retransmit_timeout = 0.5`` and ``retransmit_tries = 2`` (``retransmit_base`` 1.8) the
liveness request leaves at t, is retransmitted at t+0.5 and t+1.4, and the peer is declared
dead at t+3.02 (charon's formula, see ``RetransmitPolicy``).
"""

from __future__ import annotations

import pytest

from quickike.engine.config import RetransmitPolicy

from .checks import assert_clean, assert_same_ike_sa, assert_tunnel
from .topology import Side
from .world import Interop

pytestmark = [pytest.mark.root, pytest.mark.strongswan]

# Timers never fire early, but each may wake up late on a busy 2-core machine and the lateness
# adds up along the schedule (every wait starts when the previous step actually happened). The
# steps are >= 0.5 s apart: a window of [0, LATE] after each promised time still tells them apart.
EARLY = 1e-3  # seconds: float rounding of loop times
LATE = 0.4


def _on_time(elapsed: float, promised: float) -> bool:
    return promised - EARLY <= elapsed <= promised + LATE


def test_charon_killed_is_declared_dead_on_schedule(interop: Interop) -> None:
    charon = interop.start_charon(Side())
    qi = interop.start_quickike(
        Side(conn={"dpd_delay": "1s"}, child={"start_action": "start"}),
        settings={"retransmit_timeout": 0.5, "retransmit_tries": 2},
    )
    sa = assert_tunnel(qi, charon, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
    ike = assert_same_ike_sa(qi, sa)
    mark = qi.mark()
    charon.kill()
    dead = qi.wait_event("dead-peer", after=mark, timeout=10)
    # the check that found charon dead is the last one before it gave up (it may have left just
    # before the kill: a slow setup lets the first dpd_delay expire while charon still lives)
    check = [r for r in qi.events("liveness", ike_uid=ike["ike_uid"])
             if r["time"] <= dead["time"]][-1]  # fmt: skip
    request = next(m for m in qi.messages(sent=True, exchange="INFORMATIONAL", response=False)
                   if m["time"] == check["time"])  # fmt: skip
    retransmits = qi.events("retransmit", ike_uid=ike["ike_uid"], message_id=request["message_id"])
    policy = RetransmitPolicy(timeout=0.5, tries=2)
    expected = policy.send_times()[1:]  # (0.5, 1.4)
    assert [r["attempt"] for r in retransmits] == [1, 2]
    for r, offset in zip(retransmits, expected, strict=True):
        assert _on_time(r["time"] - check["time"], offset), (r, check, offset)
    assert _on_time(dead["time"] - check["time"], policy.give_up_after()), (dead, check)
    assert policy.give_up_after() == pytest.approx(3.02)
    down = qi.wait_event("ike-down", ike_uid=ike["ike_uid"])
    assert down["reason"] == "dead-peer" and down["time"] == dead["time"]
    assert qi.events("child-down", reason="dead-peer")
    # the liveness check started at most dpd_delay after the last sign of life
    last_in = max(m["time"] for m in qi.messages(sent=False) if m["spi_i"] == ike["spi_i"])
    assert check["time"] - last_in <= 1.0 + LATE
    assert_clean(qi)
