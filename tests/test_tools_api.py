"""Tool calls through the real API over the real embedded model, asked with the official openai
SDK: calls whose arguments validate against the schema (non-streamed and streamed, 20 of 20 at
temperature 0.8 on llama.cpp, the default engine; 5 of 5 on transformers, whose constraint
tokenizer is built otherwise), a named function, a full round trip, consensus voting on the call,
and the 400s of what is not served."""
from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from jsonschema import validate

WEATHER_SCHEMA = {"type": "object", "required": ["city"],
                  "properties": {"city": {"type": "string", "maxLength": 30},
                                 "unit": {"enum": ["celsius", "fahrenheit"]}}}
TOOLS: list[dict[str, Any]] = [{"type": "function", "function": {"name": "get_weather",
                                           "description": "Get the current weather in a city",
                                           "parameters": WEATHER_SCHEMA}},
         {"type": "function", "function": {"name": "get_time",
                                           "description": "Get the local time in a time zone",
                                           "parameters": {"type": "object",
                                                          "properties": {"zone": {
                                                              "type": "string",
                                                              "maxLength": 30}}}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}


@pytest.fixture()
def client(api_server):
    return openai.OpenAI(base_url=api_server.url + "/v1", api_key="none", max_retries=0)


@pytest.fixture(params=[("llamacpp_server", 4), ("api_server", 1)], ids=["llamacpp", "transformers"])
def engine_client(request) -> tuple[openai.OpenAI, int]:
    """A client of the API on each engine and how many requests of 5 choices to ask it: 4 on
    llama.cpp (20 calls), 1 on transformers (about 7x slower here)."""
    server_fixture, requests = request.param
    server = request.getfixturevalue(server_fixture)
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0), requests


@pytest.fixture()
def http(api_server):
    with httpx.Client(base_url=api_server.url, timeout=300) as c:
        yield c


def check_call(name: str, arguments: str) -> None:
    validate(json.loads(arguments), SCHEMAS[name])


@pytest.mark.timeout(900)  # 20 generations on one instance, on a shared 2-core machine
def test_required_calls_validate_20_of_20_at_temperature_08(engine_client):
    client, requests = engine_client
    calls = 0
    for seed in range(requests):  # requests of 5 choices: the pool's slots
        reply = client.chat.completions.create(model="default", messages=ASK, tools=TOOLS,
                                               tool_choice="required", temperature=0.8,
                                               seed=seed, n=5, max_tokens=40)
        for choice in reply.choices:
            assert choice.finish_reason == "tool_calls" and choice.message.content is None
            for call in choice.message.tool_calls or []:
                assert call.id.startswith("call_") and call.type == "function"
                check_call(call.function.name, call.function.arguments)
            calls += bool(choice.message.tool_calls)
    assert calls == 5 * requests


@pytest.mark.timeout(900)
def test_streamed_required_calls_validate_20_of_20_at_temperature_08(engine_client):
    client, requests = engine_client
    calls = 0
    for seed in range(requests):
        stream = client.chat.completions.create(model="default", messages=ASK, tools=TOOLS,
                                                tool_choice="required", temperature=0.8,
                                                seed=10 + seed, n=5, max_tokens=40, stream=True)
        made: dict[tuple[int, int], dict[str, str]] = {}
        finish: dict[int, str] = {}
        for chunk in stream:
            for choice in chunk.choices:
                assert not choice.delta.content
                for delta in choice.delta.tool_calls or []:
                    call = made.setdefault((choice.index, delta.index),
                                           {"id": "", "name": "", "arguments": ""})
                    if delta.id:
                        assert not call["id"]  # the id and name come once, first
                        call["id"], call["name"] = delta.id, delta.function.name
                    call["arguments"] += delta.function.arguments or ""
                if choice.finish_reason:
                    finish[choice.index] = choice.finish_reason
        assert finish == dict.fromkeys(range(5), "tool_calls")
        for call in made.values():
            assert call["id"].startswith("call_")
            check_call(call["name"], call["arguments"])
        calls += len({index for index, _ in made})
    assert calls == 5 * requests


def test_a_named_function_is_the_one_called(client):
    reply = client.chat.completions.create(
        model="default", messages=ASK, tools=TOOLS, temperature=0.8, seed=1, max_tokens=40,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    check_call("get_time", call.function.arguments)


def test_none_answers_in_text(client):
    reply = client.chat.completions.create(model="default", messages=ASK, tools=TOOLS,
                                           tool_choice="none", temperature=0, max_tokens=20)
    choice = reply.choices[0]
    assert choice.message.tool_calls is None and choice.message.content
    assert "<tool_call>" not in choice.message.content and choice.finish_reason != "tool_calls"


def test_a_round_trip_call_result_answer(client):
    first = client.chat.completions.create(model="default", messages=ASK, tools=TOOLS,
                                           tool_choice="required", temperature=0, max_tokens=40)
    message = first.choices[0].message
    [call] = message.tool_calls
    history = [*ASK, message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id,
                "content": json.dumps({"temperature_c": 18, "sky": "sunny"})}]
    final = client.chat.completions.create(model="default", messages=history, tools=TOOLS,
                                           temperature=0, max_tokens=30)
    answer = final.choices[0]
    assert answer.message.tool_calls is None and answer.message.content
    assert answer.finish_reason in ("stop", "length")


def test_consensus_votes_on_the_call(http):
    body = {"model": "default", "messages": ASK, "tools": TOOLS, "tool_choice": "required",
            "temperature": 0, "max_tokens": 40, "swarm": {"strategy": "weighted_vote", "n": 3}}
    reply = http.post("/v1/chat/completions", json=body).json()
    assert "swarm" in reply, reply
    swarm = reply["swarm"]
    assert swarm["voted_on"] == "tool_call"
    assert all(c["kind"] == "tool_call" for c in swarm["candidates"] if c["valid"])
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    for call in choice["message"]["tool_calls"]:
        check_call(call["function"]["name"], call["function"]["arguments"])


@pytest.mark.parametrize(("extra", "param"), [
    ({"functions": [{"name": "f", "parameters": {}}]}, "functions"),
    ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": TOOLS, "swarm": {"regex": "^a$"}}, "swarm.regex"),
])
def test_what_is_not_served_is_a_400_that_names_it(http, extra, param):
    response = http.post("/v1/chat/completions",
                         json={"model": "default", "messages": ASK, "max_tokens": 5, **extra})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and param.split(".")[0] in error["message"]
