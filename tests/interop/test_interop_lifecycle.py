"""CREATE_CHILD_SA and INFORMATIONAL against charon: rekeys, deletes, liveness, both ways.

quickike's side is driven through its own VICI socket (``rekey``, ``terminate``: the same
commands, through the same `vici` package, as charon's side), so each exchange starts exactly
when the test says; one test also lets quickike's own timers (``rekey_time`` with
``rand_time = 0``) start the rekeys, as in production.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quickike.lab.charon import Charon, IkeSaView

from .checks import (
    assert_clean,
    assert_same_child_sa,
    assert_same_ike_sa,
    assert_tunnel,
    installed,
    only_sa,
    payloads_of,
)
from .daemon import QuickikeDaemon, Record
from .topology import Side
from .world import Interop

pytestmark = [pytest.mark.root, pytest.mark.strongswan]

PROPOSAL = "aes128gcm16-prfsha256-x25519"
SIDES = ["quickike", "charon"]
LATE = 0.6  # seconds a timed exchange may end late on a loaded 2-core machine (never early)


def _up(interop: Interop, initiator: str, *, qi_conn: dict[str, object] | None = None,
        ch_conn: dict[str, object] | None = None, qi_child: dict[str, object] | None = None,
        settings: dict[str, object] | None = None) -> tuple[QuickikeDaemon, Charon, IkeSaView]:  # fmt: skip
    """A tunnel set up by ``initiator``; returns both daemons and charon's view of it."""
    charon = interop.start_charon(Side(conn=dict(ch_conn or {})))
    child = dict(qi_child or {})
    if initiator == "quickike":
        child["start_action"] = "start"
    qi = interop.start_quickike(Side(conn=dict(qi_conn or {}), child=child), settings=settings)
    if initiator == "charon":
        charon.initiate("net", ike="gw")
    sa = assert_tunnel(qi, charon, PROPOSAL, "aes128gcm16")
    return qi, charon, sa


def _wait_charon(charon: Charon, what: str, ready: Callable[[IkeSaView], bool]) -> IkeSaView:
    sas = charon.wait_for(lambda sas: len(sas) == 1 and ready(sas[0]), what=what)
    return sas[0]


def _rekey(side: str, qi: QuickikeDaemon, charon: Charon, **what: str) -> None:
    if side == "quickike":
        assert qi.rekey(**what) == 1
    else:
        answer = dict(charon.session().rekey(dict(what)))
        assert answer.get("success") == b"yes", answer


def _rekey_child_and_check(side: str, qi: QuickikeDaemon, charon: Charon) -> IkeSaView:
    """``side`` rekeys CHILD net; both end with the same single new pair, the old one gone."""
    before = only_sa(charon)
    (old,) = installed(before)
    old_up = assert_same_child_sa(qi, before)
    mark = qi.mark()
    _rekey(side, qi, charon, child="net")
    new_up = qi.wait_event("child-up", rekeyed_from=old_up["child_uid"], after=mark)
    qi.wait_event("child-down", child_uid=old_up["child_uid"], reason="rekeyed", after=mark)
    after = _wait_charon(charon, "CHILD net rekeyed",
                         lambda sa: [c["spi-in"] for c in installed(sa)] == [new_up["spi_out"]])  # fmt: skip
    assert (after.spi_i, after.spi_r) == (before.spi_i, before.spi_r)
    assert installed(after)[0]["spi-out"] != old["spi-out"]
    assert_same_child_sa(qi, after)
    exchange = payloads_of(qi, sent=side == "quickike", exchange="CREATE_CHILD_SA",
                           response=False)[-1]  # fmt: skip
    assert exchange[0] == "N(REKEY_SA)"
    return after


@pytest.mark.parametrize("initiator", SIDES, ids=lambda v: f"{v}-initiated")
@pytest.mark.parametrize("rekeyer", SIDES, ids=lambda v: f"rekeyed-by-{v}")
def test_child_rekey(interop: Interop, rekeyer: str, initiator: str) -> None:
    qi, charon, _ = _up(interop, initiator)
    _rekey_child_and_check(rekeyer, qi, charon)
    assert not qi.events("ike-down")
    assert_clean(qi)


