"""Real captures from other implementations decode to what scapy and tshark see in them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from quickike.wire import (
    SA,
    CodecError,
    EncrId,
    Encrypted,
    ExchangeType,
    Kind,
    Notify,
    NotifyType,
    ProtocolId,
    TransformType,
    classify_marked,
    decode_message,
)

from .scapy_view import ik, quickike_header, quickike_payloads, scapy_header, scapy_payloads

scapy_all = pytest.importorskip("scapy.all")


def _reference() -> Path:
    """shared/reference beside the work tree (as on developer machines and in CI)."""
    if "QUICKIKE_REFERENCE" in os.environ:
        return Path(os.environ["QUICKIKE_REFERENCE"])
    beside = Path(__file__).resolve().parents[3] / "shared" / "reference"
    return beside if beside.is_dir() else Path("/work/shared/reference")


CAPTURES = _reference() / "captures"
NAT_T = CAPTURES / "ikev2_nat_t.pcapng"
REDIRECT = CAPTURES / "ikev2_notify_redirect.pcap"

pytestmark = pytest.mark.skipif(
    not NAT_T.exists() and os.environ.get("CI") != "true",
    reason=f"reference captures not found in {CAPTURES}",
)


def ike_frames(path: Path) -> list[tuple[int, bytes | None, Kind]]:
    """(frame number, IKE octets without marker or None, kind) for every UDP frame."""
    out = []
    for number, pkt in enumerate(scapy_all.rdpcap(str(path)), 1):
        udp = pkt[scapy_all.UDP]
        data = bytes(udp.payload)
        if 4500 in (udp.sport, udp.dport):
            kind, view = classify_marked(data)
            out.append((number, bytes(view) if kind is Kind.IKE else None, kind))
        else:
            out.append((number, data, Kind.IKE))
    return out


@pytest.mark.parametrize("path", [NAT_T, REDIRECT], ids=lambda p: p.name)
def test_every_message_matches_scapy_and_round_trips(path: Path) -> None:
    decoded = 0
    for number, data, kind in ike_frames(path):
        if data is None:
            assert kind is Kind.ESP, number
            continue
        m = decode_message(data)
        assert m.encode() == data, f"frame {number} does not re-encode identically"
        theirs = ik.IKEv2(data)
        assert quickike_header(m, len(data)) == scapy_header(theirs), number
        assert quickike_payloads(m) == scapy_payloads(theirs), number
        decoded += 1
    assert decoded == {NAT_T: 30, REDIRECT: 4}[path]


def test_nat_t_frame_kinds() -> None:
    kinds = [k for _, _, k in ike_frames(NAT_T)]
    assert kinds.count(Kind.ESP) == 24 and kinds.count(Kind.IKE) == 30


def test_nat_t_first_sa_init_fields_as_tshark_shows_them() -> None:
    """Values transcribed from `tshark -V` of frame 1 (independent of scapy)."""
    _, data, _ = ike_frames(NAT_T)[0]
    assert data is not None
    m = decode_message(data)
    assert m.spi_i.hex() == "89922c915f35570e" and m.spi_r == bytes(8)
    assert m.exchange == ExchangeType.IKE_SA_INIT and m.flags == 0x08 and m.message_id == 0
    assert len(data) == 300
    sa = m.payloads[0]
    assert isinstance(sa, SA) and len(sa.proposals) == 1
    prop = sa.proposals[0]
    assert prop.protocol == ProtocolId.IKE and prop.spi == b""
    assert [(t.type, t.id, t.key_length) for t in prop.transforms] == [
        (TransformType.ENCR, EncrId.AES_GCM_16, 256),
        (TransformType.PRF, 5, None),
        (TransformType.DH, 19, None),
    ]
    assert [p.type for p in m.notifies()] == [
        NotifyType.IKEV2_FRAGMENTATION_SUPPORTED,
        NotifyType.REDIRECT_SUPPORTED,
        NotifyType.SIGNATURE_HASH_ALGORITHMS,
    ]
    sig = m.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
    assert sig is not None and sig.data.hex() == "0001000200030004"


def test_nat_t_ike_auth_is_protected() -> None:
    _, data, _ = ike_frames(NAT_T)[2]
    assert data is not None
    m = decode_message(data)
    assert m.exchange == ExchangeType.IKE_AUTH and m.message_id == 1
    sk = m.encrypted
    assert isinstance(sk, Encrypted) and sk.next_inner == 35  # IDi first inside
    assert m.sk_offset == 28 and len(sk.data) == len(data) - 32


def test_redirect_notify_fields() -> None:
    frames = ike_frames(REDIRECT)
    _, data, _ = frames[1]
    assert data is not None
    m = decode_message(data)
    assert m.is_response and len(m.payloads) == 1
    n = m.payloads[0]
    assert isinstance(n, Notify) and n.type == NotifyType.REDIRECT
    assert n.protocol == ProtocolId.IKE
    gw_type, gw_len = n.data[0], n.data[1]
    assert gw_type == 3  # FQDN (RFC 5685 §9)
    assert n.data[2 : 2 + gw_len] == b"moneybin.duckburg.disney.com"
    assert len(n.data) == 2 + gw_len + 40  # the nonce of the request echoed
    _, last, _ = frames[3]
    assert last is not None
    assert [p.type for p in decode_message(last).notifies()] == [NotifyType.NO_PROPOSAL_CHOSEN]


def test_esp_frame_not_mistaken_for_ike() -> None:
    number, data, kind = ike_frames(NAT_T)[4]
    assert data is None and kind is Kind.ESP
    raw = bytes(scapy_all.rdpcap(str(NAT_T))[number - 1][scapy_all.UDP].payload)
    with pytest.raises(CodecError):
        decode_message(raw)  # an ESP packet is never a valid IKE message


TSHARK_FIELDS = [
    "frame.number",
    "isakmp.ispi",
    "isakmp.rspi",
    "isakmp.exchangetype",
    "isakmp.flags",
    "isakmp.messageid",
    "isakmp.length",
    "isakmp.notify.msgtype",
]


def _tshark(path: Path) -> list[dict[str, Any]]:
    cmd = ["tshark", "-r", str(path), "-Y", "isakmp", "-T", "fields", "-E", "separator=|"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60).stdout
    return [dict(zip(TSHARK_FIELDS, line.split("|"), strict=True)) for line in out.splitlines()]


@pytest.mark.usefixtures("need_tshark")
@pytest.mark.parametrize("path", [NAT_T, REDIRECT], ids=lambda p: p.name)
def test_header_and_notify_types_match_tshark(path: Path) -> None:
    frames = {n: d for n, d, _ in ike_frames(path) if d is not None}
    rows = _tshark(path)
    assert len(rows) == len(frames)
    for row in rows:
        m = decode_message(frames[int(row["frame.number"])])
        assert row["isakmp.ispi"] == m.spi_i.hex()
        assert row["isakmp.rspi"] == m.spi_r.hex()
        assert int(row["isakmp.exchangetype"]) == m.exchange
        assert int(row["isakmp.flags"], 16) == m.flags
        assert int(row["isakmp.messageid"], 16) == m.message_id
        assert int(row["isakmp.length"]) == len(frames[int(row["frame.number"])])
        types = [int(t) for t in row["isakmp.notify.msgtype"].split(",") if t]
        assert types == [int(n.type) for n in m.notifies()]
