"""Every bound of the API answers a clear 4xx in OpenAI's error body, before any work starts."""
from __future__ import annotations

import json
from contextlib import ExitStack

import httpx
import pytest

from network.api.app import build_app
from network.api.openai.schema import MAX_MESSAGE_CHARS, MAX_MESSAGES
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.node.config import ApiConfig
from tests.server import ServerThread, ipv6_loopback, wait_until

ASK = [{"role": "user", "content": "Capital of France?"}]
SLOW = "slow " * 200  # 200 tokens at 20 ms: runs until the test lets go


@pytest.fixture()
def served():
    """Start servers over scripted pools; stop them all at the end."""
    servers: list[ServerThread] = []

    def start(pool: InstancePool, api: ApiConfig | None = None, *,
              ipv6: bool = False) -> httpx.Client:
        server = ServerThread(lambda: build_app(pool, api or ApiConfig()), ipv6=ipv6).start()
        servers.append(server)
        client = httpx.Client(base_url=server.url, timeout=30)
        client.url6 = server.url6  # type: ignore[attr-defined]
        return client

    yield start
    for server in servers:
        server.stop()


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    return error


def test_prompt_tokens_over_the_limit_are_400_and_never_reach_an_instance(served):
    backend = ScriptedBackend(["ok"])
    http = served(InstancePool([backend]), ApiConfig(max_prompt_tokens=10))
    long = " ".join(["word"] * 11)
    for stream in (False, True):
        error = error_of(http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": long}], "stream": stream}), 400)
        assert error["code"] == "prompt_too_long" and error["param"] == "messages"
        error = error_of(http.post("/v1/completions", json={"prompt": long, "stream": stream}),
                         400)
        assert error["code"] == "prompt_too_long" and error["param"] == "prompt"
    error = error_of(http.post("/v1/chat/completions", json={
        "messages": [{"role": "user", "content": long}],
        "swarm": {"strategy": "weighted_vote", "n": 2}}), 400)
    assert error["code"] == "prompt_too_long"
    assert backend.requests == []
    assert http.post("/v1/completions", json={"prompt": "short prompt"}).status_code == 200


def test_context_overflow_is_checked_before_route_mode_too(served):
    backend = ScriptedBackend(["ok"], context_length=20)
    http = served(InstancePool([backend]))
    error = error_of(http.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 19}),
                     400)
    assert error["code"] == "context_length_exceeded"
    assert backend.requests == []


@pytest.mark.skipif(ipv6_loopback() is not None, reason=str(ipv6_loopback()))
def test_concurrent_requests_per_client_are_bounded_by_address(served):
    pool = InstancePool([ScriptedBackend([SLOW], token_latency_s=0.02) for _ in range(2)],
                        queue_depth=8)
    http = served(pool, ApiConfig(max_concurrent_per_client=2), ipv6=True)
    body = {"messages": ASK, "stream": True}
    with ExitStack() as streams:
        for _ in range(2):
            response = streams.enter_context(http.stream("POST", "/v1/chat/completions",
                                                         json=body))
            assert response.status_code == 200
        third = http.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 1})
        error = error_of(third, 429)
        assert error["code"] == "rate_limit_exceeded" and third.headers["Retry-After"] == "1"
        assert error_of(http.post("/v1/completions", json={"prompt": "x"}), 429)
        # Another address on the same machine is another client (::1: macOS has no 127.0.0.2).
        other = httpx.Client(base_url=http.url6, timeout=30)
        with other:
            assert other.post("/v1/chat/completions",
                              json={"messages": ASK, "max_tokens": 1}).status_code == 200
        assert http.get("/health").status_code == 200  # only generation requests count
    wait_until(lambda: all(i.active == 0 for i in pool.instances),
               what="the streams to be cancelled")
    assert http.post("/v1/chat/completions",
                     json={"messages": ASK, "max_tokens": 1}).status_code == 200


def test_consensus_on_full_queues_is_429_at_once_even_when_streaming(served):
    pool = InstancePool([ScriptedBackend([SLOW], token_latency_s=0.02)], queue_depth=0)
    http = served(pool)
    with http.stream("POST", "/v1/chat/completions",
                     json={"messages": ASK, "stream": True}) as first:
        assert first.status_code == 200
        for stream in (False, True):
            response = http.post("/v1/chat/completions", timeout=5, json={
                "messages": ASK, "stream": stream,
                "swarm": {"strategy": "weighted_vote", "n": 3, "timeout_s": 60}})
            assert error_of(response, 429)["code"] == "rate_limit_exceeded"
            assert int(response.headers["Retry-After"]) >= 1


