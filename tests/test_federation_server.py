"""The federation routes on a real aiohttp server (127.0.0.1, ephemeral port), scripted pools."""
from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from network.coordination.election import Ack, Announce, Candidate, Message, Role
from network.federation.server import VERDICT_KEY, FederationRoutes, reply_kind
from network.membership.table import Membership
from network.trust.identity import NodeIdentity
from network.trust.signing import NONCE_HEADER, Verdict, check_reply
from network.wire import codec
from network.wire.address import Address
from network.wire.election import ElectionEnvelope, ElectionReply, SwarmPlan
from network.wire.messages import CAPABILITIES, Heartbeat
from network.wire.txt import PeerAdvert
from network.wire.votes import CancelRequest, VoteReply
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from tests.federation_fixtures import (
    CLAIM,
    PLAN,
    SLOW,
    Node,
    ScriptedElection,
    StaticMember,
    Voter,
    federation_node,
    node_fixture,
    until,
    vote_body,
)
from tests.swarm_keys import OTHER_KEY, RING, signed


@pytest.fixture()
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


node = node_fixture("Paris is the capital.", logprob=-0.25)
slow_node = node_fixture(SLOW, token_latency_s=0.02)  # one vote runs until cancelled


@pytest.mark.parametrize("nonce", ["-_x", secrets.token_urlsafe(12), "a" * 128])
async def test_health_accepts_url_safe_nonces(node, http, nonce):
    async with http.get(node.url + "/v1/federation/health", params={"nonce": nonce}) as r:
        assert codec.decode(await r.read(), r.content_type, Heartbeat).nonce == nonce


async def test_health_is_json_by_default_and_echoes_the_nonce(node, http):
    async with http.get(node.url + "/v1/federation/health", params={"nonce": "n-1.x"}) as r:
        assert r.status == 200 and r.content_type == codec.JSON
        beat = codec.decode(await r.read(), r.content_type, Heartbeat)
    assert (beat.node_id, beat.boot_id, beat.nonce, beat.api_port) == ("node-a", "boot1", "n-1.x",
                                                                       node.port)
    assert beat.model_id == "scripted" and beat.instances == 1 and beat.load == 0.0
    assert beat.capabilities == CAPABILITIES and beat.bench_score == 12.5
    assert beat.ram_gb == 24.0 and beat.term == 0 and beat.coordinator is None


async def test_health_answers_msgpack_when_asked(node, http):
    headers = {"Accept": "application/json;q=0.5, application/msgpack"}
    async with http.get(node.url + "/v1/federation/health", headers=headers) as r:
        assert r.content_type == codec.MSGPACK
        beat = codec.decode(await r.read(), r.content_type, Heartbeat)
    assert beat.node_id == "node-a" and beat.nonce is None
    assert reply_kind("application/msgpack;q=0, application/json") == codec.JSON


