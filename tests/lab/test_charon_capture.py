"""The committed strongSwan captures (tests/data/charon) are complete and parse as IKEv2.

Whether the keys derive correctly is the crypto layer's test; this only guards the data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from scapy.contrib.ikev2 import IKEv2, IKEv2_KE, IKEv2_Nonce
from scapy.layers.inet import UDP
from scapy.utils import rdpcap

DATA = Path(__file__).resolve().parents[1] / "data" / "charon"
EXPECTED = ("psk-aes128gcm16-prfsha256-x25519", "psk-aes256-sha256-modp2048")
# Octet lengths implied by each selected suite: PRF output, SK_a, SK_e (+ salt), DH secret, group.
SUITES = {
    "AES_GCM_16_128/PRF_HMAC_SHA2_256/CURVE_25519": (32, 0, 20, 32, 31),
    "AES_CBC_256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048": (32, 32, 32, 256, 14),
}
IKE_SA_INIT, IKE_AUTH = 34, 35


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return data


def hexlen(value: str) -> int:
    return len(bytes.fromhex(value))


def test_every_expected_capture_is_committed() -> None:
    for name in EXPECTED:
        assert (DATA / f"{name}.json").is_file()
        assert (DATA / f"{name}.pcap").is_file()
    assert (DATA / "README.md").is_file()


@pytest.mark.parametrize("name", EXPECTED)
def test_json_holds_every_value_with_the_suite_s_lengths(name: str) -> None:
    d = load(name)
    prf_len, integ_len, encr_len, dh_len, group = SUITES[d["ike_proposal_selected"]]
    assert d["strongswan"]["version"] == "5.9.8"
    assert d["psk"] and bytes.fromhex(d["psk_hex"]) == d["psk"].encode()
    assert d["initiator"]["id"] and d["responder"]["id"] and d["initiator"]["id_type"] == 3
    assert hexlen(d["spi_i"]) == hexlen(d["spi_r"]) == 8
    assert 16 <= hexlen(d["nonce_i"]) <= 256 and 16 <= hexlen(d["nonce_r"]) <= 256
    assert d["ke_group"] == group
    assert hexlen(d["ke_i"]) == hexlen(d["ke_r"]) == dh_len
    assert hexlen(d["dh_shared_secret"]) == dh_len
    assert hexlen(d["skeyseed"]) == hexlen(d["sk_d"]) == prf_len
    assert hexlen(d["sk_pi"]) == hexlen(d["sk_pr"]) == prf_len
    assert hexlen(d["sk_ai"]) == hexlen(d["sk_ar"]) == integ_len
    assert hexlen(d["sk_ei"]) == hexlen(d["sk_er"]) == encr_len
    assert len({d["sk_d"], d["sk_ei"], d["sk_er"], d["sk_pi"], d["sk_pr"]}) == 5
    assert [a["signer"] for a in d["psk_auth"]] == ["initiator", "responder"]
    for entry in d["psk_auth"]:
        assert hexlen(entry["auth"]) == prf_len and hexlen(entry["octets"]) > 0
    assert d["psk_auth"][0]["sk_p"] == d["sk_pi"] and d["psk_auth"][1]["sk_p"] == d["sk_pr"]
    child = d["child"]
    assert child["seed"] == d["nonce_i"] + d["nonce_r"]
    assert hexlen(child["spi_i"]) == hexlen(child["spi_r"]) == 4
    assert hexlen(child["encr_i"]) == hexlen(child["encr_r"]) == encr_len
    if integ_len:
        assert hexlen(child["integ_i"]) == hexlen(child["integ_r"]) == integ_len


@pytest.mark.parametrize("name", EXPECTED)
def test_pcap_parses_as_ike_sa_init_request_and_response_then_ike_auth(name: str) -> None:
    d = load(name)
    packets = [p for p in rdpcap(str(DATA / d["pcap"])) if UDP in p]
    assert len(packets) == 6
    request, response = (IKEv2(bytes(p[UDP].payload)) for p in packets[:2])
    assert all(p[UDP].dport == 500 and p[UDP].sport == 500 for p in packets[:2])
    for msg, is_response in ((request, False), (response, True)):
        assert msg.exch_type == IKE_SA_INIT and msg.id == 0
        assert bool(int(msg.flags) & 0x20) is is_response
        assert bool(int(msg.flags) & 0x08) is not is_response
    assert bytes(request.init_SPI).hex() == d["spi_i"] and bytes(request.resp_SPI) == bytes(8)
    assert bytes(response.init_SPI).hex() == d["spi_i"]
    assert bytes(response.resp_SPI).hex() == d["spi_r"]
    assert bytes(request[IKEv2_Nonce].nonce).hex() == d["nonce_i"]
    assert bytes(response[IKEv2_Nonce].nonce).hex() == d["nonce_r"]
    assert request[IKEv2_KE].group == response[IKEv2_KE].group == d["ke_group"]
    assert bytes(request[IKEv2_KE].ke).hex() == d["ke_i"]
    # RealMessage1 begins the initiator's AUTH octets.
    assert d["psk_auth"][0]["octets"].startswith(bytes(packets[0][UDP].payload).hex())

    for packet in packets[2:4]:
        payload = bytes(packet[UDP].payload)
        assert packet[UDP].dport == 4500 and payload[:4] == bytes(4)  # non-ESP marker
        auth = IKEv2(payload[4:])
        assert auth.exch_type == IKE_AUTH and auth.id == 1
        assert bytes(auth.init_SPI).hex() == d["spi_i"]
    esp_out, esp_back = (bytes(p[UDP].payload) for p in packets[4:])
    assert esp_out[:4].hex() == d["child"]["spi_r"]
    assert esp_back[:4].hex() == d["child"]["spi_i"]
