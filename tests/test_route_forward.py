"""Route mode across nodes: a busy node relays whole requests (streamed or not) to an idle peer."""
from __future__ import annotations

import dataclasses
import json
import logging
import time

import httpx
import pytest
from aiohttp import web

from network.federation.client import FederationClient
from network.federation.forwarding import FORWARDED_HEADER, RouteForwarder
from network.federation.gate import verify_signed
from network.federation.sources import SwarmSources
from network.trust.signing import Verifier
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.node.config import ApiConfig
from tests.forward_pair import ASK, ForwardPair
from tests.server import wait_until
from tests.swarm_keys import OTHER, OTHER_KEY, RING, signed


@pytest.fixture(params=[RING], ids=["same-swarm"])
def pair(request):
    """Node B and node A that may forward to B (tests/forward_pair.py); A signs with the
    parametrized key ring, B accepts only `RING`."""
    pair = ForwardPair(ApiConfig(), request.param)
    yield pair
    pair.stop()


def test_busy_node_forwards_and_streams_from_the_idle_peer(pair):
    with httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        with pair.a_busy(http):
            reply = http.post("/v1/chat/completions", json=ASK).json()
            assert reply["choices"][0]["message"]["content"] == "from-b"
            assert reply["swarm"]["node"] == "node-b"
            with http.stream("POST", "/v1/chat/completions",
                             json={**ASK, "stream": True}) as streamed:
                lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
            assert lines[-1] == "data: [DONE]", lines
            assert any("from-b" in line for line in lines), lines
    assert pair.forwarded == 2


def test_unreachable_peer_falls_back_to_local(pair):
    pair.server_b.stop()
    with httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        with pair.a_busy(http):
            response = http.post("/v1/chat/completions",
                                 json={**ASK, "max_tokens": 3})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("slow")
    assert pair.forwarded == 0


def test_forwarded_requests_are_never_forwarded_again(pair):
    body = json.dumps({**ASK, "max_tokens": 2}).encode()
    with httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as busy:
            busy_lines = busy.iter_lines()  # keep it referenced: a collected iterator disconnects
            next(busy_lines)
            response = http.post("/v1/chat/completions", content=body,
                                 headers=signed("/v1/chat/completions", body, **{
                                     "Content-Type": "application/json",
                                     FORWARDED_HEADER: "node-z"}))
    assert response.json()["choices"][0]["message"]["content"].startswith("slow")
    assert pair.forwarded == 0


def test_a_forwarded_header_needs_a_valid_signature(pair, caplog):
    body = json.dumps({**ASK, "max_tokens": 2}).encode()
    base = {"Content-Type": "application/json", FORWARDED_HEADER: "node-z"}
    replayed = signed("/v1/chat/completions", body, **base)
    cases = [(base, 401, "missing_signature"),
             (signed("/v1/chat/completions", body, OTHER_KEY, **base), 403, "unknown_swarm_key"),
             (signed("/v1/chat/completions", b"{}", **base), 401, "bad_signature"),
             (signed("/v1/chat/completions", body, now=time.time() - 31, **base), 401,
              "stale_request"),
             (replayed, 200, None), (replayed, 401, "replayed_request")]
    with caplog.at_level(logging.DEBUG, logger="network.federation.forwarding"), \
            httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        for headers, status, code in cases:
            response = http.post("/v1/chat/completions", content=body, headers=headers)
            assert response.status_code == status, (code, response.text)
            if code is not None:
                assert response.json()["error"]["code"] == code
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "127.0.0.1" in warnings[0].getMessage()  # once per address
    assert pair.forwarded == 0


def test_route_mode_forwards_only_to_a_peer_the_coordinators_plan_picks(pair):
    with httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        with pair.a_busy(http):
            pair.plan = ["node-b", "node-c"]
            sent = http.post("/v1/chat/completions", json=ASK).json()
            pair.plan = ["node-c"]  # the coordinator leaves node-b out: A serves it itself
            kept = http.post("/v1/chat/completions", json={**ASK, "max_tokens": 3}).json()
    assert sent["choices"][0]["message"]["content"] == "from-b"
    assert kept["choices"][0]["message"]["content"].startswith("slow")
    assert pair.forwarded == 1


@pytest.mark.parametrize("pair", [OTHER], ids=["other-swarm"], indirect=True)
def test_a_peer_that_refuses_our_forward_means_serving_locally(pair):
    with httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        with pair.a_busy(http):
            response = http.post("/v1/chat/completions", json={**ASK, "max_tokens": 3})
    assert response.status_code == 200  # B answered 403 (another swarm key): A served it
    assert response.json()["choices"][0]["message"]["content"].startswith("slow")
    assert pair.forwarded == 0


