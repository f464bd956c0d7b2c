"""`[api] keys` on a federated node: the pure rule, signed peer requests standing in for the key
(forwarded route requests, read-only federation views), and what stays open or swarm-only."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.api.auth import Auth, required_auth
from network.federation.forwarding import FORWARDED_HEADER
from network.trust.signing import SIGNATURE_HEADER, sign_request
from network.wire import codec
from network.wire.messages import Heartbeat
from swarm.node.config import ApiConfig
from tests.forward_pair import ASK, ForwardPair
from tests.node_apps import KEYS, federated_app, scripted_pool
from tests.server import ServerThread
from tests.swarm_keys import OTHER_KEY, signed

API_KEY = "sekrit"
BEARER = {"Authorization": f"Bearer {API_KEY}"}
KEYED = ApiConfig(keys=(API_KEY,))


@pytest.mark.parametrize(("method", "path", "query", "rule"), [
    ("GET", "/health", {}, Auth.OPEN),
    ("GET", "/openapi.json", {}, Auth.OPEN),
    ("GET", "/v1/models", {}, Auth.API_KEY_OR_FORWARD),
    ("POST", "/v1/chat/completions", {}, Auth.API_KEY_OR_FORWARD),
    ("POST", "/v1/completions", {}, Auth.API_KEY_OR_FORWARD),
    ("GET", "/v1/federation/peers", {"status": "alive"}, Auth.API_KEY_OR_SIGNED),
    ("GET", "/v1/federation/plan", {}, Auth.API_KEY_OR_SIGNED),
    ("GET", "/v1/federation/plan/3", {}, Auth.API_KEY_OR_SIGNED),
    ("HEAD", "/v1/federation/peers", {}, Auth.API_KEY_OR_SIGNED),
    ("GET", "/v1/federation/health", {}, Auth.API_KEY_OR_SIGNED),
    ("GET", "/v1/federation/health", {"nonce": "n1"}, Auth.OPEN),
    ("GET", "/v1/federation/peers", {"nonce": "n1"}, Auth.API_KEY_OR_SIGNED),
    ("POST", "/v1/federation/vote", {}, Auth.SIGNED),
    ("POST", "/v1/federation/cancel", {}, Auth.SIGNED),
    ("POST", "/v1/federation/election", {}, Auth.SIGNED),
    ("POST", "/v1/federation/approve", {}, Auth.API_KEY),
    ("GET", "/v1/federation/approve", {}, Auth.API_KEY),
])
def test_the_rule_for_each_route(method, path, query, rule):
    assert required_auth(method, path, query) is rule


@given(path=st.text(max_size=40).map(lambda t: "/v1/" + t),
       method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
       nonce=st.booleans())
def test_nothing_under_v1_is_open_but_the_heartbeat_probe(path, method, nonce):
    query = {"nonce": "x"} if nonce else {}
    rule = required_auth(method, path, query)
    if rule is Auth.OPEN:
        assert (path, method in ("GET", "HEAD"), nonce) == ("/v1/federation/health", True, True)
    if rule is Auth.SIGNED:  # left to the handler's swarm-signature check
        assert path.startswith("/v1/federation/") and method not in ("GET", "HEAD")


# --- read-only federation views on a keyed node -----------------------------------------------

@pytest.fixture(scope="module")
def keyed_node() -> Iterator[ServerThread]:
    """A full node (federation routes, a plan) with `[api] keys` set; its swarm key is KEYS."""
    pool = scripted_pool(1)
    server = ServerThread(lambda: federated_app(pool, KEYED)).start()
    yield server
    server.stop()


@pytest.fixture()
def http(keyed_node) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=keyed_node.url, timeout=10) as client:
        yield client


def signed_get(path_qs: str, key=None, **headers: str) -> dict[str, str]:
    return {**headers, **sign_request(key or KEYS.current, "GET", path_qs, b"", now=time.time())}


@pytest.mark.parametrize("path", ["/v1/federation/peers", "/v1/federation/plan",
                                  "/v1/federation/health"])
def test_views_need_the_api_key_or_a_swarm_signature(http, path):
    refused = http.get(path)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert http.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert http.get(path, headers=BEARER).status_code == 200
    headers = signed_get(path)
    answer = http.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    replayed = http.get(path, headers=headers)
    assert (replayed.status_code, replayed.json()["error"]["code"]) == (401, "replayed_request")
    foreign = http.get(path, headers=signed_get(path, OTHER_KEY))
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (403, "unknown_swarm_key")


def test_a_signed_plan_is_verified_once_and_answered_signed(http):
    answer = http.get("/v1/federation/plan", headers=signed_get("/v1/federation/plan"))
    assert answer.status_code == 200, answer.text  # the handler did not see its nonce twice
    assert SIGNATURE_HEADER in answer.headers


def test_the_signature_covers_the_query(http):
    good = http.get("/v1/federation/peers", params={"status": "alive"},
                    headers=signed_get("/v1/federation/peers?status=alive"))
    assert good.status_code == 200 and all(r["state"] == "alive" for r in good.json()["data"])
    moved = http.get("/v1/federation/peers", params={"status": "dead"},
                     headers=signed_get("/v1/federation/peers?status=alive"))
    assert (moved.status_code, moved.json()["error"]["code"]) == (401, "bad_signature")


def test_heartbeat_probes_votes_and_open_routes_ignore_the_api_key(http):
    probe = http.get("/v1/federation/health", params={"nonce": "probe-1"})
    assert probe.status_code == 200
    assert codec.decode(probe.content, probe.headers["content-type"], Heartbeat).nonce == "probe-1"
    vote = http.post("/v1/federation/vote", content=b"{}",
                     headers={"Content-Type": "application/json", **BEARER})
    assert (vote.status_code, vote.json()["error"]["code"]) == (401, "missing_signature")
    assert http.get("/health").status_code == 200
    assert http.get("/openapi.json").status_code == 200
    assert http.get("/v1/models").status_code == 401
    assert http.get("/v1/models", headers=BEARER).status_code == 200


def test_approve_needs_the_api_key_too(http):
    body = {"node_id": "laptop-1"}
    refused = http.post("/v1/federation/approve", json=body)
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_api_key")
    signed_only = http.post("/v1/federation/approve", json=body,
                            headers=signed("/v1/federation/approve",
                                           json.dumps(body).encode(), KEYS.current, audience=""))
    assert signed_only.status_code == 401  # the swarm key does not approve peers
    answer = http.post("/v1/federation/approve", json=body, headers=BEARER)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"node_id": "laptop-1", "approved": True, "state": None,
                             "join": None, "approve_peers": True}


# --- forwarded route requests on keyed nodes ----------------------------------------------------

@pytest.fixture()
def keyed_pair():
    """Node B (idle, answers 'from-b') and busy node A, both with `[api] keys`; A may forward."""
    pair = ForwardPair(KEYED)
    yield pair
    pair.stop()


def test_a_signed_forward_is_served_by_the_keyed_peer(keyed_pair):
    with httpx.Client(base_url=keyed_pair.server_a.url, timeout=30, headers=BEARER) as http:
        with keyed_pair.a_busy(http):
            reply = http.post("/v1/chat/completions", json=ASK).json()
    assert reply["choices"][0]["message"]["content"] == "from-b"
    assert reply["swarm"]["node"] == "node-b"
    assert keyed_pair.forwarded == 1


def test_a_forward_header_without_a_signature_or_key_is_401(keyed_pair):
    body = json.dumps({**ASK, "max_tokens": 2}).encode()
    base = {"Content-Type": "application/json", FORWARDED_HEADER: "node-z"}
    with httpx.Client(base_url=keyed_pair.server_b.url, timeout=30) as http:
        unsigned = http.post("/v1/chat/completions", content=body, headers=base)
        assert unsigned.status_code == 401, unsigned.text
        foreign = http.post("/v1/chat/completions", content=body,
                            headers=signed("/v1/chat/completions", body, OTHER_KEY,
                                           audience="node-b", **base))
        assert foreign.status_code == 403, foreign.text
        headers = signed("/v1/chat/completions", body, audience="node-b", **base)
        served = http.post("/v1/chat/completions", content=body, headers=headers)
        assert served.status_code == 200, served.text  # verified once: no replay in the handler
        assert served.json()["choices"][0]["message"]["content"] == "from-b"
        replayed = http.post("/v1/chat/completions", content=body, headers=headers)
        assert (replayed.status_code, replayed.json()["error"]["code"]) == (
            401, "replayed_request")
        plain = http.post("/v1/chat/completions", content=body,
                          headers={"Content-Type": "application/json"})
        assert (plain.status_code, plain.json()["error"]["code"]) == (401, "invalid_api_key")
