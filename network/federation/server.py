"""The federation routes: health (heartbeat), peers (the table), election (the coordinator
election's messages) and plan (the coordinator's swarm plan), plus vote (one candidate) and cancel,
served by vote_routes.py's `VoteRoutes`, and tether (held open by followers) by tether_routes.py.

Vote, cancel and election carry prompts or change state: they need a request signed with the
swarm key (network/trust/signing.py) and their answers are signed back. The heartbeat is signed over the
caller's nonce (with the key the caller names in X-Swarm-Key-Id when this node accepts it, else
the current one); without a nonce it is an unsigned read-only view, as is the peer table. The plan
is signed back when the request is signed, else an unsigned read-only view. Verifying, reading
and decoding requests, and signing answers, is network/federation/gate.py's.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from network.coordination.election import Message, Role
from network.federation.gate import VERDICT_KEY, FederationGate, reply_kind, signed_response
from network.federation.tether_routes import TetherRoutes
from network.federation.vote_routes import VoteRoutes
from network.membership.rows import check_filters, peer_row, row_passes, self_row
from network.membership.table import Membership
from network.trust.identity import NodeIdentity
from network.trust.signing import KEY_ID_HEADER, Verifier, sign_reply
from network.trust.swarm_key import KeyRing
from network.wire import codec
from network.wire.election import MAX_REPLY_MESSAGES, ElectionEnvelope, ElectionReply, SwarmPlan
from network.wire.fields import MAX_NONCE_CHARS, NONCE_PATTERN
from network.wire.messages import CAPABILITIES, Heartbeat
from network.wire.paths import ELECTION_PATH, HEALTH_PATH, PEERS_PATH, PLAN_PATH
from swarm.engine.pool import InstancePool
from swarm.errors import RequestError

__all__ = ["CAPABILITIES", "NONCE_PATTERN", "VERDICT_KEY", "FederationRoutes", "reply_kind"]

log = logging.getLogger(__name__)


class Election(Protocol):
    """What the routes need from the election (network/coordination/driver.Coordinator)."""

    @property
    def role(self) -> Role:
        """FOLLOWER, CANDIDATE or COORDINATOR."""
        ...

    def election_view(self) -> tuple[int, str | None, int | None, bool]:
        """(term, coordinator followed, configured priority, solo), as the heartbeat tells them."""
        ...

    def plan_revision(self) -> str:
        """The revision of the plan it publishes while it leads ("" otherwise)."""
        ...

    async def handle(self, message: Message) -> Sequence[Message]:
        """One verified Claim, Ack or Announce; the messages to answer with."""
        ...

    def plan(self) -> SwarmPlan | None:
        """The swarm plan this node publishes (None unless it leads)."""
        ...


class Member(Protocol):
    """This node as the swarm sees it (network/federation/node.Federation)."""

    @property
    def identity(self) -> NodeIdentity:
        """Its node id, boot id and swarm-key fingerprint."""
        ...

    @property
    def membership(self) -> Membership:
        """The peer table."""
        ...

    @property
    def api_port(self) -> int:
        """The port its API listens on (known once it listens)."""
        ...

    @property
    def bench_score(self) -> float:
        """Its first-run benchmark score (0 when not measured)."""
        ...

    @property
    def election(self) -> Election | None:
        """The election it takes part in (None: it answers election messages with 503)."""
        ...

    def discovery_status(self) -> Mapping[str, Any]:
        """What `main.py peers` needs to explain a missing peer."""
        ...


class SpanOffer(Protocol):
    """What the heartbeat tells of this node's layer spans (network/petals/service.SpanService)."""

    @property
    def span_blocks(self) -> int:
        """How many transformer blocks this node may serve (0: none)."""
        ...

    def peer_id(self) -> str:
        """Its span server's hivemind peer id while it serves, else ""."""
        ...


