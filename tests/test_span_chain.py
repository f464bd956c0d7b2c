"""The span chain behind the `Source` seam: its speed (pure), how it maps the span worker's
events, and how route mode's serving code and consensus use it through `SwarmSources`.

A scripted driver stands in for `SpanService` here (fast tests of the adapter's logic); the real
chain, through real Petals processes, is tests/test_span_nodes.py's.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.service import ConsensusService
from network.api.app import build_app
from network.coordination.chooser import spread
from network.federation.sources import FederatedAsk, SwarmSources
from network.petals.chain import SpanChain, SpanChainError, chain_speed
from network.petals.client import SpanGenerationError
from network.wire.spans import SpanAssignment, SpanPlan
from swarm.engine.backend import (
    GenerationRequest,
    SamplingParams,
    StreamEnd,
    TokenEvent,
    TopLogprob,
)
from swarm.engine.constraint import json_constraint
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.engine.source import Source
from swarm.errors import PeerError, PoolBusyError, RequestError
from swarm.node.config import ApiConfig, ConsensusConfig
from tests.server import ServerThread

PLAN = SpanPlan("m", 30, "m", (), (SpanAssignment("a", 0, 15), SpanAssignment("b", 15, 30)))
WORDS = ["Paris", " is", " the", " capital", "."]


class ScriptedDriver:
    """The span worker's events for canned words; `fail_after` raises like a lost chain."""

    def __init__(self, words: list[str] = WORDS, *, reason: str | None = None,
                 fail_after: int | None = None, delay_s: float = 0.0) -> None:
        self.node_id = "a"
        self.words, self.reason, self.fail_after, self.delay_s = words, reason, fail_after, delay_s
        self.requests: list[dict[str, Any]] = []
        self.started = asyncio.Event()
        self.closed = 0

    def unavailable(self) -> str | None:
        return self.reason

    def speeds(self) -> dict[str, float]:
        return {"a": 10.0, "b": 10.0}

    def current_plan(self) -> SpanPlan | None:
        return PLAN

    async def generate(self, request: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        self.requests.append(request)
        self.started.set()
        try:
            count = 0
            for i, word in enumerate(self.words[:request["max_tokens"]]):
                if i == self.fail_after:
                    raise SpanGenerationError("span server gone, no replica")
                await asyncio.sleep(self.delay_s)
                event: dict[str, Any] = {"token": 100 + i, "text": word, "logprob": -0.25}
                if i == 0:
                    event["prompt_tokens"] = 7
                if request["logprobs"]:
                    event["piece"] = word.encode().hex()
                if request["top_logprobs"]:
                    event["top"] = [[word.encode().hex(), -0.25], ["2e", -2.0]]
                count += 1
                yield event
            yield {"done": True, "finish_reason": "length" if count == request["max_tokens"]
                   else "stop", "prompt_tokens": 7, "completion_tokens": count}
        finally:
            self.closed += 1


def ask(max_tokens: int = 16, stop: tuple[str, ...] = (), **params: Any) -> GenerationRequest:
    return GenerationRequest(prompt="Capital of France?",
                             params=SamplingParams(max_tokens=max_tokens, temperature=0.0,
                                                   stop=stop, **params))


@given(st.lists(st.tuples(st.integers(0, 9), st.integers(1, 10), st.floats(0.1, 100.0)),
                min_size=1, max_size=4))
def test_chain_speed_is_at_most_its_fastest_node_and_zero_with_a_gap(rows):
    spans = [(s, min(10, s + n), speed) for s, n, speed in rows]
    plan = SpanPlan("m", 10, "m", (), tuple(SpanAssignment(f"n{i}", s, e)
                                             for i, (s, e, _v) in enumerate(spans)))
    speeds = {f"n{i}": v for i, (_s, _e, v) in enumerate(spans)}
    speed = chain_speed(plan, speeds)
    covered = {b for s, e, _v in spans for b in range(s, e)}
    if covered != set(range(10)):
        assert speed == 0.0
    else:
        assert 0 < speed <= max(speeds.values()) * (1 + 1e-9)
        assert speed >= min(speeds.values()) * (1 - 1e-9)
    assert chain_speed(SpanPlan("m", 10, "m", (), tuple(reversed(plan.assignments))),
                       speeds) == pytest.approx(speed)


def test_a_chain_over_one_node_is_as_fast_as_that_node_and_halves_evenly():
    whole = SpanPlan("m", 30, "m", (), (SpanAssignment("a", 0, 30),))
    assert chain_speed(whole, {"a": 12.0}) == pytest.approx(12.0)
    assert chain_speed(PLAN, {"a": 12.0, "b": 12.0}) == pytest.approx(12.0)
    assert chain_speed(PLAN, {"a": 12.0}) == 0.0  # b not measured


async def test_the_chain_streams_tokens_and_ends_like_an_instance():
    driver = ScriptedDriver()
    chain = SpanChain(driver, queue_depth=0)
    events = [e async for e in chain.stream(ask())]
    assert [e.text for e in events if isinstance(e, TokenEvent)] == WORDS
    assert events[-1] == StreamEnd("stop", 7, 5)
    answer = await chain.complete(ask(max_tokens=3))
    assert answer.answered_by == "spans" and answer.completion.text == "Paris is the"
    assert answer.completion.finish_reason == "length"
    assert answer.completion.logprobs == (-0.25, -0.25, -0.25)
    assert driver.requests[-1] == {"prompt": "Capital of France?", "max_tokens": 3,
                                   "temperature": 0.0, "top_p": 1.0, "seed": None,
                                   "logprobs": False, "top_logprobs": 0}
    assert answer.completion.pieces == () and answer.completion.top == ()
    detailed = (await chain.complete(ask(max_tokens=2, logprobs=True, top_logprobs=2))).completion
    assert detailed.pieces == (b"Paris", b" is")
    assert detailed.top[1] == (TopLogprob(b" is", -0.25), TopLogprob(b".", -2.0))
    assert chain.load() == 0 and chain.capacity() == 1 and chain.served == 3
    assert chain.node_id == "a" and chain.score == pytest.approx(10.0)
    assert isinstance(chain, Source)


async def test_a_stop_string_ends_the_chain_and_closes_the_generation():
    driver = ScriptedDriver()
    answer = await SpanChain(driver).complete(ask(stop=("capital",)))
    assert answer.completion.text == "Paris is the "
    assert answer.completion.finish_reason == "stop"
    assert driver.closed == 1  # the worker was told to stop, not left running


async def test_a_constrained_request_is_refused_before_the_chain_runs():
    driver = ScriptedDriver()
    constrained = replace(ask(), constraint=json_constraint(None))
    with pytest.raises(SpanChainError, match="not enforced through layer spans"):
        await SpanChain(driver).complete(constrained)
    assert driver.requests == []  # refused before the worker was asked


async def test_a_lost_chain_is_a_peer_error_and_an_unready_one_a_503():
    with pytest.raises(SpanChainError) as lost:
        await SpanChain(ScriptedDriver(fail_after=2)).complete(ask())
    assert isinstance(lost.value, PeerError)
    with pytest.raises(RequestError) as unready:
        await SpanChain(ScriptedDriver(reason="blocks 20:30 have no server")).complete(ask())
    assert unready.value.status == 503 and unready.value.code == "spans_unavailable"


async def test_a_full_chain_refuses_with_pool_busy():
    driver = ScriptedDriver(delay_s=0.05)
    chain = SpanChain(driver, queue_depth=0)
    running = asyncio.create_task(chain.complete(ask()))
    await asyncio.wait_for(driver.started.wait(), 10)
    assert chain.capacity() == 0 and chain.load() == 1.0
    with pytest.raises(PoolBusyError):
        await chain.complete(ask())
    await running


def test_swarm_sources_hold_the_chain_only_while_it_can_serve():
    pool = InstancePool([ScriptedBackend()], node_id="a", score=10.0)
    driver = ScriptedDriver()
    sources = SwarmSources(pool, chain=SpanChain(driver))
    assert [s.source_id for s in sources()] == ["local/0", "spans"]
    # Consensus spreads candidates over this node's instances and the chain (as fast: ids).
    assert [s.source_id for s in spread(sources(), 2)] == ["local/0", "spans"]
    driver.reason = "no span map yet"
    assert [s.source_id for s in sources()] == ["local/0"]
    assert sources.span_chain()[0].source_id == "spans"  # it answers the 503 itself
    with pytest.raises(RequestError) as disabled:
        SwarmSources(pool).span_chain()
    assert disabled.value.status == 400 and disabled.value.code == "spans_disabled"


@pytest.fixture()
def chain_node():
    """A node's app whose sources are a scripted instance and a span chain."""
    pool = InstancePool([ScriptedBackend(["Lyon."], logprob=-3.0)], queue_depth=2, node_id="a")
    driver = ScriptedDriver()
    sources = SwarmSources(pool, chain=SpanChain(driver, queue_depth=2))
    service = ConsensusService(sources, spread, FederatedAsk(sources))
    server = ServerThread(lambda: build_app(pool, ApiConfig(), ConsensusConfig(), service,
                                            sources=sources)).start()
    yield server, driver
    server.stop()


def post(server: ServerThread, swarm: dict[str, Any], **extra: Any) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", timeout=30, json={
        "messages": [{"role": "user", "content": "Capital of France?"}], "temperature": 0,
        "max_tokens": 16, "swarm": swarm, **extra})