@pytest.mark.parametrize("initiator", SIDES, ids=lambda v: f"{v}-initiated")
@pytest.mark.parametrize("rekeyer", SIDES, ids=lambda v: f"rekeyed-by-{v}")
def test_ike_rekey_then_child_rekey_on_the_new_sa(
    interop: Interop, rekeyer: str, initiator: str
) -> None:
    """The CHILD SA moves to the new IKE SA (RFC 7296 §2.18) and the new IKE SA works:
    afterwards the other side rekeys the CHILD over it."""
    qi, charon, before = _up(interop, initiator)
    (child,) = installed(before)
    old_ike = assert_same_ike_sa(qi, before)
    mark = qi.mark()
    _rekey(rekeyer, qi, charon, ike="gw")
    new_ike = qi.wait_event("ike-up", rekeyed_from=old_ike["ike_uid"], after=mark)
    qi.wait_event("ike-down", ike_uid=old_ike["ike_uid"], reason="rekeyed", after=mark)
    after = _wait_charon(charon, "IKE SA rekeyed",
                         lambda sa: (sa.spi_i, sa.spi_r) == (new_ike["spi_i"], new_ike["spi_r"]))  # fmt: skip
    assert after.state == "ESTABLISHED"
    assert (after.spi_i, after.spi_r) != (before.spi_i, before.spi_r)
    assert new_ike["initiator"] is (rekeyer == "quickike")  # the rekey's initiator is the new I
    assert [c["spi-in"] for c in installed(after)] == [child["spi-in"]]  # the CHILD moved along
    assert not qi.events("child-down")
    assert_same_ike_sa(qi, after)
    assert new_ike["suite"] == PROPOSAL
    other = "charon" if rekeyer == "quickike" else "quickike"
    _rekey_child_and_check(other, qi, charon)
    assert_clean(qi)


@pytest.mark.parametrize("deleter", SIDES, ids=lambda v: f"deleted-by-{v}")
def test_child_delete(interop: Interop, deleter: str) -> None:
    qi, charon, sa = _up(interop, "charon" if deleter == "quickike" else "quickike")
    up = assert_same_child_sa(qi, sa)
    if deleter == "quickike":
        log = qi.terminate(child="net")
        assert any("closed" in line for line in log), log
    else:
        charon.terminate(child="net")
    down = qi.wait_event("child-down", child_uid=up["child_uid"])
    assert down["reason"] == ("deleted" if deleter == "quickike" else "peer-deleted")
    after = _wait_charon(charon, "CHILD net gone", lambda sa: not installed(sa))
    assert after.state == "ESTABLISHED" and (after.spi_i, after.spi_r) == (sa.spi_i, sa.spi_r)
    assert not qi.events("ike-down")
    informational = payloads_of(qi, sent=deleter == "quickike", exchange="INFORMATIONAL",
                                response=False)  # fmt: skip
    assert informational[-1] == ["DELETE"]
    assert_clean(qi)


@pytest.mark.parametrize("deleter", SIDES, ids=lambda v: f"deleted-by-{v}")
def test_ike_delete(interop: Interop, deleter: str) -> None:
    qi, charon, sa = _up(interop, deleter)
    ike = assert_same_ike_sa(qi, sa)
    if deleter == "quickike":
        qi.terminate(ike="gw")
    else:
        charon.terminate(ike="gw")
    down = qi.wait_event("ike-down", ike_uid=ike["ike_uid"])
    assert down["reason"] == ("deleted" if deleter == "quickike" else "peer-deleted")
    assert qi.events("child-down", ike_uid=ike["ike_uid"])
    charon.wait_for(lambda sas: not sas, what="no IKE SA left")
    assert "IKE_SA deleted" in charon.log_text()
    assert_clean(qi)


def test_quickike_shutdown_deletes_its_sas_at_charon(interop: Interop) -> None:
    """SIGTERM: quickike sends a Delete for every IKE SA before it exits (fire and forget)."""
    qi, charon, _ = _up(interop, "quickike")
    qi.sigterm()
    assert qi.process is not None and qi.process.wait(10) == 0
    charon.wait_for(lambda sas: not sas, what="charon deleted the IKE SA")
    log = charon.log_text()
    assert "received DELETE for IKE_SA gw[" in log