@pytest.mark.parametrize("nonce", ["has space", "x" * 129, "", "é", "a/b"])
async def test_health_refuses_a_bad_nonce(node, http, nonce):
    async with http.get(node.url + "/v1/federation/health", params={"nonce": nonce}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == "nonce"


def table() -> Membership:
    """Self is node-a; peers in every state, with different hardware and load."""
    m = Membership("node-a", 1, "")

    def add(node_id: str, now: float, **beat: object) -> None:
        advert = PeerAdvert(node_id=node_id, boot_id="b1", protocol=1, api_port=17615,
                            model_id="scripted")
        m.discovered(advert, Address(f"10.0.0.{len(m) + 2}", 17615), now)
        if beat:
            m.heartbeat_ok(node_id, Heartbeat(node_id=node_id, boot_id="b1", protocol=1,
                                              api_port=17615, model_id="scripted",
                                              **beat), now)  # type: ignore[arg-type]

    add("big", 99.0, ram_gb=64.0, vram_gb=24.0, load=0.0, capabilities=("vote",))
    add("busy", 99.5, ram_gb=8.0, load=1.0, queue_depth=2)
    add("joiner", 99.0)
    add("gone", 90.0, ram_gb=16.0)
    m.heartbeat_failed("gone", 95.0)
    m.heartbeat_failed("gone", 95.5)
    m.discovered(PeerAdvert(node_id="alien", boot_id="b1", protocol=2, api_port=17615,
                            model_id="other"), Address("10.0.0.9", 17615), 99.0)
    return m


@pytest.fixture()
async def table_node() -> AsyncIterator[Node]:
    async with federation_node(InstancePool([ScriptedBackend()]), table()) as served:
        yield served


async def peer_ids(node: Node, http: aiohttp.ClientSession, **query: str) -> list[str]:
    async with http.get(node.url + "/v1/federation/peers", params=query) as r:
        assert r.status == 200, await r.text()
        return [row["node_id"] for row in (await r.json())["data"]]


async def test_peers_lists_self_first_then_the_table(table_node, http):
    async with http.get(table_node.url + "/v1/federation/peers") as r:
        rows = (await r.json())["data"]
    assert [row["node_id"] for row in rows] == ["node-a", "alien", "big", "busy", "gone", "joiner"]
    me, big = rows[0], rows[2]
    assert me["self"] and me["state"] == "alive" and me["address"] == "127.0.0.1"
    assert me["api_port"] == table_node.port and me["ram_gb"] == 24.0
    assert big == {"node_id": "big", "self": False, "state": "alive", "address": "10.0.0.2",
                   "api_port": 17615, "model": "scripted", "load": 0.0, "queue_depth": 0,
                   "bench_score": 0.0, "ram_gb": 64.0, "vram_gb": 24.0, "last_seen_s_ago": 1.0,
                   "boot_id": "b1", "reason": "answering", "term": 0, "coordinator": False,
                   "solo": False, "tok_s": 0.0, "tokens": 0}
    assert me["term"] == 0 and me["coordinator"] is False
    joiner = {row["node_id"]: row for row in rows}["joiner"]
    assert joiner["term"] is None and joiner["coordinator"] is False
    assert {row["node_id"]: row["state"] for row in rows}["gone"] == "dead"


@pytest.mark.parametrize(("query", "expected"), [
    ({"min_vram_gb": "16"}, ["big"]),
    ({"min_ram_gb": "16"}, ["node-a", "big", "gone"]),
    ({"min_ram_gb": "16", "status": "alive"}, ["node-a", "big"]),
    ({"model": "SCRIPTED", "status": "alive"}, ["node-a", "big", "busy"]),
    ({"model": "other"}, ["alien"]),
    ({"status": "dead"}, ["gone"]),
    ({"status": "joining"}, ["joiner"]),
    ({"status": "foreign"}, ["alien"]),
    ({"status": "suspect"}, []),
    ({"idle": "true", "status": "alive"}, ["node-a", "big"]),
    ({"idle": "false", "status": "alive"}, ["busy"]),
])
async def test_peers_filters(table_node, http, query, expected):
    assert await peer_ids(table_node, http, **query) == expected


@pytest.mark.parametrize(("query", "param"), [
    ({"min_ram_gb": "lots"}, "min_ram_gb"), ({"min_vram_gb": "-1"}, "min_vram_gb"),
    ({"min_ram_gb": "nan"}, "min_ram_gb"), ({"min_ram_gb": "inf"}, "min_ram_gb"),
    ({"status": "zombie"}, "status"), ({"idle": "maybe"}, "idle"), ({"colour": "red"}, "colour"),
    ({"model": ""}, "model"),
])
async def test_peers_bad_filters_are_400(table_node, http, query, param):
    async with http.get(table_node.url + "/v1/federation/peers", params=query) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize("kind", [codec.MSGPACK, codec.JSON])
async def test_vote_round_trip_in_the_requests_format(node, http, kind):
    body = vote_body("rt-1", kind, temperature=0.0, stop=("capital",))
    async with http.post(node.url + "/v1/federation/vote", data=body,
                         headers=signed("/v1/federation/vote", body, **{"Content-Type": kind})) as r:
        assert r.status == 200 and r.content_type == kind
        reply = codec.decode(await r.read(), r.content_type, VoteReply)
    assert (reply.request_id, reply.node_id, reply.text) == ("rt-1", "node-a", "Paris is the ")
    assert reply.logprobs == (-0.25,) * 4 and reply.completion_tokens == 4  # the stop one counts
    assert reply.finish_reason == "stop" and reply.prompt_tokens > 0
    request = node.pool.instances[0].backend.requests[0]
    assert request.params.temperature == 0.0 and request.params.max_tokens == 500


async def post(http: aiohttp.ClientSession, url: str, body: bytes | AsyncIterator[bytes],
               kind: str = codec.MSGPACK, *, signed_over: bytes | None = None) -> tuple[int, dict]:
    """POST `body`, signed with the test swarm key (over `signed_over` when streaming)."""
    path = "/v1/" + url.split("/v1/", 1)[1]
    over = signed_over if signed_over is not None else body
    assert isinstance(over, bytes)
    async with http.post(url, data=body,
                         headers={**signed(path, over), "Content-Type": kind}) as r:
        payload = await r.json() if r.content_type == codec.JSON else {}
        return r.status, payload


async def test_cancel_stops_a_running_vote_and_frees_the_instance(slow_node, http):
    backend = slow_node.pool.instances[0].backend
    vote = asyncio.create_task(post(http, slow_node.url + "/v1/federation/vote", vote_body("c-1")))
    await until(lambda: "c-1" in slow_node.routes.votes.running and backend.requests, what="vote start")
    cancel = codec.encode(CancelRequest(request_id="c-1"), codec.MSGPACK)
    assert await post(http, slow_node.url + "/v1/federation/cancel", cancel) == (
        200, {"request_id": "c-1", "cancelled": True})
    status, error = await vote
    assert status == 409 and error["error"]["code"] == "vote_cancelled"
    await until(lambda: slow_node.pool.instances[0].active == 0, what="the instance to be freed")
    assert backend.cancelled == 1 and not slow_node.routes.votes.running


async def test_a_cancel_that_beats_its_vote_stops_it_before_it_starts(node, http):
    cancel = codec.encode(CancelRequest(request_id="early"), codec.JSON)
    assert await post(http, node.url + "/v1/federation/cancel", cancel, codec.JSON) == (
        200, {"request_id": "early", "cancelled": False})
    status, error = await post(http, node.url + "/v1/federation/vote", vote_body("early"))
    assert status == 409 and error["error"]["code"] == "vote_cancelled"
    assert node.pool.instances[0].backend.requests == []


async def test_a_busy_node_answers_429_with_retry_after(slow_node, http):
    first = asyncio.create_task(post(http, slow_node.url + "/v1/federation/vote", vote_body("b-1")))
    await until(lambda: slow_node.pool.instances[0].active == 1, what="the first vote")
    busy = vote_body("b-2")
    async with http.post(slow_node.url + "/v1/federation/vote", data=busy,
                         headers=signed("/v1/federation/vote", busy,
                                        **{"Content-Type": codec.MSGPACK})) as r:
        assert r.status == 429 and r.headers["Retry-After"] == "1"
    status, _ = await post(http, slow_node.url + "/v1/federation/vote", vote_body("b-1"))
    assert status == 409  # the same request id twice
    await post(http, slow_node.url + "/v1/federation/cancel",
               codec.encode(CancelRequest(request_id="b-1"), codec.MSGPACK))
    assert (await first)[0] == 409


async def test_a_failing_backend_is_a_500_naming_the_failure(http):
    pool = InstancePool([ScriptedBackend(["x"], fail=True)])
    async with federation_node(pool) as failing:
        status, body = await post(http, failing.url + "/v1/federation/vote", vote_body())
    assert status == 500 and body["error"]["code"] == "generation_failed"
    assert "scripted failure" in body["error"]["message"]


async def chunked(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1 << 16):
        yield data[start:start + (1 << 16)]


BAD_BODIES = [
    (b"\xc1\x00garbage", codec.MSGPACK, 400),
    (b"{not json", codec.JSON, 400),
    (b"[1, 2, 3]", codec.JSON, 400),
    (b'{"v": 1, "request_id": "r"}', codec.JSON, 400),  # neither messages nor prompt
    (b'{"v": 9, "request_id": "r", "prompt": "x"}', codec.JSON, 400),
    (codec.encode(CancelRequest(request_id="r"), codec.MSGPACK), codec.MSGPACK, 400),
    (b"prompt=hi", "application/x-www-form-urlencoded", 415),
    (b"x" * (codec.MAX_BYTES + 1), codec.MSGPACK, 413),
]


async def test_bad_bodies_are_4xx_logged_once_and_the_node_keeps_serving(node, http, caplog):
    caplog.set_level(logging.DEBUG, logger="network")
    for body, kind, status in BAD_BODIES:
        got, payload = await post(http, node.url + "/v1/federation/vote", body, kind)
        assert got == status, (body[:40], payload)
        assert payload["error"]["message"]
    huge = b"\x00" * (codec.MAX_BYTES + 1)
    got, _ = await post(http, node.url + "/v1/federation/vote", chunked(huge),
                        signed_over=huge)  # no Content-Length
    assert got == 413
    got, _ = await post(http, node.url + "/v1/federation/cancel", b"\xff", codec.MSGPACK)
    assert got == 400
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0].getMessage()
    assert sum("bad federation request" in r.getMessage() for r in caplog.records) == 10
    got, _ = await post(http, node.url + "/v1/federation/vote", vote_body("after"))
    assert got == 200
    async with http.get(node.url + "/v1/federation/health") as r:
        assert r.status == 200


