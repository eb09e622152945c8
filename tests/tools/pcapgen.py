"""Build small capture files by hand, so the decoder's reader is tested against known octets."""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ipv4(
    src: str, dst: str, segment: bytes, proto: int = 17, ident: int = 1, frag: int = 0
) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(segment),
        ident,
        frag,
        64,
        proto,
        0,
        IPv4Address(src).packed,
        IPv4Address(dst).packed,
    )
    return hdr + segment


def ipv4_fragments(src: str, dst: str, segment: bytes, size: int, ident: int = 7) -> list[bytes]:
    """``segment`` split in fragments of ``size`` octets (a multiple of 8)."""
    out = []
    for off in range(0, len(segment), size):
        more = off + size < len(segment)
        out.append(
            ipv4(
                src,
                dst,
                segment[off : off + size],
                ident=ident,
                frag=(0x2000 if more else 0) | (off // 8),
            )
        )
    return out


def ipv6(src: str, dst: str, segment: bytes, nxt: int = 17, ext: bytes = b"") -> bytes:
    return (
        struct.pack(
            "!IHBB16s16s",
            0x60000000,
            len(ext) + len(segment),
            nxt,
            64,
            IPv6Address(src).packed,
            IPv6Address(dst).packed,
        )
        + ext
        + segment
    )


def ipv6_fragments(src: str, dst: str, segment: bytes, size: int, ident: int = 9) -> list[bytes]:
    out = []
    for off in range(0, len(segment), size):
        more = off + size < len(segment)
        frag_hdr = struct.pack("!BBHI", 17, 0, off | int(more), ident)
        out.append(ipv6(src, dst, segment[off : off + size], nxt=44, ext=frag_hdr))
    return out


def ethernet(ip: bytes, vlan: int | None = None) -> bytes:
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    head = b"\x02" * 6 + b"\x04" * 6
    if vlan is not None:
        head += struct.pack("!HH", 0x8100, vlan)
    return head + struct.pack("!H", etype) + ip


def sll(ip: bytes) -> bytes:
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 6 + b"\0\0", etype) + ip


def sll2(ip: bytes) -> bytes:
    etype = 0x86DD if ip[0] >> 4 == 6 else 0x0800
    return struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, b"\x02" * 6 + b"\0\0") + ip


def null(ip: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "I", 24 if ip[0] >> 4 == 6 else 2) + ip


def pcap(
    frames: list[bytes],
    linktype: int = 1,
    order: str = "<",
    nano: bool = False,
    start: float = 1_700_000_000.0,
) -> bytes:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for i, f in enumerate(frames):
        t = start + i * 0.25
        frac = round((t % 1) * (1e9 if nano else 1e6))
        out.append(struct.pack(order + "IIII", int(t), frac, len(f), len(f)) + f)
    return b"".join(out)


def _block(btype: int, body: bytes, order: str) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", n)


def pcapng(
    frames: list[bytes],
    linktype: int = 1,
    order: str = "<",
    tsresol: int | None = None,
    simple: bool = False,
    start: float = 1_700_000_000.0,
) -> bytes:
    shb = _block(0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1), order)
    opts = b""
    if tsresol is not None:
        opts = struct.pack(order + "HH", 9, 1) + bytes((tsresol, 0, 0, 0)) + b"\0\0\0\0"
    idb = _block(1, struct.pack(order + "HHI", linktype, 0, 65535) + opts, order)
    units = 10 ** (tsresol if tsresol is not None else 6)
    blocks = [shb, idb]
    for i, f in enumerate(frames):
        if simple:
            blocks.append(_block(3, struct.pack(order + "I", len(f)) + f, order))
            continue
        ts = round((start + i * 0.25) * units)
        blocks.append(
            _block(
                6,
                struct.pack(order + "IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(f), len(f)) + f,
                order,
            )
        )
    return b"".join(blocks)