@pytest.mark.parametrize("asker", SIDES, ids=lambda v: f"asked-by-{v}")
def test_liveness_checks_are_answered(interop: Interop, asker: str) -> None:
    """dpd_delay = 1s on the asking side only (a side that hears from its peer never asks)."""
    dpd: dict[str, object] = {"dpd_delay": "1s"}
    qi, charon, sa = _up(interop, "quickike", qi_conn=dpd if asker == "quickike" else None,
                         ch_conn=dpd if asker == "charon" else None)  # fmt: skip
    mark = qi.mark()
    if asker == "quickike":
        for _ in range(2):
            check = qi.wait_event("liveness", why="dpd", after=mark, timeout=5)
            mark = qi.records().index(check) + 1

        def requests() -> list[Record]:  # logged just after the "liveness" event
            return [m for m in qi.messages(sent=True, exchange="INFORMATIONAL", response=False)
                    if m["payloads"] == []]  # fmt: skip

        qi.wait_until(lambda: len(requests()) >= 2, what="two liveness requests sent", timeout=5)
        asked_ids = {m["message_id"] for m in requests()[:2]}

        def answered() -> bool:  # the second answer may still be on the wire
            got = qi.messages(sent=False, exchange="INFORMATIONAL", response=True)
            return asked_ids <= {m["message_id"] for m in got}

        qi.wait_until(answered, what=f"charon's answers to liveness checks {sorted(asked_ids)}",
                      timeout=5)  # fmt: skip
    else:
        def asked(n: int) -> bool:
            return len([m for m in qi.messages(sent=False, exchange="INFORMATIONAL",
                                               response=False) if m["payloads"] == []]) >= n  # fmt: skip

        def answers() -> list[Record]:  # quickike logs its answer after sending it
            return qi.messages(sent=True, exchange="INFORMATIONAL", response=True)

        qi.wait_until(lambda: asked(2), what="two DPD requests from charon", timeout=5)
        qi.wait_until(lambda: len(answers()) >= 2, what="quickike's two DPD answers", timeout=5)
        assert all(m["payloads"] == [] for m in answers())
        charon.wait_for(lambda sas: "sending DPD request" in charon.log_text(), what="DPD")
    after = only_sa(charon)
    assert after.state == "ESTABLISHED" and (after.spi_i, after.spi_r) == (sa.spi_i, sa.spi_r)
    assert not qi.events("dead-peer") and not qi.events("ike-down")
    assert "giving up" not in charon.log_text()
    assert_clean(qi)


def test_quickike_rekeys_on_its_own_schedule(interop: Interop) -> None:
    """rekey_time with rand_time = 0: the CHILD rekey after 2 s, the IKE rekey after 3 s."""
    qi, charon, sa = _up(
        interop, "quickike",
        qi_conn={"rekey_time": "3s", "rand_time": "0s"},
        qi_child={"rekey_time": "2s", "life_time": "30s", "rand_time": "0s"},
    )  # fmt: skip
    first_child = assert_same_child_sa(qi, sa)
    first_ike = assert_same_ike_sa(qi, sa)
    child = qi.wait_event("child-up", rekeyed_from=first_child["child_uid"], timeout=6)
    ike = qi.wait_event("ike-up", rekeyed_from=first_ike["ike_uid"], timeout=6)
    # never early; late by the timer's wake-up and one CREATE_CHILD_SA round trip
    assert 2.0 - 1e-3 <= child["time"] - first_child["time"] <= 2.0 + LATE
    assert 3.0 - 1e-3 <= ike["time"] - first_ike["time"] <= 3.0 + LATE
    qi.wait_event("ike-down", ike_uid=first_ike["ike_uid"], reason="rekeyed")

    def settled(s: IkeSaView) -> bool:
        """The next CHILD rekey is due at 4 s: either pair, but not one in the middle of it."""
        kids = installed(s)
        made = {c["spi_out"] for c in qi.events("child-up")[1:]}
        return ((s.spi_i, s.spi_r) == (ike["spi_i"], ike["spi_r"]) and len(kids) == 1
                and kids[0]["spi-in"] in made)  # fmt: skip

    _wait_charon(charon, "both rekeys seen, one CHILD that quickike made by a rekey", settled)
    assert "IKE_SA gw[2] rekeyed between" in charon.log_text()
    assert_clean(qi)


@pytest.mark.parametrize("creator", SIDES, ids=lambda v: f"created-by-{v}")
def test_second_child_sa_with_pfs_then_rekeyed_by_the_other_side(
    interop: Interop, creator: str
) -> None:
    """CREATE_CHILD_SA for a new CHILD (not a rekey) with its own key exchange (PFS, ecp256),
    then the other side rekeys it, again with a fresh KE."""
    pair = interop.pair
    host_a, host_b = f"{pair.gw_a_lan}/32", f"{pair.gw_b_lan}/32"
    esp = "aes128gcm16-ecp256"
    charon = interop.start_charon(Side(children={"host": {
        "local_ts": host_b, "remote_ts": host_a, "esp_proposals": esp}}))  # fmt: skip
    qi = interop.start_quickike(Side(child={"start_action": "start"}, children={"host": {
        "local_ts": host_a, "remote_ts": host_b, "esp_proposals": esp}}))  # fmt: skip
    assert_tunnel(qi, charon, PROPOSAL, "aes128gcm16")
    if creator == "quickike":
        log = qi.initiate(child="host", ike="gw")
        assert any("host" in line for line in log), log
    else:
        charon.initiate("host", ike="gw")
    up = qi.wait_event("child-up", name="host")
    assert up["suite"].startswith(esp) and up["local_ts"] == [host_a]
    sa = _wait_charon(charon, "CHILD host", lambda s: bool(installed(s, "host")))
    (host,) = installed(sa, "host")
    assert host["dh-group"] == "ECP_256"  # the CHILD's own key exchange
    assert (host["spi-in"], host["spi-out"]) == (up["spi_out"], up["spi_in"])
    request = payloads_of(qi, sent=creator == "quickike", exchange="CREATE_CHILD_SA",
                          response=False)[-1]  # fmt: skip
    assert "KE" in request and "N(REKEY_SA)" not in request
    other = "charon" if creator == "quickike" else "quickike"
    mark = qi.mark()
    _rekey(other, qi, charon, child="host")
    new = qi.wait_event("child-up", name="host", rekeyed_from=up["child_uid"], after=mark)
    qi.wait_event("child-down", child_uid=up["child_uid"], after=mark)
    sa = _wait_charon(charon, "CHILD host rekeyed",
                      lambda s: [c["spi-in"] for c in installed(s, "host")] == [new["spi_out"]])  # fmt: skip
    assert installed(sa, "host")[0]["dh-group"] == "ECP_256"
    assert len(installed(sa, "net")) == 1  # the first CHILD is untouched
    assert_clean(qi)


