"""quickike's key derivation against keys strongSwan's charon logged for real exchanges.

The captures and keys in tests/data/charon/ were made by scripts/capture-charon (two charons
in namespaces, `ike = 4` and `chd = 4` logging). From the public values in the pcap and the
DH secret charon logged, quickike must compute the same SKEYSEED, SK_*, PSK AUTH and CHILD
keys, and decrypt charon's IKE_AUTH messages.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quickike.crypto.auth import psk_auth, signed_octets
from quickike.crypto.keys import derive_child_keys, derive_ike_keys
from quickike.crypto.proposals import accept_selected, parse_proposals, select_proposal
from quickike.crypto.rng import SeededRandomSource
from quickike.crypto.sk import SkProtector
from quickike.wire import SA, ProtocolId, decode_message, decode_payloads
from quickike.wire.payloads import AUTH, IDi, IDr, Nonce

DATA = Path(__file__).resolve().parents[1] / "data" / "charon"
CASES = sorted(DATA.glob("*.json"))


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_keys_match_charon(path: Path) -> None:
    d = json.loads(path.read_text())
    msgs = [m for m in d["messages"] if m["kind"] == "IKE"]
    init_i = _h(msgs[0]["hex"])
    init_r = _h(msgs[1]["hex"])
    req, resp = decode_message(init_i), decode_message(init_r)
    assert req.encode() == init_i and resp.encode() == init_r
    ni, nr = req.get(Nonce), resp.get(Nonce)
    assert ni is not None and nr is not None
    assert ni.data == _h(d["nonce_i"]) and nr.data == _h(d["nonce_r"])
    # quickike, configured like charon, selects the proposal charon's responder chose
    specs = parse_proposals(d["ike_proposal_configured"], ProtocolId.IKE)
    offered = req.get(SA)
    answer = resp.get(SA)
    assert offered is not None and answer is not None
    suite = accept_selected(answer, specs)
    assert select_proposal(offered, specs) == suite
    skeyseed, keys = derive_ike_keys(suite, _h(d["dh_shared_secret"]), ni.data, nr.data,
                                     _h(d["spi_i"]), _h(d["spi_r"]))
    assert skeyseed == _h(d["skeyseed"])
    for name in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
        assert getattr(keys, name) == _h(d[name]), name
    # decrypt charon's IKE_AUTH request and response and recompute both AUTH payloads
    assert suite.prf is not None
    auth_msgs = [m for m in msgs if m["exchange"] == "IKE_AUTH"]
    for m, original_initiator in ((auth_msgs[0], False), (auth_msgs[1], True)):
        data = _h(m["hex"])
        msg = decode_message(data)
        prot = SkProtector(suite, keys, original_initiator, SeededRandomSource(1))
        first, plain = prot.unprotect(data, msg.sk_offset)
        inner, _ = decode_payloads(first, plain)
        ident = next(p for p in inner if isinstance(p, IDi | IDr))
        auth = next(p for p in inner if isinstance(p, AUTH))
        if isinstance(ident, IDi):
            octets = signed_octets(init_i, nr.data, suite.prf, keys.sk_pi, ident.body())
        else:
            octets = signed_octets(init_r, ni.data, suite.prf, keys.sk_pr, ident.body())
        assert auth.data == psk_auth(suite.prf, d["psk"].encode(), octets)
    # CHILD SA keys (KEYMAT from SK_d and the IKE_SA_INIT nonces, RFC 7296 §2.17)
    esp = parse_proposals(d["esp_proposal_configured"], ProtocolId.ESP)
    child_suite = esp_suite(auth_msgs, suite, keys, esp)
    ck = derive_child_keys(suite.prf, keys.sk_d, child_suite, ni.data, nr.data)
    assert ck.encr_i == _h(d["child"]["encr_i"]) and ck.encr_r == _h(d["child"]["encr_r"])


def esp_suite(auth_msgs, suite, keys, esp):  # type: ignore[no-untyped-def]
    data = _h(auth_msgs[1]["hex"])
    msg = decode_message(data)
    first, plain = SkProtector(suite, keys, True, SeededRandomSource(1)).unprotect(data, msg.sk_offset)
    inner, _ = decode_payloads(first, plain)
    sa = next(p for p in inner if isinstance(p, SA))
    return accept_selected(sa, esp, skip_dh=True)
