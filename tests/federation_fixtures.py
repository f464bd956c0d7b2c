"""Federation nodes and wire values shared by the federation tests: real aiohttp servers on
127.0.0.1 (ephemeral ports) over scripted pools, in the test's own event loop."""
from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from network.api.app import build_app
from network.coordination.election import Ack, Candidate, Claim, Message, Role
from network.federation.server import FederationRoutes
from network.membership.table import Membership
from network.trust.identity import NodeIdentity
from network.trust.signing import Verifier
from network.trust.swarm_key import KeyRing
from network.wire import codec
from network.wire.election import PlanMember, SwarmPlan
from network.wire.votes import VoteRequest
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.node.config import ApiConfig
from tests.swarm_keys import RING

SLOW = " ".join(["word"] * 400)  # 400 tokens at 20 ms each: runs until cancelled
ASK = GenerationRequest(messages=(ChatMessage("user", "Capital of France?"),),
                        params=SamplingParams(max_tokens=500, temperature=0.0))
CLAIM = Claim(4, Candidate("node-b", 0, 3.0))
PLAN = SwarmPlan(term=4, coordinator="node-a", issued_at=1.7e9,
                 members=(PlanMember("node-a", 12.5, 0.0, 0, 1, 1.0),
                          PlanMember("node-b", 3.0, 0.5, 1, 1, 0.24)),
                 consensus=("node-a", "node-b"))


async def until(predicate: Callable[[], bool], within_s: float = 5.0,
                what: str = "condition") -> None:
    """Wait for `predicate()` under a deadline (a condition, not a fixed sleep).

    It polls because the states awaited (an instance's `active` count, a backend's request log)
    are plain attributes set from worker threads, with no event to await.
    """
    try:
        async with asyncio.timeout(within_s):
            while not predicate():  # noqa: ASYNC110 - no event exists for these states
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out after {within_s}s waiting for {what}") from None


ElectionView = tuple[int, str | None, int | None, bool]


@dataclass
class ScriptedElection:
    """An `Election` (network/federation/server.py) that answers as told: `handler` answers each
    message (none: nothing), `current_plan` is the plan it publishes, `view` its (term,
    coordinator, priority, solo), and `given_role` its role (derived from the view when None)."""

    node_id: str
    handler: Callable[[Message], Awaitable[Sequence[Message]]] | None = None
    current_plan: Callable[[], SwarmPlan | None] | None = None
    view: ElectionView = (0, None, 0, False)
    given_role: Role | None = None

    @property
    def role(self) -> Role:
        if self.given_role is not None:
            return self.given_role
        return Role.COORDINATOR if self.view[1] == self.node_id else Role.FOLLOWER

    def election_view(self) -> ElectionView:
        return self.view

    async def handle(self, message: Message) -> Sequence[Message]:
        return await self.handler(message) if self.handler is not None else []

    def plan(self) -> SwarmPlan | None:
        return self.current_plan() if self.current_plan is not None else None

    def plan_revision(self) -> str:
        plan = self.plan()
        return plan.revision if plan is not None else ""


@dataclass
class StaticMember:
    """A `Member` (network/federation/server.py) with fixed values, for routes served alone."""

    identity: NodeIdentity
    membership: Membership
    api_port: int = 0
    bench_score: float = 0.0
    election: ScriptedElection | None = None
    discovery: Mapping[str, Any] = field(default_factory=dict)

    def discovery_status(self) -> Mapping[str, Any]:
        return self.discovery


def scripted_election(node_id: str, election: Any = None, plan: Any = None,
                      election_view: ElectionView | None = None,
                      election_role: Role | None = None) -> ScriptedElection | None:
    """The election of a test node from the parts a test gives (None when it gives none)."""
    if election is None and plan is None and election_view is None and election_role is None:
        return None
    return ScriptedElection(node_id, election, plan, election_view or (0, None, 0, False), election_role)


@dataclass
class Node:
    """One served node: its URL, port, routes, pool and the member they serve."""

    url: str
    port: int
    routes: FederationRoutes
    pool: InstancePool
    runner: web.AppRunner
    member: StaticMember
    stopped: bool = False

    async def stop(self) -> None:
        """Stop serving (idempotent): running votes are cancelled, connections closed."""
        if not self.stopped:
            self.stopped = True
            await self.runner.cleanup()


@asynccontextmanager
async def federation_node(pool: InstancePool, membership: Membership | None = None, *,
                          node_id: str = "node-a", clock: Callable[[], float] = lambda: 100.0,
                          keys: KeyRing = RING, middlewares: Sequence[Any] = (),
                          election: Any = None, plan: Any = None,
                          election_view: ElectionView | None = None) -> AsyncIterator[Node]:
    """The full API app (plus `middlewares`, inside its own) and FederationRoutes (holding
    `keys`; with a `ScriptedElection` of `election`, `plan` and `election_view` when any is
    given), served on 127.0.0.1:0 in this event loop."""
    app = build_app(pool, ApiConfig())
    app.middlewares.extend(middlewares)
    member = StaticMember(NodeIdentity(node_id, "boot1", "host", fingerprint=keys.fingerprint),
                          membership or Membership(node_id, 1, keys.fingerprint),
                          bench_score=12.5,
                          election=scripted_election(node_id, election, plan, election_view))
    routes = FederationRoutes(member, pool, ram_gb=24.0, vram_gb=0.0, clock=clock,
                              verifier=Verifier(keys, audience=node_id))
    routes.add_to(app)
    runner = web.AppRunner(app, shutdown_timeout=0.5, handler_cancellation=True)  # as main.py
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    member.api_port = runner.addresses[0][1]
    node = Node(f"http://127.0.0.1:{member.api_port}", member.api_port, routes, pool, runner,
                member)
    try:
        yield node
    finally:
        await node.stop()


@asynccontextmanager
async def scripted_node(*texts: str, **backend: Any) -> AsyncIterator[Node]:
    """A federation node over one scripted instance answering `texts` (no queue: a second
    concurrent vote is busy); `backend` are ScriptedBackend options."""
    pool = InstancePool([ScriptedBackend(list(texts), **backend)], queue_depth=0)
    async with federation_node(pool) as served:
        yield served


def node_fixture(*texts: str, **backend: Any) -> Any:
    """A pytest fixture serving `scripted_node(*texts, **backend)`; bind it to the fixture's
    name in the test module (`node = node_fixture("Paris.")`)."""

    @pytest.fixture()
    async def served_node() -> AsyncIterator[Node]:
        async with scripted_node(*texts, **backend) as served:
            yield served

    return served_node


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[int]:
    """Serve `app` on 127.0.0.1:0 and give its port."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vote_body(request_id: str = "r1", kind: str = codec.MSGPACK, **fields: object) -> bytes:
    """An encoded VoteRequest asking the capital of France (max_tokens 500 unless given)."""
    message = VoteRequest(request_id=request_id, messages=(("user", "Capital of France?"),),
                          max_tokens=fields.pop("max_tokens", 500), **fields)  # type: ignore[arg-type]
    return codec.encode(message, kind)


class Voter:
    """An election handler that records what it hears and refuses every claim."""

    def __init__(self, extra: int = 0) -> None:
        self.heard: list[Message] = []
        self.extra = extra  # more (pointless) messages to answer with

    async def __call__(self, message: Message) -> list[Message]:
        self.heard.append(message)
        if not isinstance(message, Claim):
            return []
        ack = Ack(message.term, "node-a", message.candidate.node_id, False, 7)
        return [ack] * (1 + self.extra)
