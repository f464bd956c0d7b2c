"""FederationClient against real federation servers on 127.0.0.1 (and misbehaving fakes)."""
from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from network.coordination.election import Ack, Announce, Candidate, Claim
from network.federation.client import FederationClient, PeerError, peer_url
from network.membership.monitor import PeerMonitor
from network.membership.table import Membership, Timings
from network.trust.identity import NodeIdentity
from network.trust.signing import NONCE_HEADER, sign_reply
from network.wire import codec
from network.wire.address import Address
from network.wire.election import ElectionEnvelope, ElectionReply, SwarmPlan
from network.wire.messages import Heartbeat
from network.wire.votes import VoteReply
from swarm.engine.backend import GenerationRequest
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from tests.federation_fixtures import (
    ASK,
    CLAIM,
    PLAN,
    SLOW,
    Node,
    Voter,
    closed_port,
    federation_node,
    node_fixture,
    serve,
    until,
)
from tests.swarm_keys import KEY, OTHER, RING


@pytest.fixture()
async def client() -> AsyncIterator[FederationClient]:
    federation = FederationClient(close_grace_s=0.05, keys=RING)
    yield federation
    await federation.close()


@pytest.fixture()
async def prober(client) -> AsyncIterator[PeerMonitor]:
    """The heartbeat prober of node "me", on the client's session (one session per node)."""
    timings = Timings()
    monitor = PeerMonitor(Membership("me", 1, RING.fingerprint, timings=timings),
                          NodeIdentity("me", "boot1", "host", fingerprint=RING.fingerprint),
                          timings, keys=RING, on_change=lambda _change: None,
                          session=client.session)
    await monitor.start()
    yield monitor
    await monitor.close()
    assert not client.session().closed  # the monitor leaves the shared session to its owner


node = node_fixture("Paris.", logprob=-0.5)
slow_node = node_fixture(SLOW, token_latency_s=0.02)  # one vote runs until cancelled


async def test_vote_returns_the_peers_completion(node, client):
    completion = await client.vote("127.0.0.1", node.port, "node-a", ASK, "v-1", timeout_s=10)
    assert completion.text == "Paris." and completion.logprobs == (-0.5,)
    assert completion.finish_reason == "stop" and completion.completion_tokens == 1
    assert node.pool.instances[0].backend.requests[0].params == ASK.params


async def test_a_probe_on_the_shared_session_gets_the_signed_heartbeat(node, prober):
    beat = await prober.probe(Address("127.0.0.1", node.port))
    assert (beat.node_id, beat.api_port) == ("node-a", node.port) and beat.nonce


async def test_cancelling_the_awaiting_task_cancels_the_vote_on_the_peer(slow_node, client):
    backend = slow_node.pool.instances[0].backend
    vote = asyncio.create_task(client.vote("127.0.0.1", slow_node.port, "node-a", ASK, "c-9", 30))
    await until(lambda: bool(backend.requests), what="the peer to start generating")
    vote.cancel()
    with pytest.raises(asyncio.CancelledError):
        await vote
    await client.drain()
    await until(lambda: slow_node.pool.instances[0].active == 0, what="the peer's instance freed")
    assert backend.cancelled == 1 and not slow_node.routes.votes.running


async def test_a_vote_timeout_is_a_peer_error_and_cancels_on_the_peer(slow_node, client):
    with pytest.raises(PeerError, match="timed out") as caught:
        await client.vote("127.0.0.1", slow_node.port, "node-a", ASK, "t-1", timeout_s=0.2)
    assert caught.value.node_id == "node-a" and isinstance(caught.value.__cause__, TimeoutError)
    await client.drain()
    await until(lambda: slow_node.pool.instances[0].active == 0, what="the peer's instance freed")


async def test_a_dead_address_is_a_peer_error_fast(client, prober):
    port = closed_port()
    started = time.perf_counter()
    with pytest.raises(PeerError) as caught:
        await client.vote("127.0.0.1", port, "ghost", ASK, "d-1", timeout_s=30)
    with pytest.raises(PeerError, match="connect failed"):
        await prober.probe(Address("127.0.0.1", port))
    assert time.perf_counter() - started < 1.0
    assert caught.value.node_id == "ghost" and caught.value.__cause__ is not None