# --- the election and the plan ------------------------------------------------------------


def election_body(message: Message = CLAIM, kind: str = codec.MSGPACK) -> bytes:
    return codec.encode(ElectionEnvelope(message), kind)


@pytest.fixture()
async def voter() -> Voter:
    return Voter()


@pytest.fixture()
async def leader(voter) -> AsyncIterator[Node]:
    """node-a leading term 4 (priority 3), with a plan and an election handler."""
    async with federation_node(InstancePool([ScriptedBackend()]), election=voter,
                               plan=lambda: PLAN,
                               election_view=(4, "node-a", 3, False)) as served:
        yield served


ELECTION = "/v1/federation/election"
PLAN_PATH = "/v1/federation/plan"


@pytest.mark.parametrize(("kind", "accept", "answer"), [
    (codec.MSGPACK, codec.MSGPACK, codec.MSGPACK), (codec.JSON, None, codec.JSON),
    (codec.JSON, codec.MSGPACK, codec.MSGPACK), (codec.MSGPACK, None, codec.MSGPACK)])
async def test_a_signed_election_message_is_handled_and_answered_signed(leader, voter, http, kind,
                                                                       accept, answer):
    body = election_body(CLAIM, kind)
    headers = signed(ELECTION, body, **{"Content-Type": kind})
    if accept:
        headers["Accept"] = accept
    async with http.post(leader.url + ELECTION, data=body, headers=headers) as r:
        assert r.status == 200 and r.content_type == answer
        raw = await r.read()
        assert check_reply(RING, headers[NONCE_HEADER], raw, r.headers) is None
    reply = codec.decode(raw, answer, ElectionReply)
    assert reply.messages == (Ack(4, "node-a", "node-b", False, 7),)
    assert voter.heard == [CLAIM]


