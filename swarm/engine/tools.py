"""Tool calls as OpenAI defines them: the records (`Tool`, `ToolCall`, `ToolUse`), the one syntax
every model here writes calls in, and the grammar that holds the model to it while decoding.

The syntax is the Hermes convention, which the chat templates of Qwen2.5, Qwen3, Hermes and
SmolLM3 speak natively (see toolprompt.py for templates without it):

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

one block per call, blocks separated by one newline, and nothing else in that answer: an answer is
either text or calls. The grammar (Lark, for llguidance; constraint.py compiles it) spells the
block's frame itself and lets the model choose only the function's name among those it may call
and the arguments, as JSON matching that function's parameters schema, written as `json.dumps`
writes it (so a newline can never occur inside the arguments, and `}` + CLOSER ends them). Text
answers may not contain the opener anywhere, so content never hides a call a client would miss,
nor `<tool_response>`: a small model otherwise tends to echo the tool's result in that frame
instead of answering.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from swarm.engine.constraint import JSON_STYLE, Constraint

OPENER = "<tool_call>\n"
CLOSER = "\n</tool_call>"
SEPARATOR = "\n"  # between two calls
HEAD = '{"name": "'  # a call's JSON begins so; then the name,
MIDDLE = '", "arguments": '  # then this, the arguments, and
TAIL = "}"  # this before the CLOSER
NAME_PATTERN = r"[A-Za-z0-9_-]{1,64}"  # OpenAI's function names
NAME_TOKENS = 16  # tokens kept for a function's name when deciding whether a new call fits
ToolChoice = Literal["auto", "none", "required", "function"]
TOOLS_FEATURE = "tools"  # what a node that serves tool calls lists among its capabilities


@dataclass(frozen=True)
class Tool:
    """A function the model may call: its name, description and parameters (JSON Schema text)."""

    name: str
    description: str = ""
    parameters: str = '{"type": "object"}'

    def schema(self) -> dict[str, Any]:
        """The parameters schema as a dict."""
        value = json.loads(self.parameters)
        return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class ToolCall:
    """One call the model made (or an earlier turn made): its id, function and arguments (JSON
    text, as the model wrote it)."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ToolUse:
    """The tools a request offers and how the model may use them (OpenAI's `tools`,
    `tool_choice` and `parallel_tool_calls`); `function` is the one `choice == "function"`
    names."""

    tools: tuple[Tool, ...]
    choice: ToolChoice = "auto"
    function: str | None = None
    parallel: bool = True

    def callable(self) -> tuple[Tool, ...]:
        """The tools the model may call now: none, the named one, or all."""
        if self.choice == "none":
            return ()
        if self.choice == "function":
            return tuple(t for t in self.tools if t.name == self.function)
        return self.tools


def closed(schema: Any, *, inside_all_of: bool = False) -> Any:
    """`schema` with `additionalProperties: false` on every object schema that lists
    `properties` and says nothing about others (outside `allOf`, where it would forbid the other
    branches' properties). Every value it admits is valid under `schema` too; it keeps a small
    model from inventing keys (as OpenAI's strict mode does)."""
    if isinstance(schema, list):
        return [closed(s, inside_all_of=inside_all_of) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "definitions", "patternProperties"):
            out[key] = ({k: closed(v) for k, v in value.items()} if isinstance(value, dict)
                        else value)
        elif key in ("items", "prefixItems", "anyOf", "oneOf", "additionalProperties", "not"):
            out[key] = closed(value)
        elif key == "allOf":
            out[key] = closed(value, inside_all_of=True)
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out and not inside_all_of:
        out["additionalProperties"] = False
    return out


def _json(schema: Mapping[str, Any]) -> str:
    """An inline `%json` of the grammar, written in the house JSON style."""
    return "%json " + json.dumps({"x-guidance": dict(JSON_STYLE), **closed(dict(schema))},
                                 sort_keys=False)


def _text_rule(text: Constraint | None) -> str:
    """The rule for an answer in text: free text without the call or result markers, or the JSON of
    `response_format`; a regex cannot be combined with tools (the caller refuses it)."""
    if text is None:
        return ('text: TEXT\nTEXT: /(?s:.*)/ & ~/(?s:.*)<tool_(call|response)>(?s:.*)/\n')
    if text.kind != "json_schema":
        raise ValueError("a regex constraint cannot be combined with tools")
    return f"text: {_json(json.loads(text.source))}\n"


def tool_grammar(use: ToolUse, text: Constraint | None = None) -> str:
    """The Lark grammar an answer to `use` must match: calls (`required`, a named function),
    text (`none`) or either (`auto`); `text` is what a text answer must match, if anything."""
    tools = use.callable()
    lines = []
    if use.choice == "none" or not tools:
        lines.append("start: text")
    elif use.choice == "auto":
        lines.append("start: calls | text")
    else:
        lines.append("start: calls")
    if tools:
        many = use.parallel and use.choice != "function"
        lines.append(f"calls: call ({json.dumps(SEPARATOR)} call)*" if many else "calls: call")
        names = " | ".join(f"f{i}" for i in range(len(tools)))
        lines.append(f"call: {json.dumps(OPENER + HEAD)} ({names}) {json.dumps(TAIL + CLOSER)}")
        for i, tool in enumerate(tools):
            lines.append(f"f{i}: {json.dumps(tool.name + MIDDLE)} {_json(tool.schema())}")
    if use.choice != "required" and use.choice != "function" or not tools:
        lines.append(_text_rule(text).rstrip("\n"))
    return "\n".join(lines) + "\n"


def tool_constraint(use: ToolUse, text: Constraint | None = None) -> Constraint:
    """The constraint decoding enforces for a request that offers tools."""
    return Constraint("tool_calls", tool_grammar(use, text))