class FederationRoutes:
    """GET /v1/federation/health, /peers and /plan; POST /v1/federation/vote, /cancel and
    /election, for the node `member` with the instances of `pool`, `ram_gb`/`vram_gb` of memory
    and, with --spans, the span capacity of `spans` (all advertised in the heartbeat)."""

    def __init__(self, member: Member, pool: InstancePool, *, ram_gb: float = 0.0,
                 vram_gb: float = 0.0, verifier: Verifier | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 max_body_bytes: int = codec.MAX_BYTES,
                 pairing: Callable[[], str] = str, spans: SpanOffer | None = None) -> None:
        self.member = member
        self.pairing = pairing  # the advertised pairing state (network/federation/pairing.py)
        self.spans = spans
        self.identity = member.identity
        self.membership = member.membership
        # Without a verifier the node holds a random key nobody shares: closed, never open.
        self.verifier = verifier or Verifier(KeyRing.generate(), audience=self.identity.node_id)
        self.pool = pool
        self.ram_gb = ram_gb
        self.vram_gb = vram_gb
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.gate = FederationGate(self.verifier, max_body_bytes)
        self.votes = VoteRoutes(self.gate, pool, self.identity.node_id)
        self.tethers = TetherRoutes(self.gate)

    def add_to(self, app: web.Application) -> None:
        """Register the seven routes (vote and cancel through `VoteRoutes`, tether through
        `TetherRoutes`), and the shutdown steps that cancel votes and end tethers."""
        app.router.add_get(HEALTH_PATH, self.health)
        app.router.add_get(PEERS_PATH, self.peers)
        app.router.add_get(PLAN_PATH, self.plan_view)
        app.router.add_post(ELECTION_PATH, self.election_message)
        self.votes.add_to(app)
        self.tethers.add_to(app)

    def heartbeat(self, nonce: str | None = None, swarm: str | None = None) -> Heartbeat:
        """This node's heartbeat now; `swarm` is the fingerprint it is signed with (default: the
        current key's)."""
        election = self.member.election
        term, coordinator, priority, solo = (election.election_view() if election
                                             else (0, None, 0, False))
        return Heartbeat(
            node_id=self.identity.node_id, boot_id=self.identity.boot_id,
            protocol=self.identity.protocol, api_port=self.member.api_port,
            swarm=swarm or self.verifier.keys.fingerprint, model_id=self.pool.model_id,
            instances=len(self.pool.instances), load=self.pool.load(),
            queue_depth=self.pool.queue_depth(), capabilities=CAPABILITIES,
            bench_score=self.member.bench_score, ram_gb=self.ram_gb, vram_gb=self.vram_gb,
            term=term, coordinator=coordinator, priority=priority, solo=solo, nonce=nonce,
            plan=election.plan_revision() if election else "",
            suspects=self.membership.suspects(self.clock()),
            pairing=self.pairing(), tok_s=round(self.pool.tok_s(), 2), tokens=self.pool.tokens(),
            span_blocks=self.spans.span_blocks if self.spans else 0,
            span_peer=self.spans.peer_id() if self.spans else "")

    async def health(self, request: web.Request) -> web.Response:
        """GET /v1/federation/health?nonce=ID: the heartbeat, msgpack if Accept asks for it;
        signed over the nonce when one is given."""
        nonce = request.query.get("nonce")
        if nonce is not None and NONCE_PATTERN.fullmatch(nonce) is None:
            raise RequestError(f"nonce must be 1 to {MAX_NONCE_CHARS} URL-safe characters "
                               "(letters, digits, -._~:)", param="nonce", code="invalid_value")
        kind = reply_kind(request.headers.get("Accept"))
        if nonce is None:
            return web.Response(body=codec.encode(self.heartbeat(), kind), content_type=kind)
        keys = self.verifier.keys
        key = keys.get(request.headers.get(KEY_ID_HEADER)) or keys.current
        body = codec.encode(self.heartbeat(nonce, key.fingerprint), kind)
        return web.Response(body=body, content_type=kind, headers=sign_reply(key, nonce, body))

    def rows(self, local_address: str | None) -> list[dict[str, Any]]:
        """This node (marked self) and every tracked peer, as `/v1/federation/peers` rows."""
        now = self.clock()
        return [self_row(self.heartbeat(), local_address),
                *(peer_row(p, now) for p in self.membership.peers())]

    async def peers(self, request: web.Request) -> web.Response:
        """GET /v1/federation/peers: this node (marked self) and every tracked peer, filtered."""
        check_filters(request.query)
        sock = request.transport.get_extra_info("sockname") if request.transport else None
        rows = self.rows(sock[0] if sock else None)
        return web.json_response({"object": "list", "node_id": self.identity.node_id,
                                  **self.election_status(),
                                  "discovery": dict(self.member.discovery_status()),
                                  "data": [r for r in rows if row_passes(r, request.query)]})

    def election_status(self) -> dict[str, Any]:
        """This node's term, the coordinator it follows, its role (None without an election) and
        whether it leads only itself (solo)."""
        election = self.member.election
        if election is None:
            return {"term": None, "coordinator": None, "role": None, "solo": False}
        term, coordinator, _priority, solo = election.election_view()
        return {"term": term, "coordinator": coordinator, "role": election.role.value,
                "solo": solo}

    async def election_message(self, request: web.Request) -> web.Response:
        """POST /v1/federation/election: one signed Claim, Ack or Announce; the answer is an
        ElectionReply (signed, msgpack when Accept asks for it, else the request's format)."""
        kind, envelope, verdict = await self.gate.decode(request, ElectionEnvelope)
        election = self.member.election
        if election is None:
            raise RequestError("this node takes no part in the coordinator election", status=503,
                               code="no_election", type_="server_error")
        try:
            replies = tuple(await election.handle(envelope.message))
        except Exception as exc:
            log.warning("election %s from %s failed: %r", type(envelope.message).__name__,
                        request.remote, exc)
            raise RequestError(f"election failed: {type(exc).__name__}", status=500,
                               code="election_failed", type_="server_error") from None
        if len(replies) > MAX_REPLY_MESSAGES:
            log.warning("election answer of %d messages cut to %d", len(replies),
                        MAX_REPLY_MESSAGES)
            replies = replies[:MAX_REPLY_MESSAGES]
        if reply_kind(request.headers.get("Accept")) == codec.MSGPACK:
            kind = codec.MSGPACK
        return signed_response(codec.encode(ElectionReply(replies), kind), kind, verdict)

    async def plan_view(self, request: web.Request) -> web.Response:
        """GET /v1/federation/plan: the coordinator's plan (msgpack when Accept asks for it);
        verified and signed back when the request is signed, else an unsigned view; 503 while
        there is none."""
        verdict = await self.gate.optional(request)
        election = self.member.election
        plan = election.plan() if election is not None else None
        if plan is None:
            raise RequestError("no coordinator plan yet (this node does not lead, or no "
                               "coordinator is elected)", status=503, code="no_plan",
                               type_="server_error")
        kind = reply_kind(request.headers.get("Accept"))
        body = codec.encode(plan, kind)
        if verdict is not None:
            return signed_response(body, kind, verdict)
        return web.Response(body=body, content_type=kind)
