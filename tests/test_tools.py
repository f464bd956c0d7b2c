"""Tool calls, their pure parts: the grammar (what it admits, checked with llguidance over the
embedded model's vocabulary), reading answers whole and streamed, the prompt formats, request
parsing (what is a 400), the wire, validators and the consensus key."""
from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.normalize import normalize_answer
from consensus.validators import build_validator
from network.api.openai.schema import parse_chat
from network.wire.fields import WireDecodeError
from network.wire.votes import VoteRequest
from swarm.engine.backend import (
    ChatMessage,
    Completion,
    FinishReason,
    GenerationRequest,
    SamplingParams,
)
from swarm.engine.constraint import Constraint, json_constraint
from swarm.engine.toolcalls import ToolCallReader, read_answer
from swarm.engine.toolprompt import fallback_messages, native_messages, template_messages
from swarm.engine.tools import Tool, ToolCall, ToolUse, closed, tool_constraint
from swarm.errors import RequestError

WEATHER = Tool("get_weather", "Current weather in a city", json.dumps(
    {"type": "object", "properties": {"city": {"type": "string"},
                                      "unit": {"enum": ["celsius", "fahrenheit"]}},
     "required": ["city"]}))
TIME = Tool("get_time", "", '{"type": "object", "properties": {"zone": {"type": "string"}}}')
PARIS = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TOKYO = '<tool_call>\n{"name": "get_time", "arguments": {"zone": "Asia/Tokyo"}}\n</tool_call>'


def numbered(prefix: str = "call"):
    count = iter(range(1000))
    return lambda: f"{prefix}_{next(count)}"


def accepts(guides, constraint: Constraint, text: str) -> bool:
    """True when the grammar of `constraint` admits `text` as a whole answer."""
    from llguidance import LLMatcher

    matcher = LLMatcher(guides.tokenizer, constraint.grammar(), log_level=0)
    tokens = guides.tokenizer.tokenize_str(text)
    return matcher.try_consume_tokens(tokens) == len(tokens) and matcher.is_accepting()


@pytest.fixture(scope="module")
def guides(transformers_pool):
    return transformers_pool.instances[0].backend._guides


@pytest.mark.parametrize(("choice", "text", "admitted"), [
    ("required", PARIS, True),
    ("required", PARIS + "\n" + TOKYO, True),
    ("required", "It is sunny in Paris.", False),
    ("required", PARIS.replace("Paris", "Paris\", \"country\": \"FR"), False),  # no invented keys
    ("required", PARIS.replace('"city"', '"town"'), False),  # required key missing
    ("required", PARIS.replace("get_weather", "get_news"), False),  # not an offered function
    ("auto", "It is sunny in Paris.", True),
    ("auto", PARIS, True),
    ("auto", "Sure: " + PARIS, False),  # text never hides a call
    ("none", PARIS, False),
    ("none", "It is sunny.", True),
    ("auto", "<tool_response>\n18C\n</tool_response>", False),  # no echo of a result
])
def test_the_grammar_admits_exactly_the_answers_tool_choice_allows(guides, choice, text, admitted):
    use = ToolUse((WEATHER, TIME), choice)
    assert accepts(guides, tool_constraint(use), text) is admitted


def test_a_named_function_or_no_parallel_calls_means_one_call(guides):
    named = tool_constraint(ToolUse((WEATHER, TIME), "function", "get_time"))
    assert accepts(guides, named, TOKYO) and not accepts(guides, named, PARIS)
    assert not accepts(guides, named, TOKYO + "\n" + TOKYO.replace("Tokyo", "Paris"))
    single = tool_constraint(ToolUse((WEATHER, TIME), "required", parallel=False))
    assert accepts(guides, single, PARIS) and not accepts(guides, single, PARIS + "\n" + TOKYO)


def test_a_text_answer_beside_tools_keeps_its_response_format(guides):
    use = ToolUse((WEATHER,), "auto")
    text = json_constraint({"type": "object", "properties": {"a": {"type": "integer"}},
                            "required": ["a"]})
    both = tool_constraint(use, text)
    assert accepts(guides, both, '{"a": 1}') and accepts(guides, both, PARIS)
    assert not accepts(guides, both, "free text")


