"""``quickike decode`` run in-process through ``quickike.cli.main``."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from quickike.cli import main
from quickike.crypto.algorithms import encr_alg, integ_alg
from quickike.crypto.keys import IkeKeys, wireshark_line
from quickike.crypto.proposals import Suite
from quickike.crypto.rng import SeededRandomSource
from quickike.crypto.sk import SkProtector
from quickike.tools.decode import sample_path
from quickike.wire import (
    EncrId,
    ExchangeType,
    IDi,
    IdType,
    IntegId,
    Message,
    Notify,
    NotifyType,
    ProtocolId,
    encode_payloads,
)

from . import pcapgen as g

# RFC 7634 Appendix B (see tests/wire/test_wire_rfc7634.py)
RFC7634_MSG = bytes.fromhex(
    "c0c1c2c3c4c5c6c7d0d1d2d3d4d5d6d72e202500000000090000004529000029"
    "1011121314151617610394701f8d017f7c129248896b71bfe25236efd7cdc67066906315b2"
)
RFC7634_KEY = (bytes(range(0x80, 0xA0)) + bytes.fromhex("a0a1a2a3")).hex()
RFC7634_LINE = (
    f"c0c1c2c3c4c5c6c7,d0d1d2d3d4d5d6d7,{RFC7634_KEY},{RFC7634_KEY},"
    f'"ChaCha20-Poly1305 [RFC7634]",,,"NONE [RFC4306]"'
)
SPI_I, SPI_R = bytes.fromhex("1122334455667788"), bytes.fromhex("99aabbccddeeff00")
QCD = bytes(range(32))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["decode", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    for line in err.splitlines():
        assert line.startswith("quickike decode: "), line
    return rc, out, err


def informational(flags: int = 0x08, mid: int = 3) -> bytes:
    return Message(
        SPI_I,
        SPI_R,
        ExchangeType.INFORMATIONAL,
        flags,
        mid,
        [Notify(NotifyType.QUICK_CRASH_DETECTION, QCD, ProtocolId.IKE)],
    ).encode()


# ---------------------------------------------------------------- the shipped sample


def test_sample_is_shipped() -> None:
    assert sample_path().is_file()


def test_sample_text(capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped sample: two charons from quickike's lab, IKE_AUTH decrypted with its keys."""
    rc, out, err = run(capsys, "--sample")
    assert rc == 0 and err == ""
    assert "IKE_SA_INIT request 0 [ SA KE NONCE" in out
    assert "SPIi cda0a28804011905  SPIr 0000000000000000  IKE_SA_INIT  flags 0x08 (I)" in out
    assert "message id 0  length 232" in out
    assert "ENCR  AES_GCM_16 key length 128" in out
    assert "DH    CURVE25519" in out
    assert "10.200.0.1:4500 -> 10.200.0.2:4500  (non-ESP marker)" in out
    assert "SK next IDi (249 octets) decrypted with AES-GCM-128 with 16 octet ICV [RFC5282]" in out
    assert "IDi RFC822_ADDR gw-a@capture.quickike.test" in out
    esp = [ln for ln in out.splitlines() if ln.startswith("#") and "ESP SPI" in ln]
    assert len(esp) == 2 and "ESP SPI 0x85c7826f seq 1 (120 octets)" in esp[0]


def test_sample_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--sample", "--json")
    objs = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [o["kind"] for o in objs] == ["ike"] * 4 + ["esp"] * 2
    first = objs[0]
    assert first["header"] == {
        "spi_i": "cda0a28804011905",
        "spi_r": "0000000000000000",
        "next_payload": "SA",
        "version": "2.0",
        "exchange": "IKE_SA_INIT",
        "exchange_type": 34,
        "flags": 8,
        "flags_text": ["I"],
        "message_id": 0,
        "length": 232,
    }
    assert (first["dport"], objs[2]["dport"]) == (500, 4500)
    sa = first["payloads"][0]
    assert sa["proposals"][0]["transforms"][0] == {
        "type": "ENCR",
        "id": 20,
        "name": "AES_GCM_16",
        "key_length": 128,
        "attributes": [],
    }
    assert objs[2]["payloads"][0]["decrypted"]
    assert objs[4] == {
        "source": "ikev2_sa_init.pcap",
        "frame": 5,
        "time": objs[4]["time"],
        "src": "10.200.0.1",
        "sport": 4500,
        "dst": "10.200.0.2",
        "dport": 4500,
        "kind": "esp",
        "spi": "0x85c7826f",
        "seq": 1,
        "length": 120,
    }