async def test_a_busy_peer_is_a_peer_error_with_its_status(slow_node, client):
    first = asyncio.create_task(client.vote("127.0.0.1", slow_node.port, "node-a", ASK, "b-1", 30))
    await until(lambda: slow_node.pool.instances[0].active == 1, what="the first vote")
    with pytest.raises(PeerError, match="busy") as caught:
        await client.vote("127.0.0.1", slow_node.port, "node-a", ASK, "b-2", timeout_s=10)
    assert caught.value.status == 429
    assert await client.cancel("127.0.0.1", slow_node.port, "node-a", "b-1")
    with pytest.raises(PeerError) as cancelled:
        await first
    assert cancelled.value.status == 409


@pytest.fixture()
async def liar() -> AsyncIterator[int]:
    """A fake peer with the swarm key (it signs what it says): garbage votes, replies for other
    requests, wrong nonces, and a hung cancel."""

    def answer(body: bytes, nonce: str) -> web.Response:
        return web.Response(body=body, content_type=codec.MSGPACK,
                            headers=sign_reply(KEY, nonce, body))

    async def vote(request: web.Request) -> web.Response:
        body = await request.read()
        nonce = request.headers[NONCE_HEADER]
        if b"garbage" in body:
            return answer(b"\xc1nonsense", nonce)
        if b"hang" in body:
            await asyncio.Event().wait()
        reply = VoteReply(request_id="someone-else", text="x", logprobs=(-1.0,),
                          finish_reason="stop", prompt_tokens=1, completion_tokens=1,
                          latency_s=0.0, node_id="liar")
        return answer(codec.encode(reply), nonce)

    async def health(request: web.Request) -> web.Response:
        beat = Heartbeat(node_id="liar", boot_id="b", protocol=1, api_port=1, nonce="stale")
        return answer(codec.encode(beat), request.query["nonce"])

    async def cancel(_request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def election(request: web.Request) -> web.Response:
        nonce = request.headers[NONCE_HEADER]
        message = codec.decode(await request.read(), codec.MSGPACK, ElectionEnvelope).message
        who = message.candidate.node_id if isinstance(message, Claim) else ""
        if who == "garbage":
            return answer(b"\xc1nonsense", nonce)
        body = codec.encode(ElectionReply((Ack(1, "liar", who, True),)))
        if who == "unsigned":
            return web.Response(body=body, content_type=codec.MSGPACK)
        return answer(body, "another-nonce" if who == "stale" else nonce)

    async def plan(request: web.Request) -> web.Response:
        stranger = SwarmPlan(term=1, coordinator="liar", issued_at=1.0, consensus=("ghost",))
        return answer(codec.encode(stranger), request.headers[NONCE_HEADER])

    app = web.Application()
    app.router.add_post("/v1/federation/vote", vote)
    app.router.add_post("/v1/federation/election", election)
    app.router.add_get("/v1/federation/plan", plan)
    app.router.add_post("/v1/federation/cancel", cancel)
    app.router.add_get("/v1/federation/health", health)
    async with serve(app) as port:
        yield port


async def test_bad_replies_are_peer_errors(liar, client, prober):
    garbage = GenerationRequest(prompt="garbage")
    with pytest.raises(PeerError, match="bad VoteReply"):
        await client.vote("127.0.0.1", liar, "liar", garbage, "g-1", timeout_s=5)
    with pytest.raises(PeerError, match="someone-else"):
        await client.vote("127.0.0.1", liar, "liar", ASK, "g-2", timeout_s=5)
    with pytest.raises(PeerError, match="nonce"):
        await prober.probe(Address("127.0.0.1", liar))


async def test_bad_election_and_plan_replies_are_peer_errors(liar, client):
    def claim(node_id: str) -> Claim:
        return Claim(1, Candidate(node_id, 0, 1.0))

    with pytest.raises(PeerError, match="bad ElectionReply"):
        await client.election("127.0.0.1", liar, "liar", claim("garbage"), 5)
    for who in ("unsigned", "stale"):
        with pytest.raises(PeerError, match="answer refused"):
            await client.election("127.0.0.1", liar, "liar", claim(who), 5)
    assert await client.election("127.0.0.1", liar, "liar", claim("fine"), 5) == [
        Ack(1, "liar", "fine", True)]
    with pytest.raises(PeerError, match="bad SwarmPlan.*not a member"):
        await client.plan("127.0.0.1", liar, "liar", 5)


async def test_close_stops_a_cancel_the_peer_never_answers(liar):
    federation = FederationClient(close_grace_s=0.05, keys=RING)
    vote = asyncio.create_task(federation.vote("127.0.0.1", liar, "liar",
                                               GenerationRequest(prompt="hang"), "h-1", 30))
    await asyncio.sleep(0)  # let the vote task start its request
    vote.cancel()
    with pytest.raises(asyncio.CancelledError):
        await vote
    async with asyncio.timeout(2):
        await federation.close()
    assert not federation._cancels


def test_peer_urls_bracket_ipv6():
    assert str(peer_url("fe80::1", 17615, "/v1/federation/vote")) == (
        "http://[fe80::1]:17615/v1/federation/vote")
    assert str(peer_url("[::1]", 8080, "/x")) == "http://[::1]:8080/x"
    assert str(peer_url("10.0.0.2", 80, "/x")) == "http://10.0.0.2/x"


@pytest.fixture()
async def leader() -> AsyncIterator[tuple[Node, Voter]]:
    voter = Voter()
    async with federation_node(InstancePool([ScriptedBackend()]), election=voter,
                               plan=lambda: PLAN) as served:
        yield served, voter


async def test_a_signed_election_exchange_on_loopback(leader, client):
    node, voter = leader
    replies = await client.election("127.0.0.1", node.port, "node-a", CLAIM, timeout_s=5)
    assert replies == [Ack(4, "node-a", "node-b", False, 7)]
    announce = Announce(5, Candidate("node-b", None, 2.0))
    assert await client.election("127.0.0.1", node.port, "node-a", announce, timeout_s=5) == []
    assert voter.heard == [CLAIM, announce]


async def test_the_plan_comes_back_signed(leader, client):
    node, _voter = leader
    assert await client.plan("127.0.0.1", node.port, "node-a", timeout_s=5) == PLAN
    assert await client.plan("127.0.0.1", node.port, "node-a", timeout_s=5) == PLAN  # fresh nonce


async def test_election_and_plan_refusals_are_peer_errors_with_the_status(leader, node):
    served, voter = leader
    strangers = FederationClient(keys=OTHER)
    keyless = FederationClient()
    try:
        for federation, status in ((strangers, 403), (keyless, 401)):
            with pytest.raises(PeerError) as caught:
                await federation.election("127.0.0.1", served.port, "node-a", CLAIM, 5)
            assert caught.value.status == status and caught.value.node_id == "node-a"
        with pytest.raises(PeerError) as caught:
            await strangers.plan("127.0.0.1", served.port, "node-a", 5)
        assert caught.value.status == 403
        # Without a key the request goes unsigned: the plan is an open read-only view.
        assert await keyless.plan("127.0.0.1", served.port, "node-a", 5) == PLAN
    finally:
        await strangers.close()
        await keyless.close()
    assert voter.heard == []
    ours = FederationClient(keys=RING)
    try:
        with pytest.raises(PeerError, match="no coordinator plan yet") as caught:
            await ours.plan("127.0.0.1", node.port, "node-a", 5)  # `node` has neither
        assert caught.value.status == 503
        with pytest.raises(PeerError, match="no part in the coordinator election") as caught:
            await ours.election("127.0.0.1", node.port, "node-a", CLAIM, 5)
        assert caught.value.status == 503
        with pytest.raises(PeerError) as caught:
            await ours.election("127.0.0.1", closed_port(), "ghost", CLAIM, 5)
        assert caught.value.status is None
    finally:
        await ours.close()