@pytest.mark.parametrize("message", [Ack(4, "node-b", "node-a", True, 3),
                                     Announce(5, Candidate("node-b", None, 1.0))])
async def test_acks_and_announces_reach_the_handler(leader, voter, http, message):
    status, _ = await post(http, leader.url + ELECTION, election_body(message))
    assert status == 200 and voter.heard == [message]


async def test_election_messages_need_a_valid_fresh_signature(leader, voter, http):
    body = election_body()
    kind = {"Content-Type": codec.MSGPACK}
    refusals = [
        (kind, 401, "missing_signature"),
        (signed(ELECTION, body, OTHER_KEY, **kind), 403, "unknown_swarm_key"),
        (signed(ELECTION, body, audience="node-b", **kind), 401, "bad_signature"),
        (signed(ELECTION, b"another body", **kind), 401, "bad_signature"),
        (signed(ELECTION, body, now=time.time() - 120, **kind), 401, "stale_request"),
    ]
    for headers, status, code in refusals:
        async with http.post(leader.url + ELECTION, data=body, headers=headers) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (status, code)
    once = signed(ELECTION, body, **kind)
    async with http.post(leader.url + ELECTION, data=body, headers=once) as r:
        assert r.status == 200
    async with http.post(leader.url + ELECTION, data=body, headers=once) as r:
        assert (r.status, (await r.json())["error"]["code"]) == (401, "replayed_request")
    assert voter.heard == [CLAIM]  # only the one good request got through


