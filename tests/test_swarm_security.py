"""The swarm key on real sockets (127.0.0.1 only): refused federation requests, signed
heartbeats, a node with another key never used, and a rotation that keeps old-key peers.

The whole-node tests build nodes exactly as `main.py --federation` does (tests/swarm_nodes.py:
`main.build_services`), with scripted instances and manual peers (no mDNS), all in this event loop.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from network.federation.client import FederationClient, PeerError
from network.membership.table import PeerState
from network.trust.signing import (
    KEY_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    check_reply,
    sign_reply,
)
from network.trust.swarm_key import SwarmKey
from network.wire import codec
from network.wire.messages import Heartbeat
from network.wire.votes import CancelRequest
from swarm.node import commands
from tests.federation_fixtures import ASK, node_fixture, serve, until, vote_body
from tests.swarm_keys import KEY, OTHER, OTHER_KEY, RING, signed
from tests.swarm_nodes import make_swarm, running, weighted_vote

VOTE = "/v1/federation/vote"
CANCEL = "/v1/federation/cancel"


node = node_fixture("Paris.")


@pytest.fixture()
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def send(http: aiohttp.ClientSession, url: str, body: bytes,
               headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=body,
                         headers={"Content-Type": codec.MSGPACK, **headers}) as r:
        return r.status, await r.json() if r.content_type == codec.JSON else {}


def refusals(body: bytes, path: str) -> list[tuple[str, dict[str, str], int, str]]:
    """Every way a federation request can fail the swarm-key check, with the expected answer."""
    good = signed(path, body)
    replay = signed(path, body)
    return [
        ("unsigned", {}, 401, "missing_signature"),
        ("partly signed", {k: v for k, v in good.items() if k != SIGNATURE_HEADER}, 401,
         "missing_signature"),
        ("another swarm's key", signed(path, body, OTHER_KEY), 403, "unknown_swarm_key"),
        ("forged with our key id", {**signed(path, body, OTHER_KEY),
                                    KEY_ID_HEADER: KEY.fingerprint}, 401, "bad_signature"),
        ("signed for another body", signed(path, body + b"x"), 401, "bad_signature"),
        ("signed for another route", signed(VOTE if path == CANCEL else CANCEL, body), 401,
         "bad_signature"),
        ("signed for another node", signed(path, body, audience="node-b"), 401,
         "bad_signature"),
        ("stale (31 s old)", signed(path, body, now=time.time() - 31), 401, "stale_request"),
        ("from the future (35 s)", signed(path, body, now=time.time() + 35), 401,
         "stale_request"),
        ("first use", replay, 200, ""),
        ("replayed", replay, 401, "replayed_request"),
    ]


@pytest.mark.parametrize("path", [VOTE, CANCEL])
async def test_unsigned_wrong_stale_and_replayed_requests_are_refused_and_logged_once(
        node, http, caplog, path):
    caplog.set_level(logging.DEBUG, logger="network")
    body = (vote_body("sec-1") if path == VOTE
            else codec.encode(CancelRequest(request_id="sec-1"), codec.MSGPACK))
    for what, headers, status, code in refusals(body, path):
        got, payload = await send(http, node.url + path, body, headers)
        assert got == status, (what, payload)
        if code:
            error = payload["error"]
            assert error["code"] == code, what
            assert error["type"] == ("permission_error" if status == 403
                                     else "authentication_error")
            assert KEY.text not in error["message"] and OTHER_KEY.text not in error["message"]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0].getMessage(), warnings
    refused = [r for r in caplog.records if "bad federation request" in r.getMessage()]
    assert len(refused) == 10  # one warning, then debug
    backend = node.pool.instances[0].backend
    assert len(backend.requests) == (1 if path == VOTE else 0)  # only the signed vote ran


async def test_a_refusal_needs_no_body_read(node, http):
    # An unsigned request is refused on its headers: even an oversize body is not read first.
    status, payload = await send(http, node.url + VOTE, b"\x00" * (codec.MAX_BYTES + 10), {})
    assert status == 401 and payload["error"]["code"] == "missing_signature"


async def test_the_heartbeat_is_signed_over_the_callers_nonce(node, http):
    async with http.get(node.url + "/v1/federation/health", params={"nonce": "probe-1"},
                        headers={KEY_ID_HEADER: KEY.fingerprint}) as r:
        body = await r.read()
        assert check_reply(RING, "probe-1", body, r.headers) is None
        assert check_reply(RING, "probe-2", body, r.headers) is not None
        assert check_reply(OTHER, "probe-1", body, r.headers) == (
            f"another swarm key (fingerprint {KEY.fingerprint})")
    beat = codec.decode(body, r.content_type, Heartbeat)
    assert beat.swarm == KEY.fingerprint and beat.nonce == "probe-1"


async def test_without_a_nonce_the_heartbeat_is_an_unsigned_read_only_view(node, http):
    async with http.get(node.url + "/v1/federation/health") as r:
        assert r.status == 200 and SIGNATURE_HEADER not in r.headers
        text = await r.text()
    async with http.get(node.url + "/v1/federation/peers") as r:
        assert r.status == 200
        text += await r.text()
    assert KEY.text not in text and KEY.text[4:] not in text and KEY.secret.hex() not in text


async def test_a_vote_answer_not_signed_by_the_peer_is_refused():
    """A LAN device in the middle that rewrites a vote answer cannot sign it."""

    async def tampering(request: web.Request) -> web.Response:
        nonce = request.headers[NONCE_HEADER]
        reply = codec.encode(Heartbeat(node_id="x", boot_id="b", protocol=1, api_port=1))
        return web.Response(body=reply, content_type=codec.MSGPACK,
                            headers=sign_reply(OTHER_KEY, nonce, reply))

    app = web.Application()
    app.router.add_post(VOTE, tampering)
    client = FederationClient(keys=RING)
    try:
        async with serve(app) as port:
            with pytest.raises(PeerError, match="another swarm key"):
                await client.vote("127.0.0.1", port, "mitm", ASK, "m-1", timeout_s=5)
    finally:
        await client.close()


# --- whole nodes -------------------------------------------------------------------------------


async def test_a_node_with_another_key_is_foreign_and_never_a_candidate(tmp_path, http, capsys):
    swarm = make_swarm(tmp_path, ["a", "b", "c"], KEY, keys={"b": (OTHER_KEY, ())})
    async with running(swarm) as nodes:
        a, b, c = nodes["a"], nodes["b"], nodes["c"]
        await until(lambda: a.state_of("c") is PeerState.ALIVE, what="a to see c alive")
        await until(lambda: a.state_of("b") is PeerState.FOREIGN, what="a to see b foreign")
        await until(lambda: b.state_of("a") is PeerState.FOREIGN, what="b to see a foreign")
        reason = a.federation.membership.get("b").reason
        assert reason == f"another swarm key (fingerprint {OTHER_KEY.fingerprint})"
        for _ in range(3):
            sources = await weighted_vote(http, a, 6)
            assert "c" in sources and "b" not in sources, sources
        assert b.pool.instances[0].backend.requests == []
        assert c.pool.instances[0].backend.requests
        assert "a" not in await weighted_vote(http, b, 4)
        assert [p.node_id for p in a.federation.membership.routable()] == ["c"]

        await asyncio.to_thread(commands.show_peers, a.config)  # what `main.py peers` prints
        printed = capsys.readouterr().out
        assert "foreign" in printed and f"another swarm key (fingerprint {OTHER_KEY.fingerprint})" \
            in printed, printed


async def test_after_a_rotation_new_and_old_key_nodes_still_work_together(tmp_path, http):
    new = SwarmKey(bytes(range(200, 232)))
    async with running(make_swarm(tmp_path, ["old", "new"], KEY,
                                  keys={"new": (new, (KEY,))})) as nodes:
        old, rotated = nodes["old"], nodes["new"]
        await until(lambda: rotated.state_of("old") is PeerState.ALIVE,
                    what="the rotated node to accept the old-key node")
        await until(lambda: old.state_of("new") is PeerState.ALIVE,
                    what="the old-key node to accept the rotated node (signed with the old key)")
        assert "old" in await weighted_vote(http, rotated, 4)
        assert "new" in await weighted_vote(http, old, 4)
        assert old.pool.instances[0].backend.requests
        assert rotated.pool.instances[0].backend.requests


async def test_a_rotated_node_without_the_previous_key_drops_old_key_peers(tmp_path):
    new = SwarmKey(bytes(range(200, 232)))
    async with running(make_swarm(tmp_path, ["old", "new"], KEY, keys={"new": (new, ())})) as nodes:
        await until(lambda: nodes["new"].state_of("old") is PeerState.FOREIGN,
                    what="the grace period over: the old key refused")