# ---------------------------------------------------------------- link types and framing


def _frames_for(linktype: int, ip: bytes) -> bytes:
    wrap = {
        1: g.ethernet,
        113: g.sll,
        276: g.sll2,
        0: g.null,
        108: lambda i: g.null(i, ">"),
        101: lambda i: i,
        228: lambda i: i,
        229: lambda i: i,
    }[linktype]
    return wrap(ip)


@pytest.mark.parametrize("linktype", [1, 113, 276, 0, 108, 101])
@pytest.mark.parametrize("family", [4, 6])
def test_link_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], linktype: int, family: int
) -> None:
    seg = g.udp(500, 500, informational())
    ip = (
        g.ipv4("192.0.2.1", "192.0.2.2", seg)
        if family == 4
        else g.ipv6("2001:db8::1", "2001:db8::2", seg)
    )
    f = tmp_path / "c.pcap"
    f.write_bytes(g.pcap([_frames_for(linktype, ip)], linktype))
    rc, out, _ = run(capsys, str(f))
    assert rc == 0
    src = "192.0.2.1:500" if family == 4 else "[2001:db8::1]:500"
    assert src in out and "INFORMATIONAL request 3 [ N(QUICK_CRASH_DETECTION) ]" in out
    assert f"N(QUICK_CRASH_DETECTION) protocol IKE data {QCD.hex()}" in out


@pytest.mark.parametrize("linktype,family", [(228, 4), (229, 6)])
def test_ip_link_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], linktype: int, family: int
) -> None:
    seg = g.udp(500, 500, informational())
    ip = g.ipv4("192.0.2.1", "192.0.2.2", seg) if family == 4 else g.ipv6("::1", "::2", seg)
    f = tmp_path / "c.pcap"
    f.write_bytes(g.pcap([ip], linktype))
    rc, out, _ = run(capsys, str(f))
    assert rc == 0 and "N(QUICK_CRASH_DETECTION)" in out


def test_vlan_big_endian_nanosecond_pcap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.udp(500, 500, informational())), vlan=5)
    f = tmp_path / "c.pcap"
    f.write_bytes(g.pcap([frame], order=">", nano=True, start=1_700_000_000.123456789))
    rc, out, _ = run(capsys, "--json", str(f))
    obj = json.loads(out)
    assert rc == 0 and obj["time"] == "2023-11-14T22:13:20.123457Z"
    assert obj["header"]["spi_i"] == SPI_I.hex()


@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("tsresol,simple", [(None, False), (9, False), (None, True)])
def test_pcapng(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    order: str,
    tsresol: int | None,
    simple: bool,
) -> None:
    frames = [
        g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.udp(500, 500, informational(mid=m))))
        for m in (1, 2)
    ]
    f = tmp_path / "c.pcapng"
    f.write_bytes(g.pcapng(frames, order=order, tsresol=tsresol, simple=simple))
    rc, out, _ = run(capsys, "--json", str(f))
    objs = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and [o["header"]["message_id"] for o in objs] == [1, 2]
    if simple:
        assert objs[0]["time"] is None
    else:
        assert objs[1]["time"] == "2023-11-14T22:13:20.250000Z"


