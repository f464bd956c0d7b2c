"""Telling every watcher that the swarm changed: a version counter, not a shared `asyncio.Event`.

An Event cleared by one consumer hides the change from every other one (the terminal view and the
dashboard's long polls both watch). Here a producer calls `bump()` and each watcher keeps the last
version it rendered: `wait_newer(seen, timeout)` returns at once when something changed since,
so no watcher can miss a wake-up, however many there are and whenever they look.
"""
from __future__ import annotations

import asyncio


class Changes:
    """A monotonically growing version, and a way to wait for it to pass a given one."""

    def __init__(self) -> None:
        self.version = 0
        self._next = asyncio.Event()  # set when `version` moves past the value it was made at

    def bump(self) -> None:
        """Something changed: wake every watcher (synchronous, callable from callbacks)."""
        self.version += 1
        self._next.set()
        self._next = asyncio.Event()

    async def wait_newer(self, seen: int, timeout_s: float) -> int:
        """The version once it is above `seen`, or the current one after `timeout_s`."""
        if self.version > seen:
            return self.version
        event = self._next
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
        except TimeoutError:
            pass
        return self.version