def test_charon_restarted_replaces_the_stale_sa_by_initial_contact(interop: Interop) -> None:
    """charon crashes and comes back; its new IKE_AUTH carries INITIAL_CONTACT, so quickike
    drops the SA it still held for the same identities at once (RFC 7296 §2.4)."""
    qi, charon, sa = _up(interop, "quickike")
    stale = assert_same_ike_sa(qi, sa)
    charon.restart(crash=True)
    charon.initiate("net", ike="gw")
    down = qi.wait_event("ike-down", ike_uid=stale["ike_uid"])
    assert down["reason"] == "initial-contact"
    request = payloads_of(qi, sent=False, exchange="IKE_AUTH", response=False)[-1]
    assert "N(INITIAL_CONTACT)" in request
    fresh = charon.wait_established("gw", "net")
    assert (fresh.spi_i, fresh.spi_r) != (sa.spi_i, sa.spi_r)
    assert_same_ike_sa(qi, fresh)
    assert_same_child_sa(qi, fresh)
    assert_clean(qi)


@pytest.mark.parametrize("who", SIDES, ids=lambda v: f"by-{v}")
def test_reauthentication(interop: Interop, who: str) -> None:
    """A new IKE_SA_INIT/IKE_AUTH replaces the SA. quickike makes the new SA before it
    deletes the old one (RFC 7296 §2.8.3); charon 5.9.8 deletes first, then re-creates."""
    qi, charon, sa = _up(interop, "charon" if who == "quickike" else "quickike")
    old = assert_same_ike_sa(qi, sa)
    mark = qi.mark()
    if who == "quickike":
        answer = dict(qi.session().rekey({"ike": "gw", "reauth": "yes"}))
    else:
        answer = dict(charon.session().rekey({"ike": "gw", "reauth": "yes"}))
    assert answer.get("success") == b"yes", answer
    new = qi.wait_event("ike-up", after=mark)
    down = qi.wait_event("ike-down", ike_uid=old["ike_uid"])
    assert new["rekeyed_from"] is None  # a new SA from IKE_SA_INIT, not a rekey
    if who == "quickike":
        assert new["initiator"] and down["reason"] == "deleted"
        assert new["time"] <= down["time"]  # make before break
    else:
        assert not new["initiator"] and down["reason"] == "peer-deleted"
        assert down["time"] <= new["time"]  # charon.make_before_break = no (5.9.8's default)
    after = charon.wait_for(lambda sas: len(sas) == 1 and sas[0].spi_i == new["spi_i"]
                            and len(installed(sas[0])) == 1, what="the new SA only")[0]  # fmt: skip
    assert_same_ike_sa(qi, after)
    assert_same_child_sa(qi, after)
    assert_clean(qi)


def test_charon_narrows_the_traffic_selectors(interop: Interop) -> None:
    """charon allows only half of quickike's LAN: quickike installs the narrowed selectors
    (RFC 7296 §2.9) and proposes them again when it rekeys."""
    charon = interop.start_charon(Side(child={"remote_ts": "10.200.1.0/25"}))
    qi = interop.start_quickike(Side(child={"start_action": "start"}))
    sa = charon.wait_established("gw", "net")
    up = assert_same_child_sa(qi, sa)
    assert up["local_ts"] == ["10.200.1.0/25"] and up["remote_ts"] == ["10.200.2.0/24"]
    _rekey_child_and_check("quickike", qi, charon)
    assert qi.events("child-up")[-1]["local_ts"] == ["10.200.1.0/25"]
    assert_clean(qi)