def test_closed_forbids_invented_keys_but_not_other_branches():
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {}}},
              "allOf": [{"properties": {"b": {}}}], "additionalProperties": True}
    out = closed(schema)
    assert out["additionalProperties"] is True  # said already: kept
    assert out["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in out["allOf"][0]


def test_a_whole_answer_reads_as_text_or_calls():
    assert read_answer("Hello <tool_call>") == ("Hello <tool_call>", [], True)
    content, calls, complete = read_answer(PARIS + "\n" + TOKYO, numbered())
    assert content is None and complete
    assert calls == [ToolCall("call_0", "get_weather", '{"city": "Paris"}'),
                     ToolCall("call_1", "get_time", '{"zone": "Asia/Tokyo"}')]
    cut = read_answer(PARIS[:-20], numbered())
    assert cut == (None, [ToolCall("call_0", "get_weather", '{"city": "P')], False)


def test_a_repeated_call_is_dropped():
    content, calls, complete = read_answer(PARIS + "\n" + PARIS, numbered())
    assert content is None and complete and len(calls) == 1


@given(st.sampled_from([PARIS, PARIS + "\n" + TOKYO, TOKYO + "\n" + TOKYO, "Plain <tool text",
                        "<tool_", PARIS[:40]]), st.data())
def test_streaming_reads_the_same_as_reading_whole_at_any_split(answer, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(answer)), max_size=8)))
    reader = ToolCallReader(numbered())
    events = []
    for a, b in zip([0, *cuts], [*cuts, len(answer)], strict=True):
        events += reader.feed(answer[a:b])
    events += reader.close()
    content, calls, complete = read_answer(answer, numbered())
    if content is not None:
        assert "".join(e.text for e in events) == content
        assert all(e.kind == "text" for e in events)
        return
    assert complete == reader.complete
    streamed: dict[int, list[str]] = {}
    for e in events:
        assert e.kind != "text"
        if e.kind == "call":
            streamed[e.index] = [e.text, e.call_id, ""]
        else:
            streamed[e.index][2] += e.text
    assert [tuple(v) for _, v in sorted(streamed.items())] == [(c.name, c.id, c.arguments)
                                                              for c in calls]


def test_the_fallback_prompt_puts_tools_in_the_system_turn_and_results_in_user_turns():
    history = (ChatMessage("user", "Weather?"),
               ChatMessage("assistant", "", (ToolCall("c1", "get_weather", '{"city": "Paris"}'),
                                             ToolCall("c2", "get_time", "{}"))),
               ChatMessage("tool", "18C", tool_call_id="c1"),
               ChatMessage("tool", "noon", tool_call_id="c2"))
    turns = fallback_messages(history, ToolUse((WEATHER, TIME)))
    assert [t["role"] for t in turns] == ["system", "user", "assistant", "user"]
    assert '"name": "get_weather"' in turns[0]["content"] and "<tools>" in turns[0]["content"]
    assert read_answer(turns[2]["content"])[1][0].arguments == '{"city": "Paris"}'
    assert turns[3]["content"].count("<tool_response>") == 2
    assert template_messages(history, None, "{{ messages }}")[1] is None
    native, tools = native_messages(history, ToolUse((WEATHER,)))
    assert tools is not None and tools[0]["function"]["parameters"]["required"] == ["city"]
    assert native[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}
    assert native[2]["tool_call_id"] == "c1"
    assert template_messages(history, ToolUse((WEATHER,)),
                             "{% for t in tools %}<tool_call>{% endfor %}")[1] == tools


def chat(**body):
    return parse_chat({"messages": [{"role": "user", "content": "Weather in Paris?"}], **body},
                      max_tokens_limit=100, max_n=4, default_max_tokens=16)


TOOLS = [{"type": "function", "function": {"name": "get_weather",
                                           "parameters": json.loads(WEATHER.parameters)}}]


