"""``quickike decode``: show IKEv2 messages from captures, hex or raw files; decrypt SK with keys.

Inputs: pcap or pcapng files (Ethernet with VLAN tags, Linux cooked SLL and
SLL2, raw IP, IPv4, IPv6 and BSD/loopback null link types; IPv4/IPv6 with
fragment reassembly; UDP port 500 plain, 4500 and ``--port`` ports framed
with the non-ESP marker, where ESP and NAT keepalives are shown as one line),
raw binary files holding one or more IKE messages back to back (a leading
non-ESP marker is recognised: an initiator SPI is never zero), and hex
(``--hex HEX...``, or ``--hex`` alone for stdin; messages are split by the
length in their IKE header, so one message per line and many lines per
message both work).  The reader is stdlib only: scapy is a test tool here.

Key log format (``--keylog FILE``, ``--keys LINE``)
----------------------------------------------------
Exactly Wireshark's ``ikev2_decryption_table`` UAT file, so one file serves
both tools (in Wireshark: copy it to ``ikev2_decryption_table`` in the
profile directory, or ``tshark -o uat:ikev2_decryption_table:"LINE"``).
One line per IKE SA; empty lines and lines starting with ``#`` are skipped::

    SPIi,SPIr,SK_ei,SK_er,"<encryption algorithm>",SK_ai,SK_ar,"<integrity algorithm>"

SPIs and keys are hex (quotes around any field are accepted).  For AEAD
algorithms SK_ei/SK_er are key | salt (RFC 5282 §7.1, RFC 7634 §2) and
SK_ai/SK_ar are empty with integrity ``"NONE [RFC4306]"``.  Algorithm names
are Wireshark's, e.g. ``"AES-GCM-256 with 16 octet ICV [RFC5282]"``,
``"AES-CBC-128 [RFC3602]"``, ``"HMAC_SHA2_256_128 [RFC4868]"``; the
supported set is whatever :mod:`quickike.crypto.algorithms` implements.
Wireshark has no name for ChaCha20-Poly1305 in this table (up to 4.x), so
rows for it use ``"ChaCha20-Poly1305 [RFC7634]"``: quickike reads them,
Wireshark reports "invalid value" for such a row and still uses the others.
A rekeyed IKE SA has new SPIs and gets its own line.
The daemon's ``--keylog`` appends these lines; the file holds secrets.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import ipaddress
import json
import re
import struct
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from quickike.wire import (
    AUTH,
    CERT,
    CERTREQ,
    CP,
    EAP,
    HEADER_SIZE,
    KE,
    SA,
    CodecError,
    Delete,
    DhGroup,
    Encrypted,
    EncryptedFragment,
    HashAlgorithm,
    Identification,
    Kind,
    Message,
    Nonce,
    Notify,
    NotifyType,
    Payload,
    PayloadType,
    TrafficSelector,
    TSi,
    TSr,
    UnknownPayload,
    UnknownSelector,
    VendorId,
    classify_marked,
    decode_message,
    decode_payloads,
)

if TYPE_CHECKING:  # the crypto layer is imported only when keys are given
    from quickike.crypto.sk import SkProtector

SAMPLE = "ikev2_sa_init.pcap"
PROG = "quickike decode"

# ====================================================================== problems


class Problems:
    """One line per problem on stderr, counted so the exit status can depend on them."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0

    def __call__(self, where: str, what: str) -> None:
        self.count += 1
        prefix = f"{PROG}: {where}: " if where else f"{PROG}: "
        print(prefix + what, file=self.stream)


# ====================================================================== capture files


@dataclass(slots=True)
class Frame:
    number: int
    time: float | None
    linktype: int
    data: bytes


_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


def is_capture(head: bytes) -> bool:
    return head[:4] in _PCAP_MAGIC or head[:4] == _PCAPNG_SHB


def read_capture(data: bytes, where: str, problem: Problems) -> Iterator[Frame]:
    if data[:4] == _PCAPNG_SHB:
        yield from _read_pcapng(data, where, problem)
    else:
        yield from _read_pcap(data, where, problem)


def _read_pcap(data: bytes, where: str, problem: Problems) -> Iterator[Frame]:
    order, unit = _PCAP_MAGIC[data[:4]]
    if len(data) < 24:
        problem(where, "truncated pcap file header")
        return
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    rec = struct.Struct(order + "IIII")
    off, number = 24, 0
    while off < len(data):
        number += 1
        if len(data) - off < 16:
            problem(where, f"file truncated in the header of packet {number}")
            return
        sec, frac, incl, _orig = rec.unpack_from(data, off)
        if incl > len(data) - off - 16:
            problem(where, f"file truncated in packet {number} ({incl} octets announced)")
            return
        yield Frame(number, sec + frac * unit, linktype, data[off + 16 : off + 16 + incl])
        off += 16 + incl