async def test_verifying_a_forward_twice_is_not_a_replay():
    """An auth check before the handler may verify the forward too: same verdict, no replay."""
    forwarder = RouteForwarder(SwarmSources(InstancePool([ScriptedBackend(["x"])])),
                               FederationClient(), "node-a",
                               verifier=Verifier(RING, audience="node-a"))

    async def twice(request: web.Request) -> web.Response:
        first = await verify_signed(request, forwarder.verifier)
        second = await verify_signed(request, forwarder.verifier)
        return web.json_response([first.ok, second.ok, second.code])

    app = web.Application()
    app.router.add_post("/v1/chat/completions", twice)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/chat/completions"
    body = b'{"messages": []}'
    try:
        async with httpx.AsyncClient() as http:
            headers = signed("/v1/chat/completions", body)
            assert (await http.post(url, content=body, headers=headers)).json() == [True, True, ""]
            assert (await http.post(url, content=body, headers=headers)).json() == [
                False, False, "replayed_request"]  # a second request with the same nonce
    finally:
        await runner.cleanup()


def test_a_forwarded_reply_over_the_peer_message_limit_is_served_locally(pair):
    """The peer's whole reply is read and parsed under the limits of every peer message: over
    them (a small limit stands in for a huge reply here), the node serves the request itself."""
    assert pair.forwarder is not None
    pair.forwarder.client.max_reply_bytes = 100
    with httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        with pair.a_busy(http):
            response = http.post("/v1/chat/completions", json={**ASK, "max_tokens": 3})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("slow")


def test_decode_json_keeps_the_wire_limits():
    from network.wire import codec

    assert codec.decode_json(b'{"swarm": {"node": "b"}, "choices": [1, 2]}')["choices"] == [1, 2]
    for bad in (b"[" * 50 + b"]" * 50, b'{"a": 1, "a": 2}', b"{NaN", b'{"x": NaN}',
                b"[" * 200_000 + b"]" * 200_000):
        with pytest.raises(codec.WireDecodeError):
            codec.decode_json(bad)
    with pytest.raises(codec.WireDecodeError, match="over"):
        codec.decode_json(b" " * (codec.MAX_BYTES + 1))


def test_embeddings_and_tools_go_only_to_peers_that_serve_them(pair):
    embed = {"model": "default", "input": ["a b", "c"]}
    tools = {**ASK, "max_tokens": 3, "tools": [{"type": "function",
                                                "function": {"name": "f"}}]}
    listed = dataclasses.replace(pair.peers[0], capabilities=frozenset({"embeddings", "tools"}))
    with httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        pair.peers = [listed]
        with pair.a_busy(http):
            reply = http.post("/v1/embeddings", json=embed).json()
            assert pair.forwarded == 1 and len(reply["data"]) == 2
            assert http.post("/v1/chat/completions", json=tools).status_code == 200
            assert pair.forwarded == 2
        # the busy stream was dropped: wait until A has let it go before making A busy again
        wait_until(lambda: pair.pool_a.instances[0].active == 0, timeout=60,
                   what="A to be idle")
        pair.peers = [dataclasses.replace(listed, capabilities=frozenset())]
        with pair.a_busy(http):  # an older peer lists neither: A serves both itself
            assert http.post("/v1/embeddings", json=embed).status_code == 200
            assert http.post("/v1/chat/completions", json=tools).status_code == 200
            assert pair.forwarded == 2


def test_a_busy_node_forwards_ollama_requests_too_and_records_who_served(pair):
    body = {"model": "scripted", "messages": ASK["messages"], "options": {"num_predict": 8}}
    with httpx.Client(base_url=pair.server_a.url, timeout=30) as http:
        with pair.a_busy(http):
            whole = http.post("/api/chat", json={**body, "stream": False})
            assert whole.status_code == 200, whole.text
            assert whole.json()["message"]["content"] == "from-b"
            with http.stream("POST", "/api/chat", json=body) as streamed:
                assert streamed.headers["content-type"].startswith("application/x-ndjson")
                records = [json.loads(line) for line in streamed.iter_lines() if line]
            assert "".join(r["message"]["content"] for r in records) == "from-b"
            assert records[-1]["done"] is True
        snapshot = http.get("/v1/dashboard/snapshot").json()
    assert pair.forwarded == 2
    served = [r for r in snapshot["requests"] if r["api"] == "ollama"]
    assert [r["forwarded_to"] for r in served] == ["node-b", "node-b"]
    assert snapshot["usage"]["by_node"]["node-b"]["wins"] == 2