def test_nat_t_port_4500_esp_keepalive_and_ike(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def frame(payload: bytes) -> bytes:
        return g.ethernet(g.ipv4("198.51.100.1", "203.0.113.9", g.udp(4500, 4500, payload)))

    esp = bytes.fromhex("c1a9656b0000002a") + bytes(32)
    f = tmp_path / "c.pcap"
    f.write_bytes(
        g.pcap(
            [frame(b"\x00" * 4 + informational()), frame(esp), frame(b"\xff"), frame(b"\x01\x02")]
        )
    )
    rc, out, err = run(capsys, str(f))
    assert rc == 0
    assert "(non-ESP marker)" in out and "N(QUICK_CRASH_DETECTION)" in out
    assert "ESP SPI 0xc1a9656b seq 42 (40 octets)" in out
    assert "198.51.100.1:4500 -> 203.0.113.9:4500  NAT keepalive" in out
    assert "frame 4: 2-octet datagram is neither IKE, ESP nor a NAT keepalive" in err


def test_custom_marker_port_and_other_udp_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = [
        g.ethernet(
            g.ipv4("10.0.0.1", "10.0.0.2", g.udp(14500, 14501, b"\0" * 4 + informational()))
        ),
        g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.udp(53, 53, b"dns"))),
        g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", b"tcp" * 10, proto=6)),
    ]
    f = tmp_path / "c.pcap"
    f.write_bytes(g.pcap(frames))
    rc, _, err = run(capsys, str(f))
    assert rc == 1 and "no IKE messages found" in err
    rc, out, _ = run(capsys, "--port", "14501", str(f))
    assert rc == 0 and out.count("INFORMATIONAL request") == 1


def test_ipv4_and_ipv6_fragments_are_reassembled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = Message(
        SPI_I,
        SPI_R,
        ExchangeType.IKE_AUTH,
        0x08,
        1,
        [IDi(IdType.FQDN, b"a" * 1200), Notify(NotifyType.QUICK_CRASH_DETECTION, QCD)],
    )
    seg = g.udp(500, 500, big.encode())
    v4 = g.ipv4_fragments("192.0.2.1", "192.0.2.2", seg, 512)
    v6 = g.ipv6_fragments("2001:db8::1", "2001:db8::2", seg, 504)
    # out of order, with an unrelated packet in between
    frames = [g.ethernet(p) for p in [v4[2], v4[0], *v6, v4[1]]]
    f = tmp_path / "c.pcap"
    f.write_bytes(g.pcap(frames))
    rc, out, err = run(capsys, "--json", str(f))
    objs = [json.loads(line) for line in out.splitlines()]
    assert rc == 0 and err == "" and len(objs) == 2
    assert [o["frame"] for o in objs] == [2 + len(v6), 5 + len(v6) - 2]
    for o in objs:
        assert o["payloads"][0]["id"] == "a" * 1200


# ---------------------------------------------------------------- hex and raw input


