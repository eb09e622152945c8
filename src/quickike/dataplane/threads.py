"""Run a UserspaceDataPlane with one thread per direction.

Whether it helps depends on the cores.  The AEAD calls of ``cryptography``
keep the GIL (two threads encrypting take as long as one doing both halves:
``bench/bench_esp.py gil``); only the syscalls around them (TUN read/write,
sendto, recvfrom) release it, so two threads can at best overlap one
direction's syscalls with the other's Python work.  On the project's 2-core
machines, where both gateways, iperf3 and the kernel's forwarding share the
cores, ``bench/bench_esp.py iperf`` measured this mode *slower* than one
asyncio loop (about 520-730 against 590-840 Mbit/s of TCP, with more CPU per
byte), so the daemon should use :meth:`UserspaceDataPlane.attach`; this
runner is for machines with cores to spare and for measuring that choice.

The data plane's per-direction locks make this safe; the callbacks
(``on_acquire`` ...) then run on these threads, so a driver whose engine
lives on an asyncio loop hands them over with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable

from quickike.dataplane.userspace import UserspaceDataPlane

__all__ = ["DataPlaneThreads"]


class DataPlaneThreads:
    """Two daemon threads polling the TUN fd and the UDP socket; stop() ends both at once."""

    def __init__(self, dp: UserspaceDataPlane, *, name: str = "esp") -> None:
        if dp.udp_fileno() is None:
            raise ValueError("the data plane needs its UDP socket to run on threads")
        self._dp = dp
        self._name = name
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        #: the first exception that ended a pump thread, if any
        self.error: BaseException | None = None

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("already started")
        udp_fd = self._dp.udp_fileno()
        assert udp_fd is not None
        for label, fd, step in (
            ("out", self._dp.tun_fileno(), self._dp.tun_readable),
            ("in", udp_fd, self._dp.udp_readable),
        ):
            t = threading.Thread(
                target=self._pump, args=(fd, step), name=f"{self._name}-{label}", daemon=True
            )
            self._threads.append(t)
            t.start()

    def _pump(self, fd: int, step: Callable[[], int]) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        wake = self._wake_r
        try:
            while not self._stop.is_set():
                for ready, _ in poller.poll():
                    if ready == wake:
                        return
                    # drain: a batch may leave packets behind, poll reports them again
                    step()
        except BaseException as e:  # report, then let the thread end
            if self.error is None:
                self.error = e

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        for t in self._threads:
            t.join(timeout)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._threads = []

    def __enter__(self) -> DataPlaneThreads:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