def _read_pcapng(data: bytes, where: str, problem: Problems) -> Iterator[Frame]:
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    off, number = 0, 0
    while off < len(data):
        if len(data) - off < 12:
            problem(where, f"file truncated at block offset {off}")
            return
        if data[off : off + 4] == _PCAPNG_SHB:
            bom = data[off + 8 : off + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                order = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                order = ">"
            else:
                problem(where, "pcapng section header with an unknown byte-order magic")
                return
            interfaces = []
        btype, blen = struct.unpack_from(order + "II", data, off)
        if blen < 12 or blen % 4 or blen > len(data) - off:
            problem(where, f"pcapng block at offset {off} has a bad length {blen}")
            return
        body = data[off + 8 : off + blen - 4]
        off += blen
        if btype == 1 and len(body) >= 8:  # interface description
            linktype = struct.unpack_from(order + "H", body, 0)[0]
            interfaces.append((linktype, _if_tsresol(body[8:], order)))
        elif btype in (6, 2, 3):  # enhanced, obsolete and simple packet blocks
            number += 1
            frame = _pcapng_packet(btype, body, order, interfaces, number)
            if frame is None:
                problem(where, f"packet {number}: malformed pcapng packet block")
                continue
            yield frame


def _if_tsresol(options: bytes, order: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
        pos += 4 + (length + 3) // 4 * 4
    return 1e-6


def _pcapng_packet(
    btype: int, body: bytes, order: str, interfaces: list[tuple[int, float]], number: int
) -> Frame | None:
    if btype == 3:
        if len(body) < 4 or not interfaces:
            return None
        orig = struct.unpack_from(order + "I", body, 0)[0]
        return Frame(number, None, interfaces[0][0], body[4 : 4 + orig])
    if btype == 6:
        if len(body) < 20:
            return None
        iface, hi, lo, cap, _orig = struct.unpack_from(order + "IIIII", body, 0)
        start = 20
    else:
        if len(body) < 20:
            return None
        iface, _drops, hi, lo, cap, _orig = struct.unpack_from(order + "HHIIII", body, 0)
        start = 20
    if iface >= len(interfaces) or cap > len(body) - start:
        return None
    linktype, unit = interfaces[iface]
    return Frame(number, ((hi << 32) | lo) * unit, linktype, body[start : start + cap])


# ====================================================================== link, IP, UDP


@dataclass(slots=True)
class Datagram:
    """One UDP payload (or one message from hex/raw input) and where it came from."""

    where: str
    number: int
    data: bytes
    time: float | None = None
    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0
    framing: str = "auto"  # "plain" (port 500), "marker" (4500 and --port), "auto" (hex/raw)


_ETH_IPV4, _ETH_IPV6 = 0x0800, 0x86DD
_VLAN = (0x8100, 0x88A8, 0x9100)
_AF_INET6 = (10, 24, 28, 30)  # Linux, NetBSD/OpenBSD, FreeBSD, macOS


def _link_to_ip(linktype: int, d: bytes) -> bytes | None:
    """The IP packet inside a link-layer frame, or None if it carries something else."""
    if linktype == 1:  # Ethernet
        if len(d) < 14:
            return None
        pos, etype = 12, struct.unpack_from("!H", d, 12)[0]
        while etype in _VLAN and len(d) >= pos + 6:
            pos += 4
            etype = struct.unpack_from("!H", d, pos)[0]
        return d[pos + 2 :] if etype in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype == 113:  # Linux cooked v1
        if len(d) < 16:
            return None
        return d[16:] if struct.unpack_from("!H", d, 14)[0] in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype == 276:  # Linux cooked v2
        if len(d) < 20:
            return None
        return d[20:] if struct.unpack_from("!H", d, 0)[0] in (_ETH_IPV4, _ETH_IPV6) else None
    if linktype in (0, 108):  # BSD null / OpenBSD loop: address family in 4 octets
        if len(d) < 4:
            return None
        fams = {struct.unpack_from("<I", d)[0], struct.unpack_from(">I", d)[0]}
        return d[4:] if fams & {2, *_AF_INET6} else None
    if linktype in (101, 12, 14, 228, 229):  # raw IP, raw IPv4, raw IPv6
        return d
    return None


class _Reassembler:
    """IPv4/IPv6 fragment reassembly: big IKE_AUTH messages with certificates get fragmented."""

    MAX_PENDING = 256

    def __init__(self) -> None:
        self._pending: dict[tuple[Any, ...], tuple[dict[int, bytes], list[int]]] = {}

    def add(self, key: tuple[Any, ...], offset: int, more: bool, data: bytes) -> bytes | None:
        pieces, total = self._pending.setdefault(key, ({}, [-1]))
        pieces[offset] = data
        if not more:
            total[0] = offset + len(data)
        if total[0] < 0:
            if len(self._pending) > self.MAX_PENDING:
                self._pending.pop(next(iter(self._pending)))
            return None
        out, pos = [], 0
        for off in sorted(pieces):
            if off > pos:
                return None
            out.append(pieces[off][pos - off :])
            pos = max(pos, off + len(pieces[off]))
        if pos < total[0]:
            return None
        del self._pending[key]
        return b"".join(out)[: total[0]]


def _ip_to_udp(ip: bytes, reasm: _Reassembler) -> tuple[str, str, bytes] | str | None:
    """(src, dst, UDP segment), a problem text, None for non-UDP or a fragment still missing."""
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        if len(ip) < 20:
            return "truncated IPv4 header"
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack_from("!H", ip, 2)[0]
        if ihl < 20 or total < ihl:
            return "malformed IPv4 header"
        if total > len(ip):
            return f"IPv4 packet truncated in the capture ({len(ip)} of {total} octets)"
        ident, frag = struct.unpack_from("!HH", ip, 4)
        proto = ip[9]
        src, dst = str(ipaddress.IPv4Address(ip[12:16])), str(ipaddress.IPv4Address(ip[16:20]))
        payload = ip[ihl:total]
        if frag & 0x3FFF:
            whole = reasm.add(
                (4, src, dst, ident, proto), (frag & 0x1FFF) * 8, bool(frag & 0x2000), payload
            )
            if whole is None:
                return None
            payload = whole
        return (src, dst, payload) if proto == 17 else None
    if version == 6:
        if len(ip) < 40:
            return "truncated IPv6 header"
        plen = struct.unpack_from("!H", ip, 4)[0]
        if 40 + plen > len(ip):
            return f"IPv6 packet truncated in the capture ({len(ip)} of {40 + plen} octets)"
        nxt = ip[6]
        src, dst = str(ipaddress.IPv6Address(ip[8:24])), str(ipaddress.IPv6Address(ip[24:40]))
        pos, end = 40, 40 + plen
        frag_info: tuple[int, bool, int] | None = None
        while nxt in (0, 43, 60, 44, 51):
            if end - pos < 8:
                return "truncated IPv6 extension header"
            if nxt == 44:
                offm, ident = struct.unpack_from("!HI", ip, pos + 2)
                frag_info = (offm & 0xFFF8, bool(offm & 1), ident)
                nxt, pos = ip[pos], pos + 8
            elif nxt == 51:
                nxt, pos = ip[pos], pos + (ip[pos + 1] + 2) * 4
            else:
                nxt, pos = ip[pos], pos + (ip[pos + 1] + 1) * 8
        payload = ip[pos:end]
        if frag_info is not None:
            offset, more, ident = frag_info
            whole = reasm.add((6, src, dst, ident), offset, more, payload)
            if whole is None:
                return None
            payload = whole
        return (src, dst, payload) if nxt == 17 else None
    return None


def capture_datagrams(
    frames: Iterable[Frame], where: str, marker_ports: set[int], problem: Problems
) -> Iterator[Datagram]:
    reasm = _Reassembler()
    for f in frames:
        ip = _link_to_ip(f.linktype, f.data)
        if ip is None:
            continue
        got = _ip_to_udp(ip, reasm)
        if got is None:
            continue
        if isinstance(got, str):
            problem(where, f"frame {f.number}: {got}")
            continue
        src, dst, udp = got
        if len(udp) < 8:
            problem(where, f"frame {f.number}: truncated UDP header")
            continue
        sport, dport, ulen = struct.unpack_from("!HHH", udp)
        if 500 in (sport, dport):
            framing = "plain"
        elif {sport, dport} & marker_ports:
            framing = "marker"
        else:
            continue
        if ulen < 8 or ulen > len(udp):
            problem(where, f"frame {f.number}: UDP length {ulen} but {len(udp)} octets captured")
            continue
        yield Datagram(where, f.number, udp[8:ulen], f.time, src, dst, sport, dport, framing)


# ====================================================================== hex and raw input


_HEX_JUNK = re.compile(r"0x|[\s:.,]", re.IGNORECASE)


def parse_hex(text: str) -> bytes:
    cleaned = _HEX_JUNK.sub("", text)
    bad = re.search(r"[^0-9a-fA-F]", cleaned)
    if bad:
        raise ValueError(f"not hexadecimal: {bad.group()!r}")
    if len(cleaned) % 2:
        raise ValueError(f"odd number of hex digits ({len(cleaned)})")
    return bytes.fromhex(cleaned)


def split_stream(data: bytes, where: str, problem: Problems) -> Iterator[Datagram]:
    """Messages back to back, each with an optional non-ESP marker; lengths from the headers."""
    pos, number = 0, 0
    while pos < len(data):
        number += 1
        if data[pos : pos + 1] == b"\xff" and len(data) - pos == 1:
            yield Datagram(where, number, data[pos:], framing="marker")
            return
        start = pos + 4 if data[pos : pos + 4] == b"\x00\x00\x00\x00" else pos
        if len(data) - start < HEADER_SIZE:
            problem(
                where,
                f"message {number}: {len(data) - start} octets left, shorter than an IKE header",
            )
            return
        length = struct.unpack_from("!I", data, start + 24)[0]
        if length < HEADER_SIZE or length > len(data) - start:
            # hand the rest to the decoder so the problem is reported as the codec sees it
            length = len(data) - start
        yield Datagram(
            where, number, data[pos : start + length], framing="marker" if start != pos else "plain"
        )
        pos = start + length


# ====================================================================== keys


@dataclass(slots=True)
class SaKeys:
    """Decryption state for one IKE SA (one key log line)."""

    encr_name: str
    integ_name: str
    from_initiator: SkProtector  # opens what the original initiator sends
    from_responder: SkProtector


def _norm(name: str) -> str:
    n = re.sub(r"\[.*?\]", "", name).lower()
    n = re.sub(r"^(encr|auth)_", "", n.strip())
    return re.sub(r"[^a-z0-9]", "", n)


_ENCR_ALIASES = {"chacha20withpoly1305": "chacha20poly1305"}
_INTEG_ALIASES = {
    "hmacsha256128": "hmacsha2256128",
    "hmacsha384192": "hmacsha2384192",
    "hmacsha512256": "hmacsha2512256",
}


def _algorithms() -> tuple[dict[str, Any], dict[str, Any]]:
    from quickike.crypto.algorithms import ENCR_ALGS, INTEG_ALGS

    encr = {_norm(a.wireshark_name): a for a in ENCR_ALGS.values() if a.wireshark_name}
    integ = {_norm(a.wireshark_name): a for a in INTEG_ALGS.values() if a.wireshark_name}
    return encr, integ


def _hexfield(value: str, what: str) -> bytes:
    try:
        return parse_hex(value)
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def parse_key_line(line: str) -> tuple[bytes, bytes, SaKeys]:
    """Parse one ``ikev2_decryption_table`` line; ValueError with a one-line reason."""
    from quickike.crypto.keys import IkeKeys
    from quickike.crypto.proposals import Suite
    from quickike.crypto.rng import SystemRandomSource
    from quickike.crypto.sk import SkProtector
    from quickike.wire import ProtocolId

    fields = next(csv.reader([line], skipinitialspace=True), [])
    if len(fields) != 8:
        raise ValueError(f"expected 8 comma-separated fields, found {len(fields)}")
    spi_i, spi_r = _hexfield(fields[0], "SPIi"), _hexfield(fields[1], "SPIr")
    if len(spi_i) != 8 or len(spi_r) != 8:
        raise ValueError("SPIi and SPIr must be 8 octets (16 hex digits) each")
    sk_ei, sk_er = _hexfield(fields[2], "SK_ei"), _hexfield(fields[3], "SK_er")
    sk_ai, sk_ar = _hexfield(fields[5], "SK_ai"), _hexfield(fields[6], "SK_ar")
    encrs, integs = _algorithms()
    ename = _norm(fields[4])
    encr = encrs.get(_ENCR_ALIASES.get(ename, ename))
    if encr is None:
        known = ", ".join(sorted({f'"{a.wireshark_name}"' for a in encrs.values()}))
        raise ValueError(f'unsupported encryption algorithm "{fields[4]}" (supported: {known})')
    iname = _norm(fields[7])
    integ = None
    if iname not in ("", "none"):
        integ = integs.get(_INTEG_ALIASES.get(iname, iname))
        if integ is None:
            known = ", ".join(sorted(f'"{a.wireshark_name}"' for a in integs.values()))
            raise ValueError(
                f'unsupported integrity algorithm "{fields[7]}" (supported: '
                f'{known}, "NONE [RFC4306]")'
            )
    for key, name in ((sk_ei, "SK_ei"), (sk_er, "SK_er")):
        if len(key) != encr.keymat_size:
            raise ValueError(
                f"{name} has {len(key)} octets, {encr.wireshark_name} needs "
                f"{encr.keymat_size}" + (" (key | salt)" if encr.salt_size else "")
            )
    if encr.aead:
        integ = None
    elif integ is None:
        raise ValueError(f"{encr.wireshark_name} needs an integrity algorithm")
    else:
        for key, name in ((sk_ai, "SK_ai"), (sk_ar, "SK_ar")):
            if len(key) != integ.key_size:
                raise ValueError(
                    f"{name} has {len(key)} octets, {integ.wireshark_name} needs {integ.key_size}"
                )
    suite = Suite(ProtocolId.IKE, 1, b"", encr, None, integ, None)
    keys = IkeKeys(b"", sk_ai, sk_ar, sk_ei, sk_er, b"", b"")
    rng = SystemRandomSource()
    # A protector for the responder side opens what the original initiator sent, and vice versa.
    sa = SaKeys(
        encr.wireshark_name,
        integ.wireshark_name if integ else "NONE [RFC4306]",
        SkProtector(suite, keys, False, rng),
        SkProtector(suite, keys, True, rng),
    )
    return spi_i, spi_r, sa


def load_keys(
    lines: Iterable[tuple[str, str]], problem: Problems
) -> dict[tuple[bytes, bytes], SaKeys]:
    table: dict[tuple[bytes, bytes], SaKeys] = {}
    for where, line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            spi_i, spi_r, sa = parse_key_line(text)
        except ValueError as e:
            problem(where, f"ignored key line: {e}")
            continue
        except ImportError as e:  # pragma: no cover - crypto layer missing
            problem(where, f"decryption unavailable: {e}")
            return table
        table[(spi_i, spi_r)] = sa
    return table


# ====================================================================== JSON-ready views


def _hex(b: bytes) -> str:
    return b.hex()


def _selector(s: TrafficSelector | UnknownSelector) -> dict[str, Any]:
    if isinstance(s, UnknownSelector):
        return {
            "ts_type": s.ts_type,
            "protocol": s.ip_protocol,
            "start_port": s.start_port,
            "end_port": s.end_port,
            "data": _hex(s.data),
            "text": f"TS type {s.ts_type}",
        }
    a, b = s.start_addr, s.end_addr
    nets: list[Any] = []
    if (
        isinstance(a, ipaddress.IPv4Address) and isinstance(b, ipaddress.IPv4Address) and a <= b
    ) or (isinstance(a, ipaddress.IPv6Address) and isinstance(b, ipaddress.IPv6Address) and a <= b):
        nets = list(ipaddress.summarize_address_range(a, b))
    net = str(nets[0]) if len(nets) == 1 else f"{s.start_addr}..{s.end_addr}"
    text = net
    if (s.ip_protocol, s.start_port, s.end_port) != (0, 0, 65535):
        ports = (
            ""
            if (s.start_port, s.end_port) == (0, 65535)
            else f"/{s.start_port}"
            if s.start_port == s.end_port
            else f"/{s.start_port}-{s.end_port}"
        )
        text += f"[{s.ip_protocol}{ports}]"
    return {
        "ts_type": str(s.ts_type),
        "protocol": s.ip_protocol,
        "start_port": s.start_port,
        "end_port": s.end_port,
        "start": str(s.start_addr),
        "end": str(s.end_addr),
        "text": text,
    }


_GW_TYPES = {1: "IPv4", 2: "IPv6", 3: "FQDN"}


def _notify_detail(n: Notify) -> dict[str, Any] | None:
    """What a few well-known notifies carry, spelled out (RFC 7427, 5685, 7296)."""
    d, t = n.data, n.type
    if t == NotifyType.SIGNATURE_HASH_ALGORITHMS and len(d) % 2 == 0:
        ids = struct.unpack(f"!{len(d) // 2}H", d)
        return {"hash_algorithms": [str(HashAlgorithm(i)) for i in ids]}
    if t == NotifyType.SET_WINDOW_SIZE and len(d) == 4:
        return {"window_size": struct.unpack("!I", d)[0]}
    if t == NotifyType.INVALID_KE_PAYLOAD and len(d) == 2:
        return {"group": str(DhGroup(struct.unpack("!H", d)[0]))}
    if (
        t in (NotifyType.REDIRECT, NotifyType.REDIRECTED_FROM)
        and len(d) >= 2
        and len(d) >= 2 + d[1]
    ):
        gw_type, gw = d[0], d[2 : 2 + d[1]]
        if gw_type == 1 and len(gw) == 4:
            text = str(ipaddress.IPv4Address(gw))
        elif gw_type == 2 and len(gw) == 16:
            text = str(ipaddress.IPv6Address(gw))
        else:
            text = gw.decode("ascii", "backslashreplace")
        out: dict[str, Any] = {
            "gateway_type": _GW_TYPES.get(gw_type, str(gw_type)),
            "gateway": text,
        }
        if len(d) > 2 + d[1]:
            out["nonce"] = _hex(d[2 + d[1] :])
        return out
    return None


def _eap(data: bytes) -> dict[str, Any]:
    codes = {1: "Request", 2: "Response", 3: "Success", 4: "Failure"}
    out: dict[str, Any] = {
        "code": codes.get(data[0], str(data[0])),
        "identifier": data[1],
        "length": len(data),
    }
    if len(data) > 4:
        out["eap_type"] = data[4]
    out["data"] = _hex(data)
    return out


def _certificate(der: bytes) -> dict[str, Any]:
    """Subject, issuer and expiry of an X.509 certificate: what an operator checks first."""
    try:
        from cryptography import x509

        cert = x509.load_der_x509_certificate(der)
        return {
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
        }
    except Exception:  # a peer's malformed certificate is shown as hex, never a crash
        return {}


def payload_view(p: Payload) -> dict[str, Any]:
    """Every field of one payload, JSON-ready; the text output is printed from this."""
    v: dict[str, Any] = {
        "type": str(PayloadType(p.payload_type)),
        "type_number": p.payload_type,
        "critical": p.critical,
    }
    if isinstance(p, SA):
        v["proposals"] = [
            {
                "number": pr.number,
                "protocol": str(pr.protocol),
                "spi": _hex(pr.spi),
                "transforms": [
                    {
                        "type": str(t.type),
                        "id": t.id,
                        "name": str(t.named_id),
                        "key_length": t.key_length,
                        "attributes": [
                            {
                                "type": a.type,
                                "value": a.value if isinstance(a.value, int) else _hex(a.value),
                            }
                            for a in t.attributes
                        ],
                    }
                    for t in pr.transforms
                ],
            }
            for pr in p.proposals
        ]
    elif isinstance(p, KE):
        v.update(group=str(p.group), group_id=int(p.group), data=_hex(p.data))
    elif isinstance(p, Identification):
        v.update(
            id_type=str(p.id_type), id_type_number=int(p.id_type), id=p.text(), data=_hex(p.data)
        )
    elif isinstance(p, CERT | CERTREQ):
        v.update(encoding=str(p.encoding), encoding_number=int(p.encoding), data=_hex(p.data))
        if isinstance(p, CERT) and p.encoding == 4:
            v.update(_certificate(p.data))
    elif isinstance(p, AUTH):
        v.update(method=str(p.method), method_number=int(p.method), data=_hex(p.data))
    elif isinstance(p, Nonce | VendorId):
        v["data"] = _hex(p.data)
    elif isinstance(p, Notify):
        v.update(
            notify=str(p.type),
            notify_type=int(p.type),
            protocol=str(p.protocol),
            spi=_hex(p.spi),
            data=_hex(p.data),
        )
        detail = _notify_detail(p)
        if detail is not None:
            v["decoded"] = detail
    elif isinstance(p, Delete):
        size = p.spi_size if p.spi_size is not None else (0 if p.protocol == 1 else 4)
        v.update(protocol=str(p.protocol), spi_size=size, spis=[_hex(s) for s in p.spis])
    elif isinstance(p, TSi | TSr):
        v["selectors"] = [_selector(s) for s in p.selectors]
    elif isinstance(p, Encrypted):
        v.update(next_inner=str(PayloadType(p.next_inner)), length=len(p.data), data=_hex(p.data))
    elif isinstance(p, EncryptedFragment):
        v.update(
            next_inner=str(PayloadType(p.next_inner)),
            number=p.number,
            total=p.total,
            length=len(p.data),
            data=_hex(p.data),
        )
    elif isinstance(p, CP):
        attrs = []
        for a in p.attributes:
            av: dict[str, Any] = {
                "type": str(a.type),
                "type_number": int(a.type),
                "value": _hex(a.value),
            }
            if len(a.value) == 4 and "IP4" in str(a.type):
                av["text"] = str(ipaddress.IPv4Address(a.value))
            elif len(a.value) in (16, 17) and "IP6" in str(a.type):
                av["text"] = str(ipaddress.IPv6Address(a.value[:16])) + (
                    f"/{a.value[16]}" if len(a.value) == 17 else ""
                )
            elif a.type == 7:  # APPLICATION_VERSION
                av["text"] = a.value.decode("ascii", "backslashreplace")
            attrs.append(av)
        v.update(cfg_type=str(p.cfg_type), attributes=attrs)
    elif isinstance(p, EAP):
        v.update(_eap(p.data))
    elif isinstance(p, UnknownPayload):
        v["data"] = _hex(p.data)
    return v


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    dt = datetime.datetime.fromtimestamp(t, datetime.UTC)
    return dt.isoformat(timespec="microseconds").replace("+00:00", "Z")


_FLAG_NAMES = ((0x08, "I"), (0x10, "V"), (0x20, "R"))


def header_view(m: Message, length: int, first: int) -> dict[str, Any]:
    return {
        "spi_i": _hex(m.spi_i),
        "spi_r": _hex(m.spi_r),
        "next_payload": str(PayloadType(first)),
        "version": f"2.{m.minor}",
        "exchange": str(m.exchange),
        "exchange_type": int(m.exchange),
        "flags": m.flags,
        "flags_text": [n for bit, n in _FLAG_NAMES if m.flags & bit],
        "message_id": m.message_id,
        "length": length,
    }


# ====================================================================== the decoder


@dataclass(slots=True)
class _Fragments:
    total: int
    next_inner: int = 0
    parts: dict[int, bytes] = field(default_factory=dict)


class Decoder:
    """Turns datagrams into views, decrypting with the key table; remembers SKF fragments."""

    def __init__(self, keys: dict[tuple[bytes, bytes], SaKeys], problem: Problems) -> None:
        self.keys = keys
        self.problem = problem
        self.fragments: dict[tuple[bytes, bytes, int, int], _Fragments] = {}
        self.decoded = 0

    def datagram(self, dg: Datagram) -> dict[str, Any] | None:
        where = f"{dg.where}: frame {dg.number}" if dg.src else f"{dg.where}: message {dg.number}"
        view: dict[str, Any] = {"source": dg.where, "frame": dg.number}
        if dg.src:
            view.update(time=_iso(dg.time), src=dg.src, sport=dg.sport, dst=dg.dst, dport=dg.dport)
        data = dg.data
        if dg.framing == "marker":
            kind, rest = classify_marked(data)
            if kind is Kind.ESP:
                spi, seq = struct.unpack_from("!II", data)
                self.decoded += 1
                view.update(kind="esp", spi=f"0x{spi:08x}", seq=seq, length=len(data))
                return view
            if kind is Kind.KEEPALIVE:
                self.decoded += 1
                view.update(kind="keepalive")
                return view
            if kind is Kind.INVALID:
                self.problem(
                    where, f"{len(data)}-octet datagram is neither IKE, ESP nor a NAT keepalive"
                )
                return None
            data = bytes(rest)
            view["marker"] = True
        try:
            m = decode_message(data)
        except CodecError as e:
            self.problem(where, f"undecodable IKE message ({len(data)} octets): {e} [{e.notify}]")
            return None
        self.decoded += 1
        view["kind"] = "ike"
        view["summary"] = m.summary()
        view["header"] = header_view(m, len(data), data[16])
        view["payloads"] = [payload_view(p) for p in m.payloads]
        sk = m.encrypted
        if sk is not None:
            self._decrypt(m, data, sk, view["payloads"][-1], where)
        return view

    def _decrypt(
        self,
        m: Message,
        data: bytes,
        sk: Encrypted | EncryptedFragment,
        v: dict[str, Any],
        where: str,
    ) -> None:
        sa = self.keys.get((m.spi_i, m.spi_r))
        if sa is None:
            if self.keys:
                v["decrypted"] = {"error": "no keys for this IKE SA"}
            return
        from quickike.crypto.errors import CryptoError, IntegrityError

        opener = sa.from_initiator if m.is_initiator else sa.from_responder
        what = "SK" if isinstance(sk, Encrypted) else f"SKF {sk.number}/{sk.total}"
        try:
            if isinstance(sk, Encrypted):
                first, inner = opener.unprotect(data, m.sk_offset)
            else:
                _num, _tot, first, inner = opener.unprotect_fragment(data, m.sk_offset)
        except IntegrityError:
            v["decrypted"] = {"error": f"integrity check failed with {sa.encr_name}"}
            self.problem(
                where,
                f"{what} payload does not verify with the keys for SPIs "
                f"{m.spi_i.hex()}/{m.spi_r.hex()} (wrong keys or algorithm?)",
            )
            return
        except CryptoError as e:
            v["decrypted"] = {"error": str(e)}
            self.problem(where, f"{what} payload cannot be decrypted: {e}")
            return
        out: dict[str, Any] = {
            "with": sa.encr_name,
            "integrity": sa.integ_name,
            "plaintext_length": len(inner),
        }
        v["decrypted"] = out
        if isinstance(sk, Encrypted):
            out["payloads"] = self._inner(first, inner, where, out)
            return
        key = (m.spi_i, m.spi_r, m.message_id, m.flags & 0x28)
        frags = self.fragments.get(key)
        if frags is None or frags.total != sk.total:
            frags = self.fragments[key] = _Fragments(sk.total)
        frags.parts[sk.number] = inner
        if sk.number == 1:
            frags.next_inner = first
        if len(frags.parts) == frags.total:
            del self.fragments[key]
            whole = b"".join(frags.parts[i] for i in range(1, frags.total + 1))
            out["reassembled"] = {"fragments": frags.total, "length": len(whole)}
            out["payloads"] = self._inner(frags.next_inner, whole, where, out)

    def _inner(self, first: int, inner: bytes, where: str, out: dict[str, Any]) -> list[Any]:
        try:
            payloads, _ = decode_payloads(first, inner)
        except CodecError as e:
            out["error"] = f"inner payloads undecodable: {e}"
            self.problem(where, f"decrypted payloads undecodable: {e} [{e.notify}]")
            return []
        views = []
        for p in payloads:
            pv = payload_view(p)
            if isinstance(p, Encrypted | EncryptedFragment):
                pv["error"] = "encrypted payload nested inside SK"
            views.append(pv)
        return views


# ====================================================================== text rendering


def _short(hexstr: str, full: bool) -> str:
    n = len(hexstr) // 2
    if full or n <= 32:
        return hexstr
    return f"{hexstr[:64]}... ({n} octets)"


def _data(hexstr: str, full: bool) -> str:
    """`` <hex>`` or nothing: empty data prints as no data, not as an empty field."""
    return f" {_short(hexstr, full)}" if hexstr else ""


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def render_text(view: dict[str, Any], full: bool, source: bool = False) -> list[str]:
    """Lines for one view; ``source`` prefixes the input's name (several inputs)."""
    head = (f"{view['source']} " if source else "") + f"#{view['frame']}"
    if "src" in view:
        t = view.get("time")
        head += f"  {t.replace('T', ' ') if t else ''}  " if t else "  "
        head += (
            f"{_endpoint(view['src'], view['sport'])} -> {_endpoint(view['dst'], view['dport'])}"
        )
    if view["kind"] == "esp":
        return [f"{head}  ESP SPI {view['spi']} seq {view['seq']} ({view['length']} octets)"]
    if view["kind"] == "keepalive":
        return [f"{head}  NAT keepalive"]
    h = view["header"]
    lines = [head + ("  (non-ESP marker)" if view.get("marker") else ""), f"  {view['summary']}"]
    flags = ",".join(h["flags_text"]) or "-"
    lines.append(
        f"  SPIi {h['spi_i']}  SPIr {h['spi_r']}  {h['exchange']}  flags 0x{h['flags']:02x}"
        f" ({flags})  message id {h['message_id']}  length {h['length']}"
        + (f"  version {h['version']}" if h["version"] != "2.0" else "")
    )
    for pv in view["payloads"]:
        lines.extend(_render_payload(pv, "  ", full))
    return lines


def _render_payload(v: dict[str, Any], ind: str, full: bool) -> list[str]:
    t = v["type"]
    name = t + (" (critical)" if v["critical"] else "")
    if "proposals" in v:
        out = [f"{ind}{name}"]
        for pr in v["proposals"]:
            spi = f" SPI {pr['spi']}" if pr["spi"] else ""
            out.append(f"{ind}  proposal {pr['number']} {pr['protocol']}{spi}")
            for tr in pr["transforms"]:
                kl = f" key length {tr['key_length']}" if tr["key_length"] is not None else ""
                attrs = "".join(f" attr {a['type']}={a['value']}" for a in tr["attributes"])
                out.append(f"{ind}    {tr['type']:<5} {tr['name']}{kl}{attrs}")
        return out
    if "notify" in v:
        line = f"{ind}N({v['notify']})"
        if v["protocol"] != "NONE":
            line += f" protocol {v['protocol']}"
        if v["spi"]:
            line += f" SPI {v['spi']}"
        if v["data"]:
            line += f" data {_short(v['data'], full)}"
        if v["critical"]:
            line += " (critical)"
        out = [line]
        if "decoded" in v:
            out.append(
                f"{ind}  " + "  ".join(f"{k} {_fmt(val)}" for k, val in v["decoded"].items())
            )
        return out
    if "selectors" in v:
        return [f"{ind}{name}"] + [f"{ind}  {s['text']}" for s in v["selectors"]]
    if "id_type" in v:
        # Identification.text() falls back to "TYPE:hex"; the type is printed already
        ident = v["id"].removeprefix(f"{v['id_type']}:")
        return [f"{ind}{name} {v['id_type']} {ident}".rstrip()]
    if "group" in v:
        return [f"{ind}{name} {v['group']}{_data(v['data'], full)}"]
    if "method" in v:
        return [f"{ind}{name} {v['method']}{_data(v['data'], full)}"]
    if "subject" in v:
        return [
            f"{ind}{name} {v['encoding']} subject {v['subject']!r} issuer {v['issuer']!r} "
            f"valid until {v['not_after']} ({len(v['data']) // 2} octets)"
        ]
    if "encoding" in v:
        return [f"{ind}{name} {v['encoding']}{_data(v['data'], full)}"]
    if "spis" in v:
        spis = " ".join(v["spis"]) if v["spis"] else "(the IKE SA)"
        return [f"{ind}{name} {v['protocol']} {spis}"]
    if "cfg_type" in v:
        out = [f"{ind}{name} {v['cfg_type']}"]
        for a in v["attributes"]:
            val = a.get("text", a["value"]) or "(empty)"
            out.append(f"{ind}  {a['type']} {val}")
        return out
    if "code" in v:
        return [f"{ind}{name} {v['code']} id {v['identifier']} ({v['length']} octets)"]
    if t in ("SK", "SKF"):
        frag = f" fragment {v['number']}/{v['total']}" if t == "SKF" else ""
        line = f"{ind}{name}{frag} next {v['next_inner']} ({v['length']} octets)"
        dec = v.get("decrypted")
        if dec is None:
            return [line + " not decrypted (no keys given)"]
        if "error" in dec and "payloads" not in dec:
            return [line + f" not decrypted: {dec['error']}"]
        out = [
            line
            + f" decrypted with {dec['with']}"
            + (f", {dec['integrity']}" if not dec["integrity"].startswith("NONE") else "")
        ]
        if t == "SKF" and "reassembled" not in dec:
            out.append(
                f"{ind}  ({dec['plaintext_length']} octets, waiting for the other fragments)"
            )
        if "reassembled" in dec:
            out.append(f"{ind}  reassembled from {dec['reassembled']['fragments']} fragments")
        if "error" in dec:
            out.append(f"{ind}  {dec['error']}")
        for pv in dec.get("payloads", []):
            out.extend(_render_payload(pv, ind + "  ", full))
        return out
    return [f"{ind}{name}{_data(v.get('data', ''), full)}"]


def _fmt(val: Any) -> str:
    if isinstance(val, list):
        return ",".join(str(x) for x in val)
    return str(val)


# ====================================================================== command line


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "decode",
        help="print IKEv2 messages from pcap/pcapng, hex or raw files (decrypts SK given keys)",
        description="Print IKEv2 messages readably. Inputs: pcap/pcapng capture files, raw "
        "binary IKE messages, or hex. Give keys (Wireshark ikev2_decryption_table lines) to "
        "see inside SK payloads.",
        epilog='Key line: SPIi,SPIr,SK_ei,SK_er,"<encr>",SK_ai,SK_ar,"<integ>" in hex, e.g. '
        '...,"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]". '
        "Try: quickike decode --sample",
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="pcap, pcapng or raw message file")
    p.add_argument(
        "--hex",
        nargs="*",
        metavar="HEX",
        default=None,
        help="messages in hex; without values, read hex from stdin",
    )
    p.add_argument(
        "--sample",
        action="store_true",
        help=f"decode the sample capture shipped with quickike ({SAMPLE})",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line and message")
    p.add_argument(
        "--keys",
        action="append",
        default=[],
        metavar="LINE",
        help="one ikev2_decryption_table line (repeatable)",
    )
    p.add_argument(
        "--keylog",
        action="append",
        default=[],
        metavar="FILE",
        help="file of ikev2_decryption_table lines (repeatable)",
    )
    p.add_argument(
        "--port",
        action="append",
        type=int,
        default=[],
        metavar="PORT",
        help="extra UDP port carrying IKE with the non-ESP marker (besides 4500)",
    )
    p.add_argument("--full", action="store_true", help="do not shorten long hex fields")
    p.set_defaults(func=run)


def sample_path() -> Path:
    return Path(str(resources.files("quickike") / "samples" / SAMPLE))


def _inputs(args: argparse.Namespace, problem: Problems) -> Iterator[Datagram]:
    marker_ports = {4500, *args.port}
    files: list[Path] = [Path(f) for f in args.files]
    if args.sample:
        files.insert(0, sample_path())
    for path in files:
        where = str(path) if not args.sample or path != files[0] else SAMPLE
        try:
            data = path.read_bytes()
        except OSError as e:
            problem(str(path), f"cannot read: {e.strerror or e}")
            continue
        if is_capture(data[:4]):
            yield from capture_datagrams(
                read_capture(data, where, problem), where, marker_ports, problem
            )
        elif not data:
            problem(where, "empty file")
        else:
            yield from split_stream(data, where, problem)
    if args.hex is not None:
        texts = [(f"hex argument {i}", h) for i, h in enumerate(args.hex, 1)]
        if not args.hex:
            texts = [("stdin", sys.stdin.read())]
        for where, text in texts:
            try:
                raw = parse_hex(text)
            except ValueError as e:
                problem(where, str(e))
                continue
            if not raw:
                problem(where, "no hex digits")
                continue
            yield from split_stream(raw, where, problem)


def _key_lines(args: argparse.Namespace, problem: Problems) -> Iterator[tuple[str, str]]:
    for i, line in enumerate(args.keys, 1):
        yield f"--keys {i}", line
    keylogs = list(args.keylog)
    if args.sample:
        keylogs.insert(0, str(sample_path().with_suffix(".keys")))
    for name in keylogs:
        try:
            text = Path(name).read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            problem(name, f"cannot read key log: {e.strerror or e}")
            continue
        for n, line in enumerate(text.splitlines(), 1):
            yield f"{name}:{n}", line


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    problem = Problems(err or sys.stderr)
    if not (args.files or args.sample or args.hex is not None):
        problem("", "nothing to decode: give capture/raw FILEs, --hex or --sample")
        return 2
    decoder = Decoder(load_keys(_key_lines(args, problem), problem), problem)
    several = len(args.files) + bool(args.sample) + (args.hex is not None) > 1
    previous = 0  # lines of the previous record: multi-line records get a blank line around
    for dg in _inputs(args, problem):
        view = decoder.datagram(dg)
        if view is None:
            continue
        if args.json:
            out.write(json.dumps(view, separators=(",", ":")) + "\n")
            continue
        lines = render_text(view, args.full, several)
        if previous and (previous > 1 or len(lines) > 1):
            out.write("\n")
        out.write("\n".join(lines) + "\n")
        previous = len(lines)
    for key, frags in decoder.fragments.items():
        problem(
            "",
            f"message {key[2]} of IKE SA {key[0].hex()}/{key[1].hex()}: only "
            f"{len(frags.parts)} of {frags.total} fragments seen",
        )
    if decoder.decoded == 0:
        if problem.count == 0:
            problem("", "no IKE messages found")
        return 1
    return 0