async def test_bad_election_bodies_are_400(leader, voter, http):
    for body, kind in ((b'{"v":1,"kind":"vote","term":1}', codec.JSON),
                       (codec.encode(CancelRequest(request_id="r")), codec.MSGPACK),
                       (b"\xc1", codec.MSGPACK)):
        status, error = await post(http, leader.url + ELECTION, body, kind)
        assert status == 400 and error["error"]["code"] == "invalid_message"
    assert voter.heard == []


async def test_election_without_a_handler_is_503_after_the_signature_check(node, http):
    status, error = await post(http, node.url + ELECTION, election_body())
    assert status == 503 and error["error"]["code"] == "no_election"
    async with http.post(node.url + ELECTION, data=election_body()) as r:
        assert r.status == 401


async def test_a_failing_handler_is_500_and_long_answers_are_cut_to_8(http):
    async def broken(_message: Message) -> list[Message]:
        raise RuntimeError("boom")

    pool = InstancePool([ScriptedBackend()])
    async with federation_node(pool, election=broken) as failing:
        status, error = await post(http, failing.url + ELECTION, election_body())
        assert status == 500 and error["error"]["code"] == "election_failed"
    async with federation_node(pool, election=Voter(extra=20)) as chatty:
        body = election_body()
        async with http.post(chatty.url + ELECTION, data=body,
                             headers=signed(ELECTION, body, Accept=codec.MSGPACK,
                                            **{"Content-Type": codec.MSGPACK})) as r:
            reply = codec.decode(await r.read(), r.content_type, ElectionReply)
    assert len(reply.messages) == 8


async def test_heartbeat_and_rows_carry_the_election_view(leader, http):
    async with http.get(leader.url + "/v1/federation/health") as r:
        beat = codec.decode(await r.read(), r.content_type, Heartbeat)
    assert (beat.term, beat.coordinator, beat.priority, beat.solo) == (4, "node-a", 3, False)
    me = leader.routes.rows(None)[0]
    assert me["self"] and me["term"] == 4 and me["coordinator"] is True
    async with http.get(leader.url + "/v1/federation/peers") as r:
        body = await r.json()
    assert (body["term"], body["coordinator"], body["role"]) == (4, "node-a", "coordinator")
    leader.member.election = ScriptedElection("node-a", view=(4, "node-a", 3, True))
    async with http.get(leader.url + "/v1/federation/health") as r:  # leading itself only
        assert codec.decode(await r.read(), r.content_type, Heartbeat).solo is True


async def test_peers_name_the_role_given_or_derived(node, http):
    async with http.get(node.url + "/v1/federation/peers") as r:  # no election at all
        assert {k: (await r.json())[k] for k in ("term", "coordinator", "role")} == {
            "term": None, "coordinator": None, "role": None}
    node.member.election = ScriptedElection("node-a", view=(2, "node-b", 0, False))
    assert node.routes.election_status() == {"term": 2, "coordinator": "node-b",
                                             "role": "follower", "solo": False}
    node.member.election = ScriptedElection("node-a", view=(3, None, 0, False),
                                            given_role=Role.CANDIDATE)
    assert node.routes.election_status()["role"] == "candidate"


