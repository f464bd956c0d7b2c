"""A real aiohttp server on 127.0.0.1:0 running in its own thread and event loop, for sync tests."""
from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web


def ipv6_loopback() -> str | None:
    """Why ::1 cannot be bound here, or None when it can (it is the second client address the
    tests use: macOS loopback has 127.0.0.1 only, not the rest of 127.0.0.0/8)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        return f"no IPv6 loopback (::1) here, so no second local client address: {exc}"
    return None


class ServerThread:
    """Serves `make_app()` on an ephemeral loopback port until `stop()`; with `ipv6`, on ::1 too
    (same port), as `url6`."""

    def __init__(self, make_app: Callable[[], web.Application], *, ipv6: bool = False) -> None:
        self._make_app = make_app
        self._ipv6 = ipv6
        self.url6 = ""
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="test-server", daemon=True)
        self.url = ""

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._make_app(), handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        if self._ipv6:
            await web.TCPSite(self._runner, "::1", port).start()
            self.url6 = f"http://[::1]:{port}"

    def start(self) -> ServerThread:
        """Start serving and wait until the port is bound."""
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("test server did not start")
        return self

    def call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def stop(self) -> None:
        """Stop the loop and clean up the runner."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0,
               what: str = "condition") -> None:
    """Block until `predicate()` holds, failing after `timeout` seconds (a deadline, not a sleep)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        threading.Event().wait(0.01)