def test_strategy_spans_answers_through_the_chain_whole_and_streamed(chain_node):
    server, driver = chain_node
    body = post(server, {"strategy": "spans"}).json()
    assert body["choices"][0]["message"]["content"] == "Paris is the capital."
    assert body["swarm"]["strategy"] == "spans" and body["swarm"]["winner"] == "spans"
    assert driver.requests[-1]["messages"] == [{"role": "user", "content": "Capital of France?"}]
    with httpx.stream("POST", server.url + "/v1/chat/completions", timeout=30, json={
            "messages": [{"role": "user", "content": "Hi"}], "stream": True, "n": 2,
            "swarm": {"strategy": "spans"}}) as reply:
        text = "".join(reply.iter_text())
    assert reply.status_code == 200 and text.rstrip().endswith("data: [DONE]")
    assert text.count('"finish_reason": "stop"') == 2  # two choices, one after the other


def test_consensus_takes_the_chain_as_one_more_candidate(chain_node):
    server, _driver = chain_node
    body = post(server, {"strategy": "best_of_n", "n": 2}).json()
    assert {c["source"] for c in body["swarm"]["candidates"]} == {"local/0", "spans"}
    assert body["swarm"]["winner"] == "spans"  # logprob -0.25 a token beats -3.0
    assert body["choices"][0]["message"]["content"] == "Paris is the capital."