def test_peer_rows_mark_a_peer_that_leads_by_its_heartbeat():
    m = Membership("node-a", 1, "")
    for node_id, coordinator in (("lead", "lead"), ("follow", "lead")):
        m.discovered(PeerAdvert(node_id=node_id, boot_id="b1", protocol=1, api_port=1),
                     Address(f"10.0.0.{len(m) + 2}", 1), 1.0)
        m.heartbeat_ok(node_id, Heartbeat(node_id=node_id, boot_id="b1", protocol=1,
                                          api_port=1, term=6, coordinator=coordinator), 1.0)
    member = StaticMember(NodeIdentity("node-a", "boot1", "host"), m, api_port=1,
                          election=ScriptedElection("node-a", view=(6, "lead", None, False)))
    routes = FederationRoutes(member, InstancePool([ScriptedBackend()]), clock=lambda: 2.0)
    rows = {row["node_id"]: row for row in routes.rows(None)}
    assert [(r["term"], r["coordinator"]) for r in rows.values()] == [
        (6, False), (6, False), (6, True)]  # node-a (self), follow, lead
    assert routes.heartbeat().priority is None


async def test_the_plan_is_an_open_view_unsigned(leader, http):
    async with http.get(leader.url + PLAN_PATH) as r:
        assert r.status == 200 and r.content_type == codec.JSON
        assert "X-Swarm-Signature" not in r.headers
        assert codec.decode(await r.read(), r.content_type, SwarmPlan) == PLAN
    async with http.get(leader.url + PLAN_PATH, headers={"Accept": codec.MSGPACK}) as r:
        assert r.content_type == codec.MSGPACK
        assert codec.decode(await r.read(), r.content_type, SwarmPlan) == PLAN


async def test_a_signed_plan_request_is_verified_and_answered_signed(leader, http):
    headers = signed(PLAN_PATH, b"", method="GET", Accept=codec.MSGPACK)
    async with http.get(leader.url + PLAN_PATH, headers=headers) as r:
        assert r.status == 200
        raw = await r.read()
        assert check_reply(RING, headers[NONCE_HEADER], raw, r.headers) is None
    assert codec.decode(raw, r.content_type, SwarmPlan) == PLAN
    async with http.get(leader.url + PLAN_PATH, headers=headers) as r:
        assert (r.status, (await r.json())["error"]["code"]) == (401, "replayed_request")
    for headers, status in ((signed(PLAN_PATH, b"", OTHER_KEY, method="GET"), 403),
                            (signed(PLAN_PATH, b"", method="POST"), 401),
                            (signed(PLAN_PATH + "?x=1", b"", method="GET"), 401),
                            (signed(PLAN_PATH, b"", audience="node-b", method="GET"), 401),
                            ({"X-Swarm-Signature": "f" * 64}, 401)):
        async with http.get(leader.url + PLAN_PATH, headers=headers) as r:
            assert r.status == status, await r.text()


@pytest.mark.parametrize("plan", [None, lambda: None])
async def test_no_plan_is_503(http, plan):
    async with federation_node(InstancePool([ScriptedBackend()]), plan=plan) as served:
        async with http.get(served.url + PLAN_PATH) as r:
            assert r.status == 503
            error = (await r.json())["error"]
    assert error["code"] == "no_plan" and "no coordinator plan yet" in error["message"]


async def test_the_plan_reuses_a_verdict_a_middleware_already_reached(http):
    routes: list[FederationRoutes] = []

    @web.middleware
    async def verify_first(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == PLAN_PATH and "X-Swarm-Signature" in request.headers:
            request[VERDICT_KEY] = routes[0].verifier.verify(
                request.method, request.raw_path, request.headers, b"")
        elif request.path == PLAN_PATH and "refuse" in request.query:
            request[VERDICT_KEY] = Verdict(False, 403, "unknown_swarm_key", "refused upstream")
        return await handler(request)

    async with federation_node(InstancePool([ScriptedBackend()]), plan=lambda: PLAN,
                               middlewares=[verify_first]) as served:
        routes.append(served.routes)
        headers = signed(PLAN_PATH, b"", method="GET")
        async with http.get(served.url + PLAN_PATH, headers=headers) as r:
            assert r.status == 200  # verified once, by the middleware: no replay
            assert check_reply(RING, headers[NONCE_HEADER], await r.read(), r.headers) is None
        async with http.get(served.url + PLAN_PATH, params={"refuse": "1"}) as r:
            assert (r.status, (await r.json())["error"]["code"]) == (403, "unknown_swarm_key")
