"""IKE_SA_INIT + IKE_AUTH with a CHILD SA against charon 5.9.8, in both roles.

quickike initiates with ``start_action = start`` (the configuration path an operator uses);
charon initiates through its VICI ``initiate``. Each test checks what charon negotiated (its
list-sas) against what quickike logged (suite, SPIs, selectors).
"""

from __future__ import annotations

import pytest

from .checks import assert_clean, assert_tunnel, payloads_of
from .pki import Pki
from .topology import SUITES, Side
from .world import Interop, pki_for

pytestmark = [pytest.mark.root, pytest.mark.strongswan]

ROLES = ["quickike-initiates", "charon-initiates"]


def _bring_up(interop: Interop, side: Side, role: str, pki: Pki | None = None) -> None:
    """Start charon, then quickike; whoever initiates in ``role`` does so."""
    interop.start_charon(side, pki=pki)
    qi_side = Side(side.proposals, side.esp_proposals, side.auth, conn=dict(side.conn),
                   child=dict(side.child))  # fmt: skip
    if role == "quickike-initiates":
        qi_side.child["start_action"] = "start"
    interop.start_quickike(qi_side, pki=pki)
    if role == "charon-initiates":
        assert interop.charon is not None
        interop.charon.initiate("net", ike="gw")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("proposal", list(SUITES))
def test_psk_tunnel_with_each_suite(interop: Interop, proposal: str, role: str) -> None:
    esp = SUITES[proposal]
    _bring_up(interop, Side(proposals=proposal, esp_proposals=esp), role)
    assert interop.charon is not None and interop.quickike is not None
    sa = assert_tunnel(interop.quickike, interop.charon, proposal, esp)
    initiator = role == "quickike-initiates"
    assert interop.quickike.events("ike-up")[-1]["initiator"] is initiator
    assert (sa.data.get("initiator") == "yes") is not initiator
    log = interop.charon.log_text()
    assert "authentication of 'qi.lab.test' with pre-shared key successful" in log


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("kind", ["ecdsa", "rsa2048"])
def test_certificate_tunnel(interop: Interop, kind: str, role: str) -> None:
    """Each side proves itself with its certificate, checked against the shared root."""
    pki = pki_for(kind)
    proposal = "aes128gcm16-prfsha256-x25519"
    _bring_up(interop, Side(auth="pubkey"), role, pki=pki)
    assert interop.charon is not None and interop.quickike is not None
    qi, charon = interop.quickike, interop.charon
    assert_tunnel(qi, charon, proposal, "aes128gcm16")
    log = charon.log_text()
    assert 'received end entity cert "C=CH, O=quickike interop lab, CN=qi.lab.test"' in log
    assert "reached self-signed root ca" in log
    method = "ECDSA" if kind == "ecdsa" else "RSA_EMSA_PKCS1"
    assert any(f"authentication of 'qi.lab.test' with {method}" in line and "successful" in line
               for line in charon.log_lines()), "charon did not verify quickike's signature"  # fmt: skip
    # quickike asked for charon's certificate (CERTREQ) and got it in a CERT payload
    if role == "quickike-initiates":
        (request,) = payloads_of(qi, sent=True, exchange="IKE_AUTH", response=False)
        assert "CERTREQ" in request and "CERT" in request
        (answer,) = payloads_of(qi, sent=False, exchange="IKE_AUTH", response=True)
    else:
        (init_answer,) = payloads_of(qi, sent=True, exchange="IKE_SA_INIT", response=True)
        assert "CERTREQ" in init_answer  # charon sends its certificate only when asked
        (answer,) = payloads_of(qi, sent=False, exchange="IKE_AUTH", response=False)
        (mine,) = payloads_of(qi, sent=True, exchange="IKE_AUTH", response=True)
        assert mine[:3] == ["IDr", "CERT", "AUTH"]  # RFC 7296 §1.2 order
        assert "parsed IKE_AUTH response 1 [ IDr CERT AUTH" in charon.log_text()
    assert "CERT" in answer and "AUTH" in answer


@pytest.mark.parametrize("role", ROLES)
def test_charon_accepts_the_qcd_notify_in_ike_auth(interop: Interop, role: str) -> None:
    """RFC 6290 §4: QUICK_CRASH_DETECTION rides in IKE_AUTH; charon must ignore it.

    When quickike runs with its QCD plug-in (the daemon's default since the plug-in was wired
    in) the notify must be in quickike's IKE_AUTH message and the tunnel must still come up;
    without the plug-in only the tunnel is checked, and the test says so in its report.
    """
    _bring_up(interop, Side(), role)
    assert interop.charon is not None and interop.quickike is not None
    qi, charon = interop.quickike, interop.charon
    assert_tunnel(qi, charon, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
    qcd_loaded = "qcd" in qi.stats().get("plugins", [])
    (auth,) = payloads_of(qi, sent=True, exchange="IKE_AUTH",
                          response=role == "charon-initiates")  # fmt: skip
    sent = "N(QUICK_CRASH_DETECTION)" in auth
    print(f"quickike QCD plug-in loaded: {qcd_loaded}; N(QUICK_CRASH_DETECTION) sent: {sent}")
    if qcd_loaded:
        assert sent, f"QCD is loaded but quickike's IKE_AUTH carried {auth}"
        assert "N(CRASH_DET)" in charon.log_text()  # charon parsed it ... and went on
    assert_clean(qi)
