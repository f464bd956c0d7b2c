"""A held connection to the coordinator: its crash is seen the moment its host closes the socket.

Beats find a stopped peer once they have been quiet for `Timings.quiet_s` (0.6 s), and only its
three watchers look that closely. A follower also holds one signed `GET /v1/federation/tether`
open to the coordinator it follows, which the coordinator never answers until it shuts down:
when that process ends (a crash, a kill, a shutdown), its kernel closes the connection at once,
and the follower probes the coordinator right away (`on_break`: a refused probe is a death at
once), so every follower starts the election together within milliseconds of the crash. Held
open it costs nothing (one idle socket per follower, no traffic). A cut cable or a stopped
process closes nothing: beats still find those. Owned by the election driver (driver.py).
"""
from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

import aiohttp
from yarl import URL

from network.wire.address import Address
from network.wire.paths import TETHER_PATH

log = logging.getLogger(__name__)

RETRY_S = 0.5  # after a break, hold again this soon (the election may have moved on meanwhile)
REFUSED_RETRY_S = 10.0  # after an answer other than the held stream (an older node, another key)
READ_BYTES = 1024


class TetherClient(Protocol):
    """What the tether needs from `FederationClient`: its peer session and request signing."""

    def session(self) -> aiohttp.ClientSession: ...

    def sign(self, node_id: str, method: str, url: URL, body: bytes) -> dict[str, str]: ...


class Tether:
    """Holds the tether to one peer at a time (`hold`); calls `on_break(node_id)` whenever a held
    tether ends or its host refuses the connection."""

    def __init__(self, client: TetherClient, on_break: Callable[[str], None], *,
                 connect_timeout_s: float = 0.5, retry_s: float = RETRY_S,
                 refused_retry_s: float = REFUSED_RETRY_S) -> None:
        self.client = client
        self.on_break = on_break
        self.connect_timeout_s = connect_timeout_s
        self.retry_s = retry_s
        self.refused_retry_s = refused_retry_s
        self.held: tuple[str, Address] | None = None
        self.open = False  # the held tether is open now
        self._task: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()
        self._closed = False

    def hold(self, node_id: str | None, address: Address | None) -> None:
        """Hold the tether to `node_id` at `address` from now on (None: to nobody), letting go
        of the one held before."""
        wanted = (node_id, address) if node_id is not None and address is not None else None
        if wanted == self.held or self._closed:
            return
        self._let_go()
        self.held = wanted
        if wanted is not None:
            self._task = asyncio.get_running_loop().create_task(self._run(*wanted),
                                                                name=f"tether-{wanted[0]}")

    async def close(self) -> None:
        """Let go of the held tether (for good) and wait for every task of it to end."""
        self._closed = True
        self._let_go()
        self.held = None
        await asyncio.gather(*list(self._ending), return_exceptions=True)

    def _let_go(self) -> None:
        task, self._task = self._task, None
        self.open = False
        if task is not None:
            task.cancel()
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)

    async def _run(self, node_id: str, address: Address) -> None:
        while True:
            outcome = await self._hold_once(node_id, address)
            self.open = False
            if outcome is None:
                await asyncio.sleep(self.refused_retry_s)
                continue
            if outcome:
                self.on_break(node_id)
            await asyncio.sleep(self.retry_s)

    async def _hold_once(self, node_id: str, address: Address) -> bool | None:
        """Hold one tether: True when it was open and ended, or the host refused the connection
        (the process may be gone); False when it could not open for a reason that says nothing
        of the process (a timeout, our own network); None when the peer answered otherwise."""
        url = URL(f"http://{address}{TETHER_PATH}")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s,
                                        sock_read=None)
        headers: Mapping[str, str] = self.client.sign(node_id, "GET", url, b"")
        try:
            async with self.client.session().get(url, headers=headers, timeout=timeout,
                                                 allow_redirects=False) as response:
                if response.status != 200:
                    log.debug("tether to %s refused: HTTP %d", node_id, response.status)
                    return None
                self.open = True
                while await response.content.read(READ_BYTES):
                    pass  # the coordinator sends nothing: the stream ends when its process does
            return True
        except aiohttp.ClientConnectorError as exc:
            return exc.os_error.errno == errno.ECONNREFUSED
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.debug("tether to %s: %s: %s", node_id, type(exc).__name__, exc)
            return self.open
