"""Structured output and logprobs through the real API over the real embedded model: JSON that
parses because it was enforced while decoding (route, consensus, streaming, the OpenAI SDK's
`parse`), a regex, and token log-probabilities in OpenAI's shapes."""
from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel, Field

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
CITY_SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "country"],
               "properties": {"city": {"type": "string", "maxLength": 20},
                              "country": {"type": "string", "maxLength": 20}}}
AS_SCHEMA = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}}


class City(BaseModel):
    city: str = Field(max_length=20)
    country: str = Field(max_length=20)


@pytest.fixture()
def client(api_server):
    return openai.OpenAI(base_url=api_server.url + "/v1", api_key="none", max_retries=0)


@pytest.fixture()
def http(api_server):
    with httpx.Client(base_url=api_server.url, timeout=120) as c:
        yield c


def test_the_sdk_parse_returns_a_parsed_object(client):
    reply = client.chat.completions.parse(model="default", messages=FRANCE, response_format=City,
                                          temperature=0, max_tokens=40)
    parsed = reply.choices[0].message.parsed
    assert isinstance(parsed, City) and parsed.city


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_json_object_always_parses_even_when_max_tokens_is_short(client, temperature):
    reply = client.chat.completions.create(
        model="default", temperature=temperature, seed=5, max_tokens=24,
        messages=[{"role": "user", "content": "Describe a person as JSON."}],
        response_format={"type": "json_object"})
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_streamed_json_schema_parses_and_validates(client):
    from jsonschema import validate

    stream = client.chat.completions.create(model="default", messages=FRANCE, temperature=0.8,
                                            seed=3, max_tokens=40, stream=True,
                                            response_format=AS_SCHEMA)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    validate(json.loads(text), CITY_SCHEMA)


@pytest.mark.parametrize("strategy", ["best_of_n", "weighted_vote", "first_valid"])
def test_every_consensus_strategy_constrains_its_candidates(client, strategy):
    from jsonschema import validate

    reply = client.chat.completions.create(
        model="default", messages=FRANCE, max_tokens=40, response_format=AS_SCHEMA,
        extra_body={"swarm": {"strategy": strategy, "n": 2}})
    validate(json.loads(reply.choices[0].message.content), CITY_SCHEMA)
    assert all(c["valid"] for c in reply.model_extra["swarm"]["candidates"] if not c["error"])


def test_a_regex_is_enforced_in_route_mode(client):
    reply = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "Is the sun hot?"}],
        temperature=0.8, seed=1, max_tokens=8, extra_body={"swarm": {"regex": "^(yes|no)$"}})
    assert reply.choices[0].message.content in ("yes", "no")


def test_chat_logprobs_in_openai_shape(client):
    reply = client.chat.completions.create(model="default", messages=FRANCE, temperature=0,
                                           max_tokens=8, logprobs=True, top_logprobs=3)
    content = reply.choices[0].logprobs.content
    assert "".join(t.token for t in content) == reply.choices[0].message.content
    for entry in content:
        assert bytes(entry.bytes).decode() == entry.token and entry.logprob <= 0
        assert len(entry.top_logprobs) == 3
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
        assert entry.top_logprobs[0].token == entry.token  # greedy: the most likely one
    plain = client.chat.completions.create(model="default", messages=FRANCE, max_tokens=2)
    assert plain.choices[0].logprobs is None


def test_streamed_chat_logprobs_cover_every_token(client):
    stream = client.chat.completions.create(model="default", messages=FRANCE, temperature=0,
                                            max_tokens=8, stream=True, logprobs=True)
    chunks = [c for c in stream if c.choices and c.choices[0].delta.content]
    entries = [e for c in chunks for e in c.choices[0].logprobs.content]
    assert "".join(e.token for e in entries) == "".join(c.choices[0].delta.content for c in chunks)


def test_completion_logprobs_in_the_legacy_shape(client):
    reply = client.completions.create(model="default", prompt="The capital of France is",
                                      max_tokens=5, temperature=0, logprobs=2)
    lp = reply.choices[0].logprobs
    assert "".join(lp.tokens) == reply.choices[0].text
    assert len(lp.token_logprobs) == len(lp.tokens) == len(lp.top_logprobs) == len(lp.text_offset)
    assert all(len(alternatives) == 2 for alternatives in lp.top_logprobs)
    assert lp.text_offset[0] == 0


@pytest.mark.parametrize("body", [
    {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nope"}}}},
    {"logprobs": False, "top_logprobs": 2},
    {"logprobs": True, "top_logprobs": 21},
    {"swarm": {"regex": "(unclosed"}},
])
def test_what_cannot_be_enforced_or_reported_is_400(http, body):
    response = http.post("/v1/chat/completions", json={"messages": FRANCE, **body})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_replacement_character_the_model_writes_last_is_kept(client, stream):
    """U+FFFD at the very end (forced by a regex) is a real character, not half of one."""
    body = dict(model="default", messages=[{"role": "user", "content": "Is the sun hot?"}],
                temperature=0, max_tokens=8, extra_body={"swarm": {"regex": "^(yes|no) \ufffd$"}})
    if stream:
        chunks = client.chat.completions.create(stream=True, **body)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = client.chat.completions.create(**body).choices[0].message.content
    assert text in ("yes \ufffd", "no \ufffd")
