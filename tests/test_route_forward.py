"""Route mode across nodes: a busy node relays whole requests (streamed or not) to an idle peer."""
from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from network.api import build_app
from network.federation_client import FederationClient
from network.remote_source import RemoteSource
from network.route_forward import RouteForwarder, choose_target
from swarm.config import ApiConfig
from swarm.pool import InstancePool
from swarm.scripted import ScriptedBackend
from tests.server import ServerThread, wait_until

ASK = {"messages": [{"role": "user", "content": "hi"}]}


def remote(node_id: str, active: float, score: float = 0.0) -> RemoteSource:
    return RemoteSource(node_id=node_id, address="127.0.0.1", api_port=1, load=active,
                        bench_score=score)


def test_choose_target_prefers_local_idle_then_least_busy_peer():
    assert choose_target(0, [remote("b", 0)]) is None
    assert choose_target(1, []) is None
    assert choose_target(1, [remote("b", 1)]) is None
    assert choose_target(2, [remote("b", 1), remote("c", 0)]).node_id == "c"
    assert choose_target(1, [remote("b", 0, 5.0), remote("c", 0, 9.0)]).node_id == "c"
    # Requests already forwarded and still running count: a burst spreads over peers.
    assert choose_target(1, [remote("b", 0), remote("c", 0)], {"b": 1}).node_id == "c"
    assert choose_target(1, [remote("b", 0), remote("c", 0)], {"b": 1, "c": 1}) is None


@pytest.fixture()
def pair():
    """Node B (idle, answers 'from-b') and node A (one slow instance) that may forward to B."""
    pool_b = InstancePool([ScriptedBackend(["from-b"])])
    server_b = ServerThread(lambda: build_app(pool_b, ApiConfig())).start()
    b = urlsplit(server_b.url)
    peers = [RemoteSource(node_id="node-b", address=b.hostname, api_port=b.port)]
    pool_a = InstancePool([ScriptedBackend(["slow " * 200], token_latency_s=0.02)],
                          queue_depth=4)
    holder: dict[str, object] = {}

    def make_a():
        client = FederationClient()
        holder["forwarder"] = RouteForwarder(pool_a, client, "node-a", lambda: peers)

        async def close_client(_app):
            await client.close()

        app = build_app(pool_a, ApiConfig(), forwarder=holder["forwarder"])
        app.on_cleanup.append(close_client)
        return app

    server_a = ServerThread(make_a).start()
    yield server_a, server_b, pool_a, peers, holder
    server_a.stop()
    server_b.stop()


def test_busy_node_forwards_and_streams_from_the_idle_peer(pair):
    server_a, _server_b, pool_a, _peers, holder = pair
    with httpx.Client(base_url=server_a.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as busy:
            busy_lines = busy.iter_lines()  # keep it referenced: a collected iterator disconnects
            next(busy_lines)
            wait_until(lambda: pool_a.instances[0].active == 1, what="A to be busy")
            reply = http.post("/v1/chat/completions", json=ASK).json()
            assert reply["choices"][0]["message"]["content"] == "from-b"
            assert reply["swarm"]["node"] == "node-b"
            with http.stream("POST", "/v1/chat/completions",
                             json={**ASK, "stream": True}) as streamed:
                lines = [line for line in streamed.iter_lines() if line.startswith("data: ")]
            assert lines[-1] == "data: [DONE]", lines
            assert any("from-b" in line for line in lines), lines
    assert holder["forwarder"].forwarded == 2


def test_unreachable_peer_falls_back_to_local(pair):
    server_a, server_b, pool_a, peers, holder = pair
    server_b.stop()
    with httpx.Client(base_url=server_a.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as busy:
            busy_lines = busy.iter_lines()  # keep it referenced: a collected iterator disconnects
            next(busy_lines)
            wait_until(lambda: pool_a.instances[0].active == 1, what="A to be busy")
            response = http.post("/v1/chat/completions",
                                 json={**ASK, "max_tokens": 3})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("slow")
    assert holder["forwarder"].forwarded == 0


def test_forwarded_requests_are_never_forwarded_again(pair):
    server_a, _server_b, pool_a, _peers, holder = pair
    with httpx.Client(base_url=server_a.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json={**ASK, "stream": True}) as busy:
            busy_lines = busy.iter_lines()  # keep it referenced: a collected iterator disconnects
            next(busy_lines)
            response = http.post("/v1/chat/completions", json={**ASK, "max_tokens": 2},
                                 headers={"X-Local-Swarm-Forwarded": "node-z"})
    assert response.json()["choices"][0]["message"]["content"].startswith("slow")
    assert holder["forwarder"].forwarded == 0
