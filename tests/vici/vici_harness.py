"""Run a ViciServer on its own event loop in a thread, for blocking clients (the vici
package, swanctl subprocesses, quickike's client) to talk to."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest
from vici_fake_backend import FakeBackend

from quickike.control.vici.server import ViciServer

T = TypeVar("T")


def ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_swanctl() -> str:
    """Path of swanctl; skip when missing, except under CI=true where it must exist."""
    path = shutil.which("swanctl") or (
        "/usr/sbin/swanctl" if os.path.exists("/usr/sbin/swanctl") else None
    )
    if path is None:
        if ci():
            pytest.fail("swanctl is required under CI=true (apt-get install strongswan-swanctl)")
        pytest.skip("swanctl not installed (apt-get install -y strongswan-swanctl)")
    return path


class ServerThread:
    def __init__(self, backend: FakeBackend, path: Path, **options: Any) -> None:
        self.backend = backend
        self.path = path
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: ViciServer | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the server's loop (the backend and server are not thread-safe)."""

        async def invoke() -> T:
            return fn(*args)

        return self.run(invoke())

    def __enter__(self) -> ServerThread:
        self.thread.start()

        async def start() -> ViciServer:
            server = ViciServer(self.backend, self.path, **self.options)
            await server.start()
            return server

        self.server = self.run(start())
        self.backend.events = self.server
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.server is not None:
                self.run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