def test_hex_argument_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, out, _ = run(capsys, "--hex", RFC7634_MSG.hex(), informational().hex())
    assert rc == 0 and "INFORMATIONAL request 9 [ SK ]" in out and "request 3" in out
    # one message over several lines, then one per line, with 0x and colons
    text = (
        RFC7634_MSG.hex()[:40]
        + "\n"
        + RFC7634_MSG.hex()[40:]
        + "\n"
        + ":".join(f"{b:02x}" for b in informational())
        + "\n0x"
        + informational(mid=4).hex()
        + "\n"
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    rc, out, _ = run(capsys, "--json", "--hex")
    assert [json.loads(x)["header"]["message_id"] for x in out.splitlines()] == [9, 3, 4]


def test_hex_with_marker(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "--json", "--hex", "00000000" + informational().hex())
    assert rc == 0 and json.loads(out)["marker"] is True


@pytest.mark.parametrize(
    "bad,msg",
    [
        ("xyz", "not hexadecimal: 'x'"),
        ("abc", "odd number of hex digits (3)"),
        ("", "no hex digits"),
        ("00112233", "shorter than an IKE header"),
    ],
)
def test_bad_hex(capsys: pytest.CaptureFixture[str], bad: str, msg: str) -> None:
    rc, out, err = run(capsys, "--hex", bad)
    assert rc == 1 and out == "" and msg in err and len(err.splitlines()) == 1


def test_undecodable_message_then_good_one(capsys: pytest.CaptureFixture[str]) -> None:
    broken = bytearray(informational())
    broken[17] = 0x30  # major version 3
    rc, out, err = run(capsys, "--hex", broken.hex(), informational().hex())
    assert rc == 0 and out.count("INFORMATIONAL") == 2
    assert (
        "hex argument 1: message 1: undecodable IKE message (68 octets): unsupported IKE "
        "major version 3 [INVALID_MAJOR_VERSION]" in err
    )


def test_raw_binary_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.bin"
    one.write_bytes(RFC7634_MSG)
    two = tmp_path / "two.bin"
    two.write_bytes(b"\0\0\0\0" + informational(mid=1) + informational(mid=2))
    rc, out, _ = run(capsys, "--json", str(one), str(two))
    objs = [json.loads(x) for x in out.splitlines()]
    assert rc == 0 and [(o["source"], o["header"]["message_id"]) for o in objs] == [
        (str(one), 9),
        (str(two), 1),
        (str(two), 2),
    ]
    rc, out, _ = run(capsys, str(one), str(two))
    assert f"{one} #1" in out  # several inputs: each record names its source


# ---------------------------------------------------------------- bad files


def test_not_a_capture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("this is not a capture file at all, just some text to be refused\n")
    rc, out, err = run(capsys, str(f))
    assert rc == 1 and out == "" and len(err.splitlines()) == 1
    assert "undecodable IKE message" in err


def test_missing_and_empty_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    rc, out, err = run(capsys, str(tmp_path / "nope.pcap"), str(empty))
    assert rc == 1 and out == ""
    assert "nope.pcap: cannot read: No such file or directory" in err
    assert "empty: empty file" in err


def test_truncated_pcap_keeps_what_it_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = sample_path().read_bytes()
    f = tmp_path / "cut.pcap"
    f.write_bytes(data[:-30])
    rc, out, err = run(capsys, str(f))
    assert rc == 0 and out.count("IKE_AUTH re") == 2 and out.count("ESP SPI") == 1
    assert err.strip().endswith("file truncated in packet 6 (162 octets announced)")
    f.write_bytes(data[:20])
    rc, out, err = run(capsys, str(f))
    assert rc == 1 and "truncated pcap file header" in err


def test_truncated_pcapng(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.udp(500, 500, informational())))] * 2
    data = g.pcapng(frames)
    f = tmp_path / "cut.pcapng"
    f.write_bytes(data[:-10])
    rc, out, err = run(capsys, str(f))
    assert rc == 0 and out.count("INFORMATIONAL request") == 1
    assert "bad length" in err or "truncated" in err


def test_capture_truncated_by_snaplen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.udp(500, 500, informational())))
    f = tmp_path / "snap.pcap"
    f.write_bytes(g.pcap([frame[:60]]))
    rc, _, err = run(capsys, str(f))
    assert rc == 1 and "IPv4 packet truncated in the capture (46 of 96 octets)" in err


def test_nothing_to_do(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys)
    assert rc == 2 and "nothing to decode" in err


# ---------------------------------------------------------------- decryption


def test_rfc7634_appendix_b_decrypts(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "--hex", RFC7634_MSG.hex(), "--keys", RFC7634_LINE)
    assert rc == 0 and err == ""
    assert "SK next NOTIFY (37 octets) decrypted with ChaCha20-Poly1305 [RFC7634]" in out
    assert "    N(SET_WINDOW_SIZE) data 0000000a" in out and "window_size 10" in out


def test_rfc7634_json_and_keylog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "ikev2_decryption_table"
    log.write_text(
        "# written by quickike\n\n"
        + RFC7634_LINE.replace("ChaCha20-Poly1305", "ENCR_CHACHA20_POLY1305")
        + "\n"
    )
    rc, out, err = run(capsys, "--json", "--hex", RFC7634_MSG.hex(), "--keylog", str(log))
    sk = json.loads(out)["payloads"][0]
    assert rc == 0 and err == ""
    assert sk["decrypted"] == {
        "with": "ChaCha20-Poly1305 [RFC7634]",
        "integrity": "NONE [RFC4306]",
        "plaintext_length": 12,
        "payloads": [
            {
                "type": "NOTIFY",
                "type_number": 41,
                "critical": False,
                "notify": "SET_WINDOW_SIZE",
                "notify_type": 16385,
                "protocol": "NONE",
                "spi": "",
                "data": "0000000a",
                "decoded": {"window_size": 10},
            }
        ],
    }


def test_wrong_keys(capsys: pytest.CaptureFixture[str]) -> None:
    wrong = RFC7634_LINE.replace(RFC7634_KEY, "00" * 36)
    rc, out, err = run(capsys, "--hex", RFC7634_MSG.hex(), "--keys", wrong)
    assert rc == 0  # the message itself decoded
    assert "not decrypted: integrity check failed" in out
    assert (
        err.count("\n") == 1
        and "SK payload does not verify with the keys for SPIs c0c1c2c3c4c5c6c7/d0d1d2d3d4d5d6d7"
        in err
    )


