"""Simultaneous rekeys (RFC 7296 §2.8.1, §2.8.2) with charon, made deterministic.

charon's ``receive_delay`` (300 ms, CREATE_CHILD_SA only, requests and responses) holds
quickike's rekey request and the answer to charon's own rekey, so both requests are in flight
at once whatever the scheduling: quickike asks first, charon right after, and each side meets
the other's request while its own is outstanding. Which new SA survives depends on the nonces;
either way both sides must end with the same single SA, and the survivor must keep working.
"""

from __future__ import annotations

import pytest

from quickike.lab.charon import CharonSettings, IkeSaView

from .checks import assert_clean, assert_tunnel, installed, only_sa
from .daemon import QuickikeDaemon
from .topology import Side
from .world import Interop

pytestmark = [pytest.mark.root, pytest.mark.strongswan]

DELAY = {"receive_delay": 300, "receive_delay_type": 36,  # CREATE_CHILD_SA
         "receive_delay_request": True, "receive_delay_response": True}  # fmt: skip


@pytest.mark.parametrize("what", ["child", "ike"])
def test_simultaneous_rekeys_end_in_one_sa(interop: Interop, what: str) -> None:
    charon = interop.start_charon(Side(), settings=CharonSettings(extra=DELAY))
    # charon drops requests on the SA it made as a rekey responder until it has settled the
    # collision (no log line at all): quickike's Delete of a redundant SA then needs its
    # retransmission, so keep that short
    qi = interop.start_quickike(Side(child={"start_action": "start"}),
                                settings={"retransmit_timeout": 1.0})  # fmt: skip
    before = assert_tunnel(qi, charon, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
    (old_child,) = installed(before)
    request = {"child": "net"} if what == "child" else {"ike": "gw"}
    assert qi.rekey(**request) == 1
    assert dict(charon.session().rekey(request)).get("success") == b"yes"
    collision = f"detected {what.upper()}_REKEY collision with {what.upper()}_REKEY"
    if what == "child":
        after = charon.wait_for(
            lambda sas: len(sas) == 1 and [c["spi-in"] for c in installed(sas[0])] not in
            ([], [old_child["spi-in"]]) and len(installed(sas[0])) == 1,
            what="one new CHILD SA", timeout=8)[0]  # fmt: skip
        assert (after.spi_i, after.spi_r) == (before.spi_i, before.spi_r)
        # both new pairs were made (quickike logs the one it answered after sending the answer)
        qi.wait_until(lambda: len(qi.events("child-up", rekeyed_from=1)) == 2,
                      what="two CHILD SAs rekeyed from the first")  # fmt: skip
        qi.wait_until(lambda: len(qi.events("child-down")) == 2, what="old and redundant gone")
    else:
        after = charon.wait_for(
            lambda sas: len(sas) == 1 and sas[0].spi_i != before.spi_i and bool(installed(sas[0])),
            what="one new IKE SA", timeout=8)[0]  # fmt: skip
        assert [c["spi-in"] for c in installed(after)] == [old_child["spi-in"]]
        qi.wait_event("ike-down", ike_uid=1, reason="rekeyed")
        # a redundant SA that charon made and never deletes is REKEYED (forgotten after 60 s)
        leftovers = [sa for sa in qi.list_sas() if sa.state != "ESTABLISHED"]
        assert all(sa.state == "REKEYED" and not sa.children for sa in leftovers), leftovers
    assert collision in charon.log_text()
    qi.wait_until(lambda: _agree(qi, only_sa(charon)), what="the same single tunnel")
    # the survivor works: charon rekeys its CHILD once more (no collision this time)
    mark = qi.mark()
    assert dict(charon.session().rekey({"child": "net"})).get("success") == b"yes"
    qi.wait_event("child-up", after=mark, timeout=5)
    qi.wait_until(lambda: _agree(qi, only_sa(charon)), what="agreement after the next rekey")
    assert_clean(qi)


def _agree(qi: QuickikeDaemon, charon_sa: IkeSaView) -> bool:
    """quickike has exactly one ESTABLISHED IKE SA, charon's, with the same single CHILD."""
    mine = [sa for sa in qi.list_sas() if sa.state == "ESTABLISHED"]
    if len(mine) != 1 or (mine[0].spi_i, mine[0].spi_r) != (charon_sa.spi_i, charon_sa.spi_r):
        return False
    theirs, ours = installed(charon_sa), installed(mine[0])
    return (len(theirs) == len(ours) == 1 and theirs[0]["spi-in"] == ours[0]["spi-out"]
            and theirs[0]["spi-out"] == ours[0]["spi-in"])  # fmt: skip
