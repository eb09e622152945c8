"""The IKE_SA_INIT retries and IKE_AUTH fragmentation, against charon.

COOKIE (RFC 7296 §2.6): charon demands cookies once it holds ``cookie_threshold`` half-open
IKE SAs; the test leaves one half-open SA at charon first (an IKE_SA_INIT that never gets its
IKE_AUTH) so that quickike's own IKE_SA_INIT is answered with N(COOKIE).
INVALID_KE_PAYLOAD (§1.2): each side in turn guesses a group the other does not want first.
Fragmentation (RFC 7383): RSA 4096 chains with three intermediates make IKE_AUTH about 6.5 kB.
"""

from __future__ import annotations

import re
import sys

import pytest

from quickike.lab.charon import CharonSettings

from .checks import assert_clean, assert_tunnel, installed, payloads_of
from .topology import Side
from .world import Interop, pki_for

pytestmark = [pytest.mark.root, pytest.mark.strongswan]

# Run inside gateway A: one IKE_SA_INIT request built by quickike's engine from quickike's own
# configuration, sent from another port, its answer awaited and then abandoned (half-open).
_HALF_OPEN = """
import socket, sys
from quickike.control.config import load_config
from quickike.engine import Engine
config, _ = load_config(sys.argv[1])
engine = Engine(config)
engine.initiate("gw", None, 0.0)
request = engine.datagrams_to_send()[0]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((request.local[0], 5500))
sock.settimeout(5)
sock.sendto(request.data, request.remote)
answer = sock.recv(65535)
print(answer[16], answer[18], answer[19], len(answer))
"""