def test_ollama_lists_and_serves_the_spans_tag_only_on_a_node_with_a_chain(chain_node):
    server, driver = chain_node
    tags = [m["model"] for m in httpx.get(server.url + "/api/tags", timeout=30).json()["models"]]
    assert tags[0].endswith(":latest") and tags[-1].endswith(":spans")
    reply = httpx.post(server.url + "/api/chat", timeout=30, json={
        "model": tags[-1], "stream": False,
        "messages": [{"role": "user", "content": "Capital of France?"}]}).json()
    assert reply["message"]["content"] == "Paris is the capital." and driver.requests


def test_a_chain_that_cannot_serve_is_a_503_and_one_that_fails_a_502(chain_node):
    server, driver = chain_node
    driver.reason = "blocks 20:30 of m have no server"
    refused = post(server, {"strategy": "spans"})
    assert refused.status_code == 503 and "have no server" in refused.json()["error"]["message"]
    driver.reason, driver.fail_after = None, 0
    failed = post(server, {"strategy": "spans"})
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "peer_failed"
    # In consensus the failed chain's candidate is retried on the local instance.
    voted = post(server, {"strategy": "best_of_n", "n": 2}).json()
    assert voted["choices"][0]["message"]["content"] == "Lyon."


def test_response_format_through_spans_is_a_400_and_consensus_gives_the_chain_s_candidate_away():
    pool = InstancePool([ScriptedBackend(['{"city": "Paris"}'])], queue_depth=2, node_id="a")
    driver = ScriptedDriver()
    sources = SwarmSources(pool, chain=SpanChain(driver, queue_depth=2))
    service = ConsensusService(sources, spread, FederatedAsk(sources, backoff_s=0.0))
    server = ServerThread(lambda: build_app(pool, ApiConfig(), ConsensusConfig(), service,
                                            sources=sources)).start()
    try:
        fmt = {"type": "json_object"}
        refused = post(server, {"strategy": "spans"}, response_format=fmt)
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "unsupported_with_spans"
        voted = post(server, {"strategy": "best_of_n", "n": 2}, response_format=fmt).json()
        candidates = voted["swarm"]["candidates"]
        assert [c["source"] for c in candidates] == ["local/0", "local/0"]  # the chain's moved
        assert all(c["valid"] for c in candidates) and driver.requests == []
    finally:
        server.stop()
