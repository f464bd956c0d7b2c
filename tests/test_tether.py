"""The tether (network/coordination/tether.py, network/federation/tether_routes.py): a follower's
held GET to its coordinator breaks the moment the coordinator's process ends, on real sockets
(127.0.0.1 only): a SIGKILLed process, a shutdown, a refused connection; never on an answer
that only says "not here"."""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from network.coordination.tether import Tether
from network.federation import tether_routes
from network.federation.client import FederationClient
from network.wire.address import Address
from network.wire.paths import TETHER_PATH
from tests.federation_fixtures import Node, node_fixture, until
from tests.swarm_keys import OTHER_KEY, RING, signed

ROOT = Path(__file__).resolve().parent.parent
node = node_fixture("Paris.")

# A coordinator stand-in in its own process: the tether route only, on 127.0.0.1.
SERVE = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from aiohttp import web
from network.api.errors import error_middleware
from network.federation.gate import FederationGate
from network.federation.tether_routes import TetherRoutes
from network.trust.signing import Verifier
from tests.swarm_keys import RING

async def main():
    app = web.Application(middlewares=[error_middleware])
    TetherRoutes(FederationGate(Verifier(RING, audience="node-k"), 1 << 20)).add_to(app)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(runner.addresses[0][1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class Breaks:
    """`on_break` calls, with their time; awaitable."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str]] = []
        self.event = asyncio.Event()

    def __call__(self, node_id: str) -> None:
        self.seen.append((time.monotonic(), node_id))
        self.event.set()

    async def next(self, within_s: float) -> tuple[float, str]:
        async with asyncio.timeout(within_s):
            await self.event.wait()
        self.event.clear()
        return self.seen[-1]


@pytest.fixture()
async def client() -> AsyncIterator[FederationClient]:
    peers = FederationClient(keys=RING)
    yield peers
    await peers.close()


async def test_a_killed_coordinator_breaks_the_tether_at_once(client: FederationClient) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVE, str(ROOT),
                                                stdout=subprocess.PIPE, cwd=ROOT)
    breaks = Breaks()
    tether = Tether(client, breaks)
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(proc.stdout.readline(), 60))
        tether.hold("node-k", Address("127.0.0.1", port))
        await until(lambda: tether.open, 10.0, "the tether to open")
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        at, who = await breaks.next(5.0)
        assert who == "node-k"
        print(f"\nSIGKILL -> tether broke in {(at - killed) * 1000:.1f} ms")
    finally:
        await tether.close()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_shutdown_ends_held_tethers_and_the_next_hold_goes_elsewhere(
        node: Node, client: FederationClient) -> None:
    breaks = Breaks()
    tether = Tether(client, breaks, retry_s=0.05)
    try:
        tether.hold("node-a", Address("127.0.0.1", node.port))
        await until(lambda: tether.open and len(node.routes.tethers.held) == 1, 5.0, "holding")
        await node.stop()  # on_shutdown ends the stream, then the port refuses
        assert (await breaks.next(5.0))[1] == "node-a"
        tether.hold(None, None)
        assert tether.held is None and not tether.open
    finally:
        await tether.close()
    tether.hold("node-a", Address("127.0.0.1", node.port))  # closed for good: holds nothing
    assert tether.held is None


async def test_letting_go_is_no_break(node: Node, client: FederationClient) -> None:
    breaks = Breaks()
    tether = Tether(client, breaks)
    tether.hold("node-a", Address("127.0.0.1", node.port))
    await until(lambda: len(node.routes.tethers.held) == 1, 5.0, "holding")
    tether.hold(None, None)
    await until(lambda: not node.routes.tethers.held, 5.0, "the server to see it go")
    await tether.close()
    assert breaks.seen == []


async def test_a_refused_connection_is_a_break_an_http_refusal_is_not(
        client: FederationClient) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]  # nothing listens there once it closes
    breaks = Breaks()
    tether = Tether(client, breaks, retry_s=10.0)
    tether.hold("gone", Address("127.0.0.1", closed_port))
    assert (await breaks.next(5.0))[1] == "gone"
    await tether.close()

    hits: list[str] = []

    async def not_here(request: web.Request) -> web.Response:
        hits.append(request.path)
        raise web.HTTPNotFound()

    app = web.Application()  # an older node: no tether route, 404
    app.router.add_get("/{tail:.*}", not_here)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    old = Breaks()
    tether = Tether(client, old, refused_retry_s=0.01)
    try:
        tether.hold("older", Address("127.0.0.1", runner.addresses[0][1]))
        await until(lambda: len(hits) >= 3, 5.0, "three refused holds")
        assert hits[0] == TETHER_PATH and old.seen == [] and not tether.open
    finally:
        await tether.close()
        await runner.cleanup()


async def test_the_route_needs_the_swarm_key_and_is_bounded(
        node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(node.url + TETHER_PATH) as r:
            assert r.status == 401 and (await r.json())["error"]["code"] == "missing_signature"
        headers = signed(TETHER_PATH, b"", OTHER_KEY, method="GET")
        async with http.get(node.url + TETHER_PATH, headers=headers) as r:
            assert r.status == 403
        monkeypatch.setattr(tether_routes, "MAX_TETHERS", 1)
        first = await http.get(node.url + TETHER_PATH,
                               headers=signed(TETHER_PATH, b"", method="GET"))
        try:
            assert first.status == 200
            async with http.get(node.url + TETHER_PATH,
                                headers=signed(TETHER_PATH, b"", method="GET")) as r:
                assert r.status == 429 and (await r.json())["error"]["code"] == "rate_limited"
        finally:
            first.close()
        await until(lambda: not node.routes.tethers.held, 5.0, "the held tether to end")
        async with http.get(node.url + "/v1/models") as r:  # the node keeps serving
            assert r.status == 200
