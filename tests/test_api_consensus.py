"""Consensus strategies through the HTTP API, with the official openai client.

Scripted instances give exact answers and latencies; one test runs the real model on 2 instances.
"""
from __future__ import annotations

import httpx
import openai
import pytest

from network.api.app import build_app
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.node.config import ApiConfig, ConsensusConfig
from tests.server import ServerThread

ASK = [{"role": "user", "content": "Capital of France?"}]


def serve(*backends, queue_depth=4, consensus=None):
    pool = InstancePool(list(backends), queue_depth=queue_depth)
    return pool, ServerThread(lambda: build_app(pool, ApiConfig(), consensus)).start()


@pytest.fixture()
def trio():
    """Three instances: two say Paris (one slowly), one says Lyon fast."""
    pool, server = serve(
        ScriptedBackend(["Paris."], token_latency_s=0.01, logprob=-0.5),
        ScriptedBackend(["Lyon."], token_latency_s=0.001, logprob=-0.1),
        ScriptedBackend(["Paris"], token_latency_s=0.02, logprob=-0.2),
    )
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    yield pool, server, client
    server.stop()


def test_weighted_vote_explains_itself(trio):
    _pool, _server, client = trio
    reply = client.chat.completions.create(model="scripted", messages=ASK,
                                           extra_body={"swarm": {"strategy": "weighted_vote",
                                                                 "n": 3}})
    assert "Paris" in reply.choices[0].message.content
    swarm = reply.model_extra["swarm"]
    assert swarm["strategy"] == "weighted_vote"
    assert len(swarm["candidates"]) == 3
    assert {c["source"] for c in swarm["candidates"]} == {"local/0", "local/1", "local/2"}
    winner = swarm["candidates"][swarm["winner_index"]]
    assert winner["votes"] == 2 and winner["valid"]


def test_best_of_n_picks_the_most_confident(trio):
    _pool, _server, client = trio
    reply = client.chat.completions.create(model="scripted", messages=ASK,
                                           extra_body={"swarm": {"strategy": "best_of_n",
                                                                 "n": 3}})
    assert reply.choices[0].message.content == "Lyon."
    assert reply.model_extra["swarm"]["winner"] == "local/1"


def test_first_valid_with_json_schema_skips_invalid_answers():
    pool, server = serve(ScriptedBackend(["not json at all"], token_latency_s=0.001),
                         ScriptedBackend(['{"city": "Paris"}'], token_latency_s=0.01),
                         ScriptedBackend(['{"town": "Paris"}'], token_latency_s=0.005))
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
        schema = {"type": "object", "required": ["city"],
                  "properties": {"city": {"type": "string"}}}
        reply = client.chat.completions.create(
            model="scripted", messages=ASK,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "city", "schema": schema}},
            extra_body={"swarm": {"strategy": "first_valid", "n": 3}})
        assert reply.choices[0].message.content == '{"city": "Paris"}'
        swarm = reply.model_extra["swarm"]
        assert [c["valid"] for c in swarm["candidates"]].count(True) == 1
    finally:
        server.stop()


def test_streaming_consensus_streams_the_winner_with_its_report(trio):
    _pool, _server, client = trio
    chunks = list(client.chat.completions.create(
        model="scripted", messages=ASK, stream=True, stream_options={"include_usage": True},
        extra_body={"swarm": {"strategy": "weighted_vote", "n": 3}}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason][-1]
    assert final.model_extra["swarm"]["strategy"] == "weighted_vote"
    assert chunks[-1].usage is not None


def test_partial_failure_never_fails_the_request():
    pool, server = serve(ScriptedBackend(["boom"], fail=True),
                         ScriptedBackend(["Paris"], token_latency_s=0.001))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            body = {"messages": ASK, "swarm": {"strategy": "weighted_vote", "n": 2}}
            reply = http.post("/v1/chat/completions", json=body).json()
        assert reply["choices"][0]["message"]["content"] == "Paris"
        errors = [c["error"] for c in reply["swarm"]["candidates"] if c["error"]]
        assert len(errors) == 1 and "boom" in errors[0] or "Scripted" in errors[0]
    finally:
        server.stop()


def test_total_failure_is_one_clear_error_naming_each_candidate():
    pool, server = serve(ScriptedBackend(["x"], fail=True), ScriptedBackend(["y"], fail=True))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            body = {"messages": ASK, "swarm": {"strategy": "best_of_n", "n": 2}}
            response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 502
        message = response.json()["error"]["message"]
        assert "local/0" in message and "local/1" in message
    finally:
        server.stop()


def test_deadline_without_quorum_is_504():
    pool, server = serve(ScriptedBackend(["slow answer"], first_token_latency_s=5.0))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            body = {"messages": ASK, "swarm": {"strategy": "first_valid", "n": 1,
                                               "timeout_s": 0.2}}
            response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 504
        assert response.json()["error"]["code"] == "consensus_timeout"
    finally:
        server.stop()


@pytest.mark.parametrize(("swarm", "extra"), [
    ({"strategy": "majority"}, {}),
    ({"strategy": "weighted_vote", "n": 0}, {}),
    ({"strategy": "weighted_vote", "n": 99}, {}),
    ({"strategy": "weighted_vote", "bogus": 1}, {}),
    ({"strategy": "first_valid", "regex": "("}, {}),
    ({"strategy": "weighted_vote", "n": 2, "quorum": 3}, {}),
    ({"strategy": "weighted_vote"}, {"n": 2}),
    ({"strategy": "first_valid"}, {"response_format": {"type": "json_schema",
                                                       "json_schema": {"schema": 5}}}),
    ("vote", {}),
])
def test_bad_swarm_fields_are_400(trio, swarm, extra):
    _pool, server, _client = trio
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.post("/v1/chat/completions",
                             json={"messages": ASK, "swarm": swarm, **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]


def test_default_strategy_from_config_applies():
    pool, server = serve(ScriptedBackend(["Paris"]), ScriptedBackend(["Paris"]),
                         consensus=ConsensusConfig(strategy="weighted_vote", n=2))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            reply = http.post("/v1/chat/completions", json={"messages": ASK}).json()
        assert reply["swarm"]["strategy"] == "weighted_vote"
        assert len(reply["swarm"]["candidates"]) == 2
    finally:
        server.stop()


def test_full_queues_give_429_with_retry_after():
    pool, server = serve(ScriptedBackend(["slow " * 100], token_latency_s=0.05), queue_depth=0)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            with http.stream("POST", "/v1/chat/completions",
                             json={"messages": ASK, "stream": True}) as first:
                assert first.status_code == 200
                second = http.post("/v1/chat/completions", json={"messages": ASK})
                assert second.status_code == 429
                assert int(second.headers["Retry-After"]) >= 1
    finally:
        server.stop()


@pytest.mark.slow
def test_real_model_weighted_vote_over_two_instances(node_config):
    import dataclasses

    from swarm.engine.loader import load_backends, plan_from_config
    plan = dataclasses.replace(plan_from_config(node_config), instances=2, threads=1)
    pool, server = serve(*load_backends(plan, node_config))
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
        reply = client.chat.completions.create(
            model="default", messages=[{"role": "user",
                                        "content": "What is the capital of France?"}],
            max_tokens=24, seed=1,
            extra_body={"swarm": {"strategy": "weighted_vote", "n": 3}})
        swarm = reply.model_extra["swarm"]
        assert {c["source"] for c in swarm["candidates"]} == {"local/0", "local/1"}
        assert sum(1 for c in swarm["candidates"] if c["tokens"] > 0) >= 2
        assert reply.choices[0].message.content.strip()
    finally:
        server.stop()
        pool.close()
