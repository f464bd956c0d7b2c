"""Where the API listens: the node's address and, beside a LAN address, 127.0.0.1 for local apps.

`ApiListener` is built with the address chosen at start-up, before the app exists, so the parts
that follow the machine (network/federation/node.Federation's interface watcher) can be handed its
`move` when they are built; `start(runner)` then opens its sites on the started `web.AppRunner`,
whose cleanup closes them. `move` rebinds the node's address to another on the same port while the
loopback site keeps serving: the node follows its machine to a new LAN address (a Mac waking on
another network, a new DHCP lease) without a restart. Requests in flight on the old address
finish or fail with it.
"""
from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
_LOCAL = (LOOPBACK, "localhost", "0.0.0.0", "::", "::1")


class ApiListener:
    """The TCP sites of the node's API (module doc)."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port  # 0 until started, when asked for an ephemeral port
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._loopback: web.TCPSite | None = None

    @property
    def url(self) -> str:
        """The node's own URL, e.g. "http://192.168.1.5:17615"."""
        return f"http://{self.host}:{self.port}"

    @property
    def hosts(self) -> tuple[str, ...]:
        """The addresses it listens on (beside a LAN address, 127.0.0.1 too, once started)."""
        if self.host in _LOCAL or self._loopback is None:
            return (self.host,)
        return self.host, LOOPBACK

    async def start(self, runner: web.AppRunner) -> None:
        """Serve `runner` (set up, not yet listening) on the host and port; beside a LAN address,
        on 127.0.0.1 too (same port). Raises OSError when the address cannot be bound (in use,
        not this machine's)."""
        if self._runner is not None:
            raise RuntimeError("ApiListener already started")
        self._runner = runner
        ephemeral = self.port == 0
        self._site = await self._listen(self.host)
        if self.host not in _LOCAL and not ephemeral:
            # Local apps keep using http://127.0.0.1:PORT when the node binds its LAN address.
            self._loopback = await self._listen(LOOPBACK)

    async def move(self, host: str) -> None:
        """Listen on `host` (same port) instead of the current address; OSError leaves it as was.
        Before `start`, or to the address it has, nothing happens."""
        if host == self.host or self._site is None:
            return
        new = await self._listen(host)
        old, self._site = self._site, new
        previous, self.host = self.host, host
        await old.stop()
        log.info("the API moved from %s to %s (port %d)", previous, host, self.port)

    async def _listen(self, host: str) -> web.TCPSite:
        assert self._runner is not None
        before = set(self._runner.addresses)
        site = web.TCPSite(self._runner, host, self.port)
        await site.start()
        if self.port == 0:
            added = [a for a in self._runner.addresses if a not in before]
            self.port = int(added[0][1]) if added else 0
        return site