def test_requests_with_tools_become_tool_use():
    use = chat(tools=TOOLS, tool_choice="required", parallel_tool_calls=False).generation.tools
    assert use is not None and use.choice == "required" and not use.parallel
    assert use.tools[0].schema() == json.loads(WEATHER.parameters)
    named = chat(tools=TOOLS, tool_choice={"type": "function",
                                           "function": {"name": "get_weather"}})
    assert named.generation.tools == ToolUse(named.generation.tools.tools, "function",
                                             "get_weather")
    assert chat(tools=[]).generation.tools is None and chat().generation.needs == frozenset()
    assert chat(tools=TOOLS).generation.needs == {"tools"}


@pytest.mark.parametrize(("body", "param"), [
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"tools": TOOLS, "function_call": "auto"}, "function_call"),
    ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools.0.type"),
    ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS * 2}, "tools"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters":
                                                   {"type": "nope"}}}]},
     "tools.0.function.parameters"),
    ({"tools": TOOLS, "swarm": {"regex": "^a$"}}, "swarm.regex"),
])
def test_what_is_not_served_is_a_400_that_names_it(body, param):
    with pytest.raises(RequestError) as error:
        chat(**body)
    assert error.value.status == 400 and error.value.param == param


def test_tool_turns_are_checked():
    with pytest.raises(RequestError, match="tool_call_id"):
        parse_chat({"messages": [{"role": "tool", "content": "18C"}]}, max_tokens_limit=10,
                   max_n=1, default_max_tokens=5)
    parsed = parse_chat({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "18C"}]},
        max_tokens_limit=10, max_n=1, default_max_tokens=5)
    assert parsed.generation.messages[1].tool_calls[0].name == "get_weather"
    assert parsed.generation.messages[2].tool_call_id == "c1"


def test_tools_and_tool_turns_cross_the_wire():
    request = GenerationRequest(
        messages=(ChatMessage("user", "Weather?"),
                  ChatMessage("assistant", "", (ToolCall("c1", "get_weather", "{}"),)),
                  ChatMessage("tool", "18C", tool_call_id="c1")),
        params=SamplingParams(max_tokens=9),
        tools=ToolUse((WEATHER, TIME), "function", "get_time", parallel=False))
    vote = VoteRequest.from_generation("r1", request)
    assert VoteRequest.from_wire(vote.to_wire()).to_generation() == request
    with pytest.raises(WireDecodeError, match="tool_turns"):
        VoteRequest.from_wire(vote.to_wire() | {"tool_turns": [[7, "", []]]})
    with pytest.raises(WireDecodeError, match="tools"):
        VoteRequest.from_wire(vote.to_wire() | {"tools": [["get_time", "", "not json"]]})
    with pytest.raises(WireDecodeError, match="tool_function"):
        VoteRequest.from_wire(vote.to_wire() | {"tool_function": "get_news"})
    old = {k: v for k, v in vote.to_wire().items() if not k.startswith("tool")}
    assert VoteRequest.from_wire(old).to_generation().tools is None  # an older peer's vote


def done(text: str, reason: FinishReason = "stop") -> Completion:
    return Completion(text, (), (), reason, 0)


def test_validators_check_calls_against_their_schemas():
    check = build_validator(None, tools=ToolUse((WEATHER,), "auto"))
    assert check(done(PARIS)) == (True, "ok")
    assert check(done("It is sunny."))[0]
    assert not check(done(PARIS.replace('"Paris"', "3")))[0]
    assert "cut off" in check(done(PARIS[:-15], "length"))[1]
    assert "offer" in check(done(TOKYO))[1]
    required = build_validator(None, tools=ToolUse((WEATHER,), "required"))
    assert required(done("It is sunny.")) == (False, "a tool call was required")


def test_candidates_that_make_the_same_calls_vote_together():
    a = normalize_answer(PARIS + "\n" + TOKYO)
    b = normalize_answer(TOKYO.replace('"zone": "Asia/Tokyo"', '"zone":"Asia/Tokyo"') + "\n"
                         + PARIS)
    assert a == b and a.kind == "tool_call"
    assert normalize_answer(PARIS) != normalize_answer(PARIS.replace("Paris", "Lyon"))
    assert normalize_answer("Sunny in Paris.").kind == "text"
