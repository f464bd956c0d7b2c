"""The OpenAI API over the real embedded model, with the official `openai` client and raw HTTP."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.server import wait_until

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture()
def client(api_server):
    return openai.OpenAI(base_url=api_server.url + "/v1", api_key="none", max_retries=0)


@pytest.fixture()
def http(api_server):
    with httpx.Client(base_url=api_server.url, timeout=60) as c:
        yield c


def test_greedy_chat_answers_paris(client, transformers_pool):
    reply = client.chat.completions.create(model=transformers_pool.model_id, messages=FRANCE,
                                           temperature=0, max_tokens=24)
    assert "Paris" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens > 10
    assert reply.usage.completion_tokens == reply.usage.total_tokens - reply.usage.prompt_tokens


def test_streaming_chat_with_usage(client):
    stream = client.chat.completions.create(model="default", messages=FRANCE, temperature=0,
                                            max_tokens=24, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_raw_sse_ends_with_done(http):
    body = {"messages": FRANCE, "max_tokens": 4, "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "data: [DONE]"
    assert all(json.loads(d[6:])["object"] == "chat.completion.chunk" for d in data[:-1])


def test_text_completion_and_stop(client):
    reply = client.completions.create(model="default", prompt="1, 2, 3, 4,", max_tokens=12,
                                      temperature=0, stop=["7"])
    assert reply.object == "text_completion"
    assert "7" not in reply.choices[0].text
    assert reply.choices[0].finish_reason in ("stop", "length")


def test_n_choices_with_seed_are_reproducible(client):
    def ask():
        return client.chat.completions.create(model="default", messages=FRANCE, n=2, seed=7,
                                              temperature=1.0, max_tokens=8)
    first, second = ask(), ask()
    assert [c.index for c in first.choices] == [0, 1]
    assert [c.message.content for c in first.choices] == [c.message.content
                                                          for c in second.choices]


def test_streaming_n_choices_interleave(client):
    stream = client.chat.completions.create(model="default", messages=FRANCE, n=2, seed=3,
                                            max_tokens=6, stream=True)
    finished = {c.choices[0].index for c in stream if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


def test_models_and_health(http, transformers_pool):
    models = http.get("/v1/models").json()
    assert models["data"][0]["id"] == transformers_pool.model_id
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["instances"] == 1


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"messages": FRANCE, "model": "gpt-9"}, 404, "model"),
    ({"messages": FRANCE, "max_tokens": 0}, 400, "max_tokens"),
    ({"messages": FRANCE, "max_tokens": 10**6}, 400, "max_tokens"),
    ({"messages": FRANCE, "temperature": "hot"}, 400, "temperature"),
    ({"messages": FRANCE, "n": 0}, 400, "n"),
    ({"messages": FRANCE, "n": 1000}, 400, "n"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
    ({"prompt": "no messages here"}, 400, None),
    ({"messages": FRANCE, "stop": 5}, 400, "stop"),
])
def test_bad_input_gets_openai_error(http, body, status, param):
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if param:
        assert error["param"] == param


def test_invalid_json_and_wrong_shapes(http):
    for raw in (b"{not json", b"\xff\xfe", b"[1, 2]", b"null"):
        response = http.post("/v1/chat/completions", content=raw,
                             headers={"Content-Type": "application/json"})
        assert response.status_code == 400, raw
        assert "error" in response.json()


def test_oversize_body_is_413(http, node_config):
    big = "x" * (node_config.api.max_body_bytes + 10)
    response = http.post("/v1/chat/completions",
                         json={"messages": [{"role": "user", "content": big}]})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_context_overflow_is_400_even_when_streaming(http):
    long = "word " * 9000
    for stream in (False, True):
        response = http.post("/v1/chat/completions", json={
            "messages": [{"role": "user", "content": long}], "stream": stream})
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "context_length_exceeded"


def test_unknown_route_and_method_are_json(http):
    assert http.get("/v1/nothing").json()["error"]["message"]
    response = http.get("/v1/chat/completions")
    assert response.status_code == 405 and "error" in response.json()


def test_disconnect_cancels_generation(api_server, transformers_pool):
    instance = transformers_pool.instances[0]
    body = {"messages": [{"role": "user", "content": "Tell me a very long story."}],
            "max_tokens": 2000, "temperature": 0.8, "stream": True}
    with httpx.Client(base_url=api_server.url, timeout=60) as http:
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            next(line for line in lines if '"content"' in line and '""' not in line)
            assert instance.active == 1
    # Without cancellation 2000 tokens would keep the instance busy for minutes.
    wait_until(lambda: instance.active == 0, timeout=10, what="the generation to be cancelled")


def test_api_keys_are_enforced(transformers_pool, node_config):
    import dataclasses

    from network.api.app import build_app
    from tests.server import ServerThread

    api = dataclasses.replace(node_config.api, keys=("sekrit",))
    server = ServerThread(lambda: build_app(transformers_pool, api)).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/v1/models").status_code == 401
            assert http.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
            assert http.get("/v1/models", headers={"Authorization": "Bearer sekrit"}).status_code == 200
            assert http.get("/health").status_code == 200
    finally:
        server.stop()