@pytest.mark.parametrize(
    "line,msg",
    [
        ("a,b,c", "expected 8 comma-separated fields, found 3"),
        (
            'c0c1c2c3,d0d1d2d3d4d5d6d7,00,00,"AES-CBC-128 [RFC3602]",,,"NONE [RFC4306]"',
            "SPIi and SPIr must be 8 octets",
        ),
        (
            f'c0c1c2c3c4c5c6c7,d0d1d2d3d4d5d6d7,{RFC7634_KEY},{RFC7634_KEY},"3DES [RFC2451]",,,'
            '"NONE [RFC4306]"',
            'unsupported encryption algorithm "3DES [RFC2451]"',
        ),
        (
            f"c0c1c2c3c4c5c6c7,d0d1d2d3d4d5d6d7,{RFC7634_KEY}00,{RFC7634_KEY},"
            '"ChaCha20-Poly1305 [RFC7634]",,,"NONE [RFC4306]"',
            "SK_ei has 37 octets",
        ),
        (
            f'c0c1c2c3c4c5c6c7,d0d1d2d3d4d5d6d7,{"11" * 16},{"22" * 16},"AES-CBC-128 [RFC3602]",,,'
            '"NONE [RFC4306]"',
            "AES-CBC-128 [RFC3602] needs an integrity algorithm",
        ),
        (
            f'c0c1c2c3c4c5c6c7,d0d1d2d3d4d5d6d7,{"11" * 16},{"22" * 16},"AES-CBC-128 [RFC3602]",'
            f'{"33" * 20},{"44" * 20},"HMAC_MD5_96 [RFC2403]"',
            "unsupported integrity algorithm",
        ),
        (
            'c0c1c2c3c4c5c6c7,d0d1d2d3d4d5d6d7,zz,00,"AES-CBC-128 [RFC3602]",,,"NONE [RFC4306]"',
            "SK_ei: not hexadecimal",
        ),
    ],
)
def test_bad_key_lines(capsys: pytest.CaptureFixture[str], line: str, msg: str) -> None:
    rc, out, err = run(capsys, "--hex", RFC7634_MSG.hex(), "--keys", line)
    assert rc == 0 and "not decrypted (no keys given)" in out
    assert len(err.splitlines()) == 1 and "--keys 1: ignored key line: " + msg in err


def _sa(encr_id: EncrId, bits: int, integ_id: IntegId | None) -> tuple[SkProtector, str]:
    encr = encr_alg(encr_id, bits)
    integ = integ_alg(integ_id) if integ_id is not None else None
    assert encr is not None
    suite = Suite(ProtocolId.IKE, 1, b"", encr, None, integ, None)
    rng = SeededRandomSource(7)
    ka = integ.key_size if integ else 0
    keys = IkeKeys(
        b"d" * 32,
        rng.bytes(ka),
        rng.bytes(ka),
        rng.bytes(encr.keymat_size),
        rng.bytes(encr.keymat_size),
        b"p" * 32,
        b"q" * 32,
    )
    return SkProtector(suite, keys, True, rng), wireshark_line(SPI_I, SPI_R, encr, integ, keys)


INNER = [
    IDi(IdType.FQDN, b"alice.example"),
    Notify(NotifyType.QUICK_CRASH_DETECTION, QCD, ProtocolId.IKE),
]


