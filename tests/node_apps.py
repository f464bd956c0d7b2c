"""A whole node's app (OpenAI routes plus /v1/federation/*) over scripted instances, for the
OpenAPI, fuzzing and bounds tests; served by tests.server.ServerThread on 127.0.0.1:0."""
from __future__ import annotations

from aiohttp import web

from network.api import build_app
from network.federation_client import FederationClient
from network.federation_server import FederationRoutes
from network.identity import NodeIdentity
from network.membership import Membership
from network.route_forward import RouteForwarder
from network.signing import Verifier
from network.swarm_key import KeyRing
from swarm.config import ApiConfig, ConsensusConfig
from swarm.pool import InstancePool
from swarm.scripted import ScriptedBackend

KEYS = KeyRing.generate()  # the swarm key of the nodes built here (tests sign with it)


def scripted_pool(instances: int = 2, queue_depth: int = 4, **backend: object) -> InstancePool:
    """`instances` scripted backends answering a short sentence (options go to each backend)."""
    options = {"answers": ["Paris is the capital of France."], **backend}
    return InstancePool([ScriptedBackend(**options) for _ in range(instances)],  # type: ignore[arg-type]
                        queue_depth=queue_depth)


def federated_app(pool: InstancePool, api: ApiConfig | None = None,
                  consensus: ConsensusConfig | None = None,
                  node_id: str = "node-a") -> web.Application:
    """The app `main.py --federation` serves, without discovery: a peer table with no peers
    (so route requests are never forwarded, but a forwarded one's signature is checked)."""
    verifier = Verifier(KEYS)  # one replay cache for votes, cancels and forwards, as in main.py
    forwarder = RouteForwarder(pool, FederationClient(keys=KEYS), node_id, lambda: [],
                               verifier=verifier)
    app = build_app(pool, api or ApiConfig(), consensus, forwarder=forwarder)
    routes = FederationRoutes(NodeIdentity(node_id, "boot1", "host"), pool,
                              Membership(node_id, 1, ""), api_port_getter=lambda: 17615,
                              hardware={"ram_gb": 8.0, "vram_gb": 0.0},
                              verifier=verifier)
    routes.add_to(app)
    return app