def test_cookie_from_charon(interop: Interop) -> None:
    settings = CharonSettings(cookie_threshold=1, extra={"block_threshold": 10})
    charon = interop.start_charon(Side(), settings=settings)
    qi = interop.make_quickike(Side(child={"start_action": "start"}))
    qi.write_config()
    out = interop.pair.gw_a.run(sys.executable, "-c", _HALF_OPEN, str(qi.conf_path)).stdout
    first_payload, exchange, flags, _ = (int(x) for x in out.split())
    assert (first_payload, exchange, flags & 0x20) == (33, 34, 0x20)  # SA: a real answer
    qi.start()
    assert_tunnel(qi, charon, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
    requests = payloads_of(qi, sent=True, exchange="IKE_SA_INIT", response=False)
    answers = payloads_of(qi, sent=False, exchange="IKE_SA_INIT", response=True)
    assert answers[0] == ["N(COOKIE)"]
    assert len(requests) == 2 and requests[1][0] == "N(COOKIE)"  # COOKIE first (§2.6)
    assert requests[1][1:] == requests[0]
    log = charon.log_text()
    assert "generating IKE_SA_INIT response 0 [ N(COOKIE) ]" in log
    assert "parsed IKE_SA_INIT request 0 [ N(COOKIE) SA KE No" in log
    assert_clean(qi)


def test_invalid_ke_quickike_guesses_a_group_charon_refuses(interop: Interop) -> None:
    charon = interop.start_charon(Side(proposals="aes128gcm16-prfsha256-ecp256"))
    qi = interop.start_quickike(Side(proposals="aes128gcm16-prfsha256-x25519-ecp256",
                                     child={"start_action": "start"}))  # fmt: skip
    assert_tunnel(qi, charon, "aes128gcm16-prfsha256-ecp256", "aes128gcm16")
    answers = payloads_of(qi, sent=False, exchange="IKE_SA_INIT", response=True)
    assert answers[0] == ["N(INVALID_KE_PAYLOAD)"]
    assert len(payloads_of(qi, sent=True, exchange="IKE_SA_INIT", response=False)) == 2
    assert "DH group CURVE_25519 unacceptable, requesting ECP_256" in charon.log_text()
    assert_clean(qi)


def test_invalid_ke_charon_guesses_a_group_quickike_refuses(interop: Interop) -> None:
    charon = interop.start_charon(Side(proposals="aes128gcm16-prfsha256-ecp256-x25519"))
    qi = interop.start_quickike(Side(proposals="aes128gcm16-prfsha256-x25519"))
    charon.initiate("net", ike="gw")
    assert_tunnel(qi, charon, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
    answers = payloads_of(qi, sent=True, exchange="IKE_SA_INIT", response=True)
    assert answers[0] == ["N(INVALID_KE_PAYLOAD)"] and answers[1][0] == "SA"
    assert "peer didn't accept DH group ECP_256, it requested CURVE_25519" in charon.log_text()
    assert_clean(qi)


@pytest.mark.parametrize("role", ["quickike-initiates", "charon-initiates"])
def test_fragmented_ike_auth_with_a_large_certificate_chain(interop: Interop, role: str) -> None:
    """Both IKE_AUTH messages exceed fragment_size (1280): each side splits its own and
    reassembles the other's."""
    pki = pki_for("rsa4096", intermediates=3)
    side = Side(auth="pubkey", conn={"fragmentation": "yes"})
    charon = interop.start_charon(side, pki=pki)
    child = {"start_action": "start"} if role == "quickike-initiates" else {}
    qi = interop.start_quickike(Side(auth="pubkey", conn={"fragmentation": "yes"}, child=child),
                                pki=pki)  # fmt: skip
    if role == "charon-initiates":
        charon.initiate("net", ike="gw")
    assert_tunnel(qi, charon, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
    log = charon.log_text()
    # quickike's message, reassembled by charon
    got = re.findall(r"received fragment #(\d+) of (\d+), reassembled fragmented IKE message "
                     r"\((\d+) bytes\)", log)  # fmt: skip
    assert len(got) == 1 and int(got[0][1]) >= 5 and int(got[0][2]) > 6000, got
    sizes = [int(n) for n in re.findall(r"received packet: from 10\.200\.0\.1\[4500\] to "
                                        r"10\.200\.0\.2\[4500\] \((\d+) bytes\)", log)]  # fmt: skip
    assert sizes and max(sizes) <= 1280 - 28, sizes  # every datagram fits fragment_size
    # charon's message, reassembled by quickike (which then saw its four certificates)
    assert re.search(r"splitting IKE message \(\d+ bytes\) into \d+ fragments", log)
    received = payloads_of(qi, sent=False, exchange="IKE_AUTH",
                           response=role == "quickike-initiates")  # fmt: skip
    assert len(received) == 1 and received[0].count("CERT") == 4
    assert "reached self-signed root ca with a path length of 3" in log
    assert_clean(qi)


def test_ipv6_with_a_fragmented_ike_auth_and_rekeys(interop6: Interop) -> None:
    """IKE between IPv6 addresses: NAT-D hashes over v6, fragments sized for a 40-byte IP
    header, then an IKE rekey by charon and a CHILD rekey by quickike over the new SA."""
    pki = pki_for("rsa4096", intermediates=3)
    charon = interop6.start_charon(Side(auth="pubkey"), pki=pki)
    qi = interop6.start_quickike(Side(auth="pubkey", child={"start_action": "start"}), pki=pki)
    sa = assert_tunnel(qi, charon, "aes128gcm16-prfsha256-x25519", "aes128gcm16")
    assert sa.data["local-host"] == interop6.pair.wire6_b
    assert qi.events("ike-up")[-1]["local"] == f"{interop6.pair.wire6_a}[4500]"
    log = charon.log_text()
    assert "reassembled fragmented IKE message" in log
    sizes = [int(n) for n in re.findall(r"received packet: from fd00:200::1\[4500\] to "
                                        r"fd00:200::2\[4500\] \((\d+) bytes\)", log)]  # fmt: skip
    assert sizes and max(sizes) <= 1280 - 48, sizes  # IPv6 + UDP headers within fragment_size
    mark = qi.mark()
    assert dict(charon.session().rekey({"ike": "gw"})).get("success") == b"yes"
    new = qi.wait_event("ike-up", after=mark)
    assert new["rekeyed_from"] is not None
    assert qi.rekey(child="net") == 1
    qi.wait_event("child-up", after=mark, rekeyed_from=1)
    after = charon.wait_for(lambda sas: len(sas) == 1 and sas[0].spi_i == new["spi_i"]
                            and len(installed(sas[0])) == 1
                            and installed(sas[0])[0]["spi-out"] == qi.events("child-up")[-1]["spi_in"],
                            what="IKE and CHILD rekeyed over IPv6")[0]  # fmt: skip
    assert after.state == "ESTABLISHED"
    assert_clean(qi)
