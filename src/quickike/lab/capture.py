"""tcpdump inside a lab namespace, with a way to know it is really listening and has written.

tcpdump needs a moment before it captures, and with ``-U`` it writes each packet as it comes;
`Capture.start` waits for its "listening on" line and `wait_for_packets` counts records in the
file, so a test never sleeps hoping the packets are there.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

from quickike.lab.netns import LabError, LabProcess, Namespace

IKE_FILTER = "udp port 500 or udp port 4500"
_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">",
                b"\x4d\x3c\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">"}  # fmt: skip


def count_pcap_records(path: Path) -> int:
    """Complete packet records in a classic pcap file (a partly written last one is not counted)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) < 24:
        return 0
    order = _PCAP_MAGICS.get(data[:4])
    if order is None:
        raise LabError(f"{path} is not a classic pcap file")
    count, offset = 0, 24
    while offset + 16 <= len(data):
        (incl_len,) = struct.unpack_from(order + "I", data, offset + 8)
        if offset + 16 + incl_len > len(data):
            break
        offset += 16 + incl_len
        count += 1
    return count


class Capture:
    """``tcpdump -U -w`` on one interface of a namespace."""

    def __init__(
        self, namespace: Namespace, interface: str, path: Path, bpf: str = IKE_FILTER
    ) -> None:
        self.namespace = namespace
        self.interface = interface
        self.path = path
        self.bpf = bpf
        self.process: LabProcess | None = None

    def start(self, timeout: float = 10.0) -> Capture:
        # -Z root: Debian's tcpdump would otherwise drop to user tcpdump and fail to write here.
        # --immediate-mode: without it libpcap hands packets over only every second or so.
        argv = ["tcpdump", "-i", self.interface, "--immediate-mode", "-U", "-n", "-s", "0",
                "-Z", "root", "-w", str(self.path), self.bpf]  # fmt: skip
        self.process = self.namespace.spawn(argv, label=f"tcpdump-{self.interface}")
        deadline = time.monotonic() + timeout
        while "listening on" not in self.process.output():
            if not self.process.alive():
                raise LabError(f"tcpdump exited: {self.process.output()}")
            if time.monotonic() > deadline:
                raise LabError(f"tcpdump not listening after {timeout} s: {self.process.output()}")
            time.sleep(0.02)
        return self

    def packets(self) -> int:
        return count_pcap_records(self.path)

    def wait_for_packets(self, count: int, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while (seen := self.packets()) < count:
            if time.monotonic() > deadline:
                raise LabError(f"capture {self.path}: {seen} of {count} packets after {timeout} s")
            time.sleep(0.02)
        return seen

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
