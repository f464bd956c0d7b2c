"""Two route-mode nodes on 127.0.0.1 for the forwarding tests (tests/test_route_forward.py,
tests/test_api_auth.py): node B, idle, answers 'from-b' and checks the signatures of forwarded
requests; node A, one slow instance, may forward to B."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx
from aiohttp import web

from network.api.app import build_app
from network.federation.client import FederationClient
from network.federation.forwarding import RouteForwarder
from network.federation.sources import RemoteSource, SwarmSources
from network.trust.signing import Verifier
from network.trust.swarm_key import KeyRing
from network.wire.address import Address
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.node.config import ApiConfig
from tests.server import ServerThread, wait_until
from tests.swarm_keys import RING

ASK = {"messages": [{"role": "user", "content": "hi"}]}


def receiver(pool: InstancePool, api: ApiConfig) -> web.Application:
    """A swarm node with no peers of its own: it checks forwarded requests' signatures."""
    forwarder = RouteForwarder(SwarmSources(pool), FederationClient(), "node-b",
                               verifier=Verifier(RING, audience="node-b"))
    return build_app(pool, api, forwarder=forwarder)


class ForwardPair:
    """B and A serving `api`; A signs its forwards with `a_keys`, B accepts only `RING`.
    `forwarder` is A's, set once A's app is built."""

    def __init__(self, api: ApiConfig, a_keys: KeyRing = RING) -> None:
        pool_b = InstancePool([ScriptedBackend(["from-b"])])
        self.server_b = ServerThread(lambda: receiver(pool_b, api)).start()
        b = urlsplit(self.server_b.url)
        assert b.hostname is not None and b.port is not None
        self.b_address = Address(b.hostname, b.port)
        self.peers: list[RemoteSource] = []
        self.plan: list[str] | None = None  # the node ids a coordinator's plan picks, if any
        self.pool_a = InstancePool([ScriptedBackend(["slow " * 200], token_latency_s=0.02)],
                                   queue_depth=4)
        self.forwarder: RouteForwarder | None = None
        self.server_a = ServerThread(lambda: self._make_a(api, a_keys)).start()

    def _make_a(self, api: ApiConfig, a_keys: KeyRing) -> web.Application:
        client = FederationClient(keys=a_keys)
        self.peers = [RemoteSource("node-b", self.b_address, client)]
        sources = SwarmSources(self.pool_a, lambda: self.peers, lambda: self.plan)
        self.forwarder = RouteForwarder(sources, client, "node-a",
                                        verifier=Verifier(RING, audience="node-a"))

        async def close_client(_app: web.Application) -> None:
            await client.close()

        app = build_app(self.pool_a, api, forwarder=self.forwarder)
        app.on_cleanup.append(close_client)
        return app

    @property
    def forwarded(self) -> int:
        """Requests A has forwarded."""
        assert self.forwarder is not None
        return self.forwarder.forwarded

    @contextmanager
    def a_busy(self, http: httpx.Client) -> Iterator[None]:
        """A's only instance busy with a streamed request (through `http`) while the block runs."""
        with http.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as busy:
            busy_lines = busy.iter_lines()  # keep it referenced: a collected iterator disconnects
            next(busy_lines)
            wait_until(lambda: self.pool_a.instances[0].active == 1, what="A to be busy")
            yield

    def stop(self) -> None:
        self.server_a.stop()
        self.server_b.stop()