@pytest.mark.parametrize(
    "encr_id,bits,integ_id,name",
    [
        (EncrId.AES_GCM_16, 256, None, "AES-GCM-256 with 16 octet ICV [RFC5282]"),
        (EncrId.AES_GCM_8, 128, None, "AES-GCM-128 with 8 octet ICV [RFC5282]"),
        (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, "AES-CBC-128 [RFC3602]"),
        (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_512_256, "AES-CBC-256 [RFC3602]"),
        (EncrId.CHACHA20_POLY1305, 256, None, "ChaCha20-Poly1305 [RFC7634]"),
    ],
)
def test_decrypts_what_the_crypto_layer_protects(
    capsys: pytest.CaptureFixture[str],
    encr_id: EncrId,
    bits: int,
    integ_id: IntegId | None,
    name: str,
) -> None:
    prot, line = _sa(encr_id, bits, integ_id)
    assert f'"{name}"' in line  # the daemon's key log line names the algorithm as Wireshark does
    first, inner = encode_payloads(INNER)
    msg = prot.protect(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 0x08, 1, first, inner)
    rc, out, err = run(capsys, "--hex", msg.hex(), "--keys", line)
    assert rc == 0 and err == ""
    assert f"decrypted with {name}" in out
    assert "    IDi FQDN alice.example" in out
    assert f"    N(QUICK_CRASH_DETECTION) protocol IKE data {QCD.hex()}" in out


def test_responder_direction_uses_sk_er(capsys: pytest.CaptureFixture[str]) -> None:
    encr = encr_alg(EncrId.AES_GCM_16, 128)
    assert encr is not None
    suite = Suite(ProtocolId.IKE, 1, b"", encr, None, None, None)
    rng = SeededRandomSource(1)
    keys = IkeKeys(b"", b"", b"", rng.bytes(20), rng.bytes(20), b"", b"")
    responder = SkProtector(suite, keys, False, rng)
    first, inner = encode_payloads(INNER)
    msg = responder.protect(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 0x20, 1, first, inner)
    rc, out, _ = run(
        capsys, "--hex", msg.hex(), "--keys", wireshark_line(SPI_I, SPI_R, encr, None, keys)
    )
    assert rc == 0 and "IDi FQDN alice.example" in out


def test_fragments_are_decrypted_and_reassembled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prot, line = _sa(EncrId.AES_GCM_16, 256, None)
    inner_payloads = [IDi(IdType.FQDN, b"x" * 300), *INNER[1:]]
    first, inner = encode_payloads(inner_payloads)
    frags = prot.protect_fragments(
        SPI_I, SPI_R, ExchangeType.IKE_AUTH, 0x08, 1, first, inner, max_datagram=150
    )
    assert len(frags) >= 3
    frames = [
        g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.udp(4500, 4500, b"\0" * 4 + f)))
        for f in reversed(frags)
    ]
    pc = tmp_path / "frag.pcap"
    pc.write_bytes(g.pcap(frames))
    rc, out, err = run(capsys, "--json", str(pc), "--keys", line)
    assert rc == 0 and err == ""
    objs = [json.loads(x) for x in out.splitlines()]
    last = objs[-1]["payloads"][-1]
    assert last["type"] == "SKF" and last["number"] == 1
    dec = last["decrypted"]
    assert dec["reassembled"] == {"fragments": len(frags), "length": len(inner)}
    assert [p["type"] for p in dec["payloads"]] == ["IDi", "NOTIFY"]
    assert "payloads" not in objs[0]["payloads"][-1]["decrypted"]
    # a missing fragment is reported once, at the end
    pc.write_bytes(g.pcap(frames[1:]))
    rc, out, err = run(capsys, str(pc), "--keys", line)
    assert rc == 0 and f"only {len(frags) - 1} of {len(frags)} fragments seen" in err


@pytest.mark.usefixtures("need_tshark")
def test_tshark_decrypts_with_the_same_key_line(tmp_path: Path) -> None:
    """The key log really is Wireshark's format: tshark decrypts with the very same line."""
    prot, line = _sa(EncrId.AES_GCM_16, 256, None)
    first, inner = encode_payloads(INNER)
    msg = prot.protect(SPI_I, SPI_R, ExchangeType.IKE_AUTH, 0x08, 1, first, inner)
    pc = tmp_path / "m.pcap"
    pc.write_bytes(g.pcap([g.ethernet(g.ipv4("10.0.0.1", "10.0.0.2", g.udp(500, 500, msg)))]))
    res = subprocess.run(
        [
            "tshark",
            "-r",
            str(pc),
            "-o",
            f"uat:ikev2_decryption_table:{line}",
            "-T",
            "fields",
            "-e",
            "isakmp.notify.msgtype",
            "-e",
            "isakmp.id.data.fqdn",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert res.stdout.split() == ["16419", "alice.example"]
