"""Ollama's API (/api/*) over the real embedded model, driven by the official `ollama` client from
PyPI (streaming and not), and by raw HTTP where the client hides the wire (NDJSON, errors)."""
from __future__ import annotations

import json

import httpx
import ollama
import pytest

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture()
def client(api_server) -> ollama.Client:
    return ollama.Client(host=api_server.url, timeout=120)


@pytest.fixture()
def http(api_server):
    with httpx.Client(base_url=api_server.url, timeout=120) as c:
        yield c


def test_tags_show_ps_and_version_describe_the_served_model(client, http, transformers_pool):
    model = transformers_pool.model_id
    names = [m.model for m in client.list().models]
    assert names == [f"{model}:latest", f"{model}:best_of_n", f"{model}:weighted_vote",
                     f"{model}:first_valid"]
    shown = client.show(model)
    assert shown.modelinfo["general.name"] == model
    assert shown.modelinfo["general.context_length"] == transformers_pool.context_length
    assert [m.model for m in client.ps().models] == [f"{model}:latest"]
    assert http.get("/api/version").json()["version"]
    with pytest.raises(ollama.ResponseError) as caught:
        client.show("llama3")
    assert caught.value.status_code == 404


def test_chat_greedy_answers_paris_streamed_and_whole(client, transformers_pool):
    whole = client.chat(model=transformers_pool.model_id, messages=FRANCE, options=GREEDY,
                        stream=False)
    assert "Paris" in whole.message.content and whole.done and whole.done_reason == "stop"
    assert whole.prompt_eval_count > 10 and 0 < whole.eval_count <= 24
    assert whole.total_duration > 0
    parts = list(client.chat(model=transformers_pool.model_id, messages=FRANCE, options=GREEDY,
                             stream=True))
    assert len(parts) > 3 and parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].eval_count == whole.eval_count


def test_generate_streams_ndjson_and_honours_num_predict_and_stop(client, http):
    parts = list(client.generate(model="default", prompt="What is the capital of France?",
                                 options=GREEDY, stream=True))
    text = "".join(p.response for p in parts)
    assert "Paris" in text and parts[-1].done
    short = client.generate(model="default", prompt="Tell me a long story.",
                            options={"temperature": 0, "num_predict": 3}, stream=False)
    assert short.eval_count == 3 and short.done_reason == "length"
    stopped = client.generate(model="default", prompt="What is the capital of France?",
                              options={**GREEDY, "stop": ["Paris"]}, stream=False)
    assert "Paris" not in stopped.response and stopped.done_reason == "stop"
    with http.stream("POST", "/api/generate", json={"model": "default", "prompt": "Hi",
                                                    "options": {"num_predict": 4}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        records = [json.loads(line) for line in r.iter_lines() if line]
    assert records[-1]["done"] is True and all("response" in rec for rec in records)


def test_seed_makes_sampled_answers_reproducible(client):
    sampled = {"temperature": 1.0, "seed": 1234, "num_predict": 16}
    first = client.chat(model="default", messages=FRANCE, options=sampled).message.content
    again = client.chat(model="default", messages=FRANCE, options=sampled,
                        stream=False).message.content
    assert first == again


def test_a_strategy_through_the_model_tag_or_options_swarm(client, http, transformers_pool):
    voted = http.post("/api/chat", json={
        "model": f"{transformers_pool.model_id}:weighted_vote", "messages": FRANCE,
        "stream": False, "options": {"temperature": 0.7, "num_predict": 16}}).json()
    assert voted["swarm"]["strategy"] == "weighted_vote"
    assert len(voted["swarm"]["candidates"]) >= 2 and voted["done"] is True
    parts = list(client.chat(model="default", messages=FRANCE, stream=True, options={
        "num_predict": 16, "temperature": 0.7, "swarm": {"strategy": "best_of_n", "n": 2}}))
    assert parts[-1].done and "".join(p.message.content for p in parts)
    stats = http.get("/v1/federation/stats").json()
    assert stats["by_strategy"]["weighted_vote"]["requests"] >= 1
    assert stats["by_strategy"]["best_of_n"]["requests"] >= 1
    assert stats["by_api"]["ollama"]["completion_tokens"] > 0


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"model": "default", "messages": FRANCE, "options": {"temperature": 5}}, 400,
     "options.temperature"),
    ({"model": "default", "messages": FRANCE, "options": {"num_predict": 0}}, 400,
     "options.num_predict"),
    ({"model": "default", "messages": FRANCE, "options": {"swarm": {"strategy": "x"}}}, 400,
     "options.swarm.strategy"),
    ({"model": "default:majority", "messages": FRANCE}, 404, "majority"),
    ({"model": "llama3", "messages": FRANCE}, 404, "llama3"),
    ({"messages": FRANCE}, 400, "model"),
    ({"model": "default", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "role"),
])
def test_bad_input_gets_a_clear_4xx_in_ollamas_error_body(http, body, status, field):
    reply = http.post("/api/chat", json=body)
    assert reply.status_code == status
    assert field in reply.json()["error"]


def test_bad_json_and_the_client_sees_the_error(http, client):
    reply = http.post("/api/generate", content=b"{not json", headers={
        "Content-Type": "application/json"})
    assert reply.status_code == 400 and isinstance(reply.json()["error"], str)
    with pytest.raises(ollama.ResponseError) as caught:
        client.chat(model="default", messages=FRANCE, options={"temperature": -1})
    assert caught.value.status_code == 400 and "temperature" in caught.value.error
    loaded = http.post("/api/chat", json={"model": "default"}).json()  # Ollama's "load"
    assert loaded["done_reason"] == "load"