def test_n_choices_that_do_not_fit_the_queues_are_429_before_the_stream_starts(served):
    pool = InstancePool([ScriptedBackend(["a b c"]), ScriptedBackend(["a b c"])], queue_depth=1)
    http = served(pool)
    for stream in (False, True):
        response = http.post("/v1/chat/completions", json={"messages": ASK, "n": 5,
                                                              "stream": stream})
        assert error_of(response, 429)["code"] == "rate_limit_exceeded"
    # Four fit (two per instance), and they are spread over both instances.
    reply = http.post("/v1/chat/completions", json={"messages": ASK, "n": 4}).json()
    sources = [c["source"] for c in reply["swarm"]["candidates"]]
    assert sorted(sources) == ["local/0", "local/0", "local/1", "local/1"]


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": ASK * (MAX_MESSAGES + 1)}, "messages"),
    ({"messages": [{"role": "user", "content": "x" * (MAX_MESSAGE_CHARS + 1)}]},
     "messages.0.content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 300_000}] * 2}]},
     "messages.0.content"),
    ({"messages": ASK, "stop": ["x" * 257]}, "stop"),
    ({"messages": ASK, "seed": 2**64}, "seed"),
    ({"messages": ASK, "model": "m" * 257}, "model"),
    ({"messages": ASK, "max_completion_tokens": 0}, "max_tokens"),
    ({"messages": ASK, "n": 17}, "n"),
    ({"messages": ASK, "swarm": {"strategy": "weighted_vote", "n": 17}}, "swarm"),
])
def test_bounds_inside_the_body_are_400_naming_the_parameter(served, body, param):
    http = served(InstancePool([ScriptedBackend(["ok"])]), ApiConfig(max_body_bytes=2 << 20))
    error = error_of(http.post("/v1/chat/completions", json=body), 400)
    assert error["param"] == param


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,  # json.loads recursion
    json.dumps({"messages": ASK, "response_format": {"type": "json_schema", "json_schema": {
        "schema": json.loads('{"items":' * 100 + "{}" + "}" * 100)}}}).encode(),
    b'{"messages": [{"role": "user", "content": "hi"}], "seed": ' + b"1" * 5000 + b"}",
    b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    b'{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}',
])
def test_hostile_json_is_400_not_500(served, raw):
    http = served(InstancePool([ScriptedBackend(["ok"])]))
    response = http.post("/v1/chat/completions", content=raw,
                         headers={"Content-Type": "application/json"})
    error_of(response, 400)


def test_integer_fields_given_as_floats_are_taken_as_integers(served):
    http = served(InstancePool([ScriptedBackend(["one two three four"]),
                                ScriptedBackend(["one two three four"])]))
    reply = http.post("/v1/chat/completions", json={"messages": ASK, "max_tokens": 2.0,
                                                    "n": 2.0, "seed": 7.0}).json()
    assert [c["finish_reason"] for c in reply["choices"]] == ["length", "length"]
    reply = http.post("/v1/completions", json={"prompt": "x", "seed": -1,
                                               "swarm": {"strategy": "weighted_vote",
                                                         "n": 2.0, "quorum": 1.0}})
    assert reply.status_code == 200, reply.text


def test_client_table_holds_only_clients_in_flight():
    import asyncio

    from network.api.limits import ClientLimiter

    async def run() -> None:
        limiter = ClientLimiter(1)
        async with limiter.hold("10.0.0.1"):
            assert limiter.active("10.0.0.1") == 1
            with pytest.raises(Exception, match="too many concurrent"):
                async with limiter.hold("10.0.0.1"):
                    pass
        assert limiter.active("10.0.0.1") == 0 and not limiter._active
        assert limiter.refused == 1

    asyncio.run(run())


def test_malformed_http_is_logged_once_per_interval_without_a_traceback():
    import logging

    from aiohttp.http_exceptions import BadHttpMessage

    from network.api.app import BadRequestLogFilter

    now = [0.0]
    quiet = BadRequestLogFilter(interval_s=60, clock=lambda: now[0])

    def record() -> logging.LogRecord:
        try:
            raise BadHttpMessage("Invalid header value char")
        except BadHttpMessage:
            import sys

            return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1,
                                     "Error handling request", (), sys.exc_info())

    first = record()
    assert quiet.filter(first) and first.levelno == logging.WARNING and first.exc_info is None
    assert "malformed HTTP request" in first.getMessage()
    assert not quiet.filter(record()) and quiet.suppressed == 1
    now[0] = 61.0
    assert quiet.filter(record())
    other = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "boom", (), None)
    assert quiet.filter(other) and other.levelno == logging.ERROR
