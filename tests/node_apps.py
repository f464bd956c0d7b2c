"""A whole node's app (OpenAI routes plus /v1/federation/*) over scripted instances, for the
OpenAPI, fuzzing and bounds tests; served by tests.server.ServerThread on 127.0.0.1:0."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from network.api.app import build_app
from network.coordination.election import Ack, Claim, Message
from network.federation.client import FederationClient
from network.federation.forwarding import RouteForwarder
from network.federation.join_routes import JoinRoutes
from network.federation.node import Federation
from network.federation.pairing import Pairing
from network.federation.server import FederationRoutes
from network.federation.sources import SwarmSources
from network.membership.table import Membership
from network.trust.approval import ApprovalRoutes, ApprovedPeers
from network.trust.identity import NodeIdentity
from network.trust.signing import Verifier
from network.trust.swarm_key import KeyRing, LoadedKeys
from network.wire.election import PlanMember, SwarmPlan
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.node.config import ApiConfig, ConsensusConfig, FederationConfig
from tests.federation_fixtures import ScriptedElection, StaticMember

KEYS = KeyRing.generate()  # the swarm key of the nodes built here (tests sign with it)


def refusing_voter(node_id: str) -> Callable[[Message], Awaitable[list[Message]]]:
    """An election handler that refuses every claim (and ignores acks and announces)."""

    async def election(message: Message) -> list[Message]:
        if isinstance(message, Claim):
            return [Ack(message.term, node_id, message.candidate.node_id, False, message.term)]
        return []

    return election


def solo_plan(node_id: str) -> SwarmPlan:
    """The plan of a coordinator alone in its swarm."""
    return SwarmPlan(term=1, coordinator=node_id, issued_at=1.7e9,
                     members=(PlanMember(node_id, score=10.0, instances=2, weight=1.0),),
                     consensus=(node_id,))


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
    forwarder = RouteForwarder(SwarmSources(pool), FederationClient(keys=KEYS), node_id,
                               verifier=verifier)
    app = build_app(pool, api or ApiConfig(), consensus, forwarder=forwarder, verifier=verifier)
    membership = Membership(node_id, 1, "")
    election = ScriptedElection(node_id, refusing_voter(node_id), lambda: solo_plan(node_id),
                                (1, node_id, 0, False))
    member = StaticMember(NodeIdentity(node_id, "boot1", "host"), membership, api_port=17615,
                          election=election)
    routes = FederationRoutes(member, pool, ram_gb=8.0, vram_gb=0.0, verifier=verifier)
    routes.add_to(app)
    pairing = Pairing(Federation(FederationConfig(enabled=True, mdns=False),
                                 NodeIdentity(node_id, "boot1", "host", fingerprint=KEYS.fingerprint),
                                 keys=KEYS, pool=pool, addresses=[], hardware="", bench_score=0.0),
                      verifier, LoadedKeys(KEYS, "configured", Path("unused") / "swarm.key"),
                      FederationConfig())
    JoinRoutes(pairing).add_to(app)
    ApprovalRoutes(ApprovedPeers(), membership.get,  # approvals kept in memory
                   joins=pairing.decide).add_to(app)
    return app
