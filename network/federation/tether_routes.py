"""The tether route: GET /v1/federation/tether, held open by followers (network/coordination/
tether.py) and never answered while this node runs. When its process ends, its kernel closes
every such connection at once, which is how followers see a crash within milliseconds; a
shutdown ends them first. It needs a request signed with the swarm key, and holds at most
`MAX_TETHERS` (one per possible peer); past that, 429.
"""
from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from network.federation.gate import FederationGate
from network.membership.roster import MAX_PEERS
from network.wire.paths import TETHER_PATH
from swarm.errors import RequestError

MAX_TETHERS = MAX_PEERS
CHECK_S = 30.0  # a held tether whose client went away is let go within this long at the latest


class TetherRoutes:
    """Holds followers' tethers until this node shuts down."""

    def __init__(self, gate: FederationGate) -> None:
        self.gate = gate
        self.held: set[asyncio.Event] = set()  # one per open tether: set to end it

    def add_to(self, app: web.Application) -> None:
        """Register the route, and the shutdown step that ends every held tether."""
        app.router.add_get(TETHER_PATH, self.tether)
        app.on_shutdown.append(self._shutdown)

    async def tether(self, request: web.Request) -> web.StreamResponse:
        """GET /v1/federation/tether: a 200 whose body never comes; it ends with this process."""
        await self.gate.require(request)
        if len(self.held) >= MAX_TETHERS:
            raise RequestError(f"{MAX_TETHERS} tethers are held here already", status=429,
                               code="rate_limited", headers={"Retry-After": "10"})
        end = asyncio.Event()
        self.held.add(end)
        try:
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream",
                                                   "Cache-Control": "no-store"})
            await response.prepare(request)
            while not end.is_set():  # shutdown sets `end`; a disconnect cancels this handler
                transport = request.transport  # (or, without handler cancellation, is seen here)
                if transport is None or transport.is_closing():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(end.wait(), CHECK_S)
            return response
        finally:
            self.held.discard(end)

    async def _shutdown(self, _app: web.Application) -> None:
        for end in self.held:
            end.set()
