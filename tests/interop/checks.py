"""What "the tunnel is up and both sides agree" means, checked from both daemons' own reports.

charon's view comes from its VICI ``list-sas`` (what it negotiated and installed), quickike's
from the engine events in its JSON log. A test passes only if the two describe the same SAs:
the same IKE SPIs, and each side's inbound CHILD SPI being the other's outbound one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quickike.lab.charon import Charon, IkeSaView

from .daemon import QuickikeDaemon, Record
from .topology import CHARON_ESP_NAMES, CHARON_NAMES, QUICKIKE_KEYWORDS


def installed(sa: IkeSaView, child: str = "net") -> list[Mapping[str, Any]]:
    """CHILD SAs charon has INSTALLED (rekeyed ones linger a few seconds as DELETED)."""
    return [c for c in sa.children if c.get("name") == child and c.get("state") == "INSTALLED"]


def only_sa(charon: Charon, name: str = "gw") -> IkeSaView:
    sas = [sa for sa in charon.list_sas() if sa.name == name]
    assert len(sas) == 1, f"charon has {len(sas)} IKE SAs {name}: {sas}"
    return sas[0]


def assert_algorithms(sa: IkeSaView, proposal: str, esp: str | None = None) -> None:
    """charon negotiated exactly the suite the keywords name (IKE and, if given, ESP)."""
    for key, value in CHARON_NAMES[proposal].items():
        assert sa.data.get(key) == value, f"charon's IKE SA has {key}={sa.data.get(key)!r}"
    if "integ-alg" not in CHARON_NAMES[proposal]:
        assert "integ-alg" not in sa.data, "an AEAD suite must not add an integrity algorithm"
    if esp is not None:
        (child,) = installed(sa)
        for key, value in CHARON_ESP_NAMES[esp].items():
            assert child.get(key) == value, f"charon's CHILD SA has {key}={child.get(key)!r}"
        assert child.get("encap") == "yes"  # kernel-libipsec: ESP in UDP


def latest(qi: QuickikeDaemon, event: str, **match: Any) -> Record:
    found = qi.events(event, **match)
    assert found, f"quickike logged no {event} {match}"
    return found[-1]


def assert_same_ike_sa(qi: QuickikeDaemon, sa: IkeSaView) -> Record:
    """quickike's newest IKE SA is charon's ``sa`` (same SPIs, same peer identities).

    Waits for quickike to log that SA first: when quickike answered the exchange that made it,
    charon can list the SA before quickike's log has it (quickike sends, then logs).
    """
    qi.wait_event("ike-up", spi_i=sa.spi_i, spi_r=sa.spi_r)
    up = latest(qi, "ike-up")
    assert (up["spi_i"], up["spi_r"]) == (sa.spi_i, sa.spi_r), (up, sa.data)
    assert up["local_id"] == sa.data["remote-id"] and up["remote_id"] == sa.data["local-id"]
    downs = {(d["spi_i"], d["spi_r"]) for d in qi.events("ike-down")}
    assert (sa.spi_i, sa.spi_r) not in downs, "quickike already took this IKE SA down"
    return up


def assert_same_child_sa(qi: QuickikeDaemon, sa: IkeSaView) -> Record:
    """quickike's newest CHILD SA is the one charon has installed, SPIs crosswise (waiting,
    as above, for quickike to log it)."""
    (child,) = installed(sa)
    qi.wait_event("child-up", spi_out=child["spi-in"])
    up = latest(qi, "child-up")
    assert up["spi_in"] == child["spi-out"] and up["spi_out"] == child["spi-in"], (up, child)
    assert up["local_ts"] == child["remote-ts"] and up["remote_ts"] == child["local-ts"]
    gone = {d["spi_in"] for d in qi.events("child-down")}
    assert up["spi_in"] not in gone, "quickike already removed this CHILD SA"
    return up


def assert_tunnel(qi: QuickikeDaemon, charon: Charon, proposal: str, esp: str) -> IkeSaView:
    """The full check after a setup: charon's algorithms, quickike's suite, same SAs."""
    sa = charon.wait_established("gw", "net")
    assert_algorithms(sa, proposal, esp)
    up = qi.wait_event("child-up", spi_out=installed(sa)[0]["spi-in"])
    assert up["suite"].startswith(esp), up["suite"]
    ike = assert_same_ike_sa(qi, sa)
    assert ike["suite"] == QUICKIKE_KEYWORDS[proposal]
    if not ike["initiator"]:  # quickike logs the IKE_AUTH response it sent after child-up
        qi.wait_event("message", ike_uid=ike["ike_uid"], sent=True, exchange="IKE_AUTH",
                      response=True)  # fmt: skip
    assert_same_child_sa(qi, sa)
    assert_clean(qi)
    return sa


def assert_clean(qi: QuickikeDaemon) -> None:
    """No internal error, traceback or undecodable line in quickike's log."""
    assert not qi.problems(), qi.problems()


def payloads_of(qi: QuickikeDaemon, *, sent: bool, exchange: str,
                response: bool) -> list[list[str]]:  # fmt: skip
    return [list(m["payloads"]) for m in qi.messages(sent=sent, exchange=exchange,
                                                     response=response)]  # fmt: skip
