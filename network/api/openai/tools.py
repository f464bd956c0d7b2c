"""The tool fields of a chat request: `tools`, `tool_choice`, `parallel_tool_calls`, and the tool
turns of the history (assistant `tool_calls`, `tool` messages), checked and turned into the
engine's records (swarm/engine/tools.py). What OpenAI defines and this node does not serve is a
400 that names it: legacy `functions` / `function_call`, tools other than functions, and the
`allowed_tools` and `custom` tool choices.
"""
from __future__ import annotations

import json
from typing import Any

from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from network.wire.fields import MAX_NAME_CHARS, MAX_TEXT_CHARS, MAX_TOOLS
from swarm.engine.constraint import Constraint, problem
from swarm.engine.tools import NAME_PATTERN, Tool, ToolCall, ToolUse, tool_constraint
from swarm.errors import RequestError

MAX_CALLS = MAX_TOOLS  # tool calls one assistant turn of the history may carry

_FUNCTION = {"type": "object", "required": ["name"], "properties": {
    "name": {"type": "string", "pattern": f"^{NAME_PATTERN}$"},
    "description": {"type": ["string", "null"], "maxLength": MAX_TEXT_CHARS},
    "parameters": {"type": ["object", "null"]},
    "strict": {"type": ["boolean", "null"]}}}
# Properties of the chat body (schema.py adds them to CHAT_SCHEMA).
TOOL_FIELDS: dict[str, Any] = {
    "tools": {"type": ["array", "null"], "maxItems": MAX_TOOLS, "items": {
        "type": "object", "required": ["type"],
        "properties": {"type": {"type": "string"}, "function": _FUNCTION}}},
    "tool_choice": {"type": ["string", "object", "null"]},
    "parallel_tool_calls": {"type": ["boolean", "null"]},
}
# Properties of a chat message.
MESSAGE_FIELDS: dict[str, Any] = {
    "tool_calls": {"type": ["array", "null"], "maxItems": MAX_CALLS, "items": {
        "type": "object", "required": ["function"],
        "properties": {"id": {"type": "string", "maxLength": MAX_NAME_CHARS},
                       "type": {"const": "function"},
                       "function": {"type": "object", "required": ["name", "arguments"],
                                    "properties": {"name": {"type": "string",
                                                            "maxLength": MAX_NAME_CHARS},
                                                   "arguments": {"type": "string",
                                                                 "maxLength": MAX_TEXT_CHARS}}}}}},
    "tool_call_id": {"type": ["string", "null"], "maxLength": MAX_NAME_CHARS},
}
_LEGACY = {"functions": "tools", "function_call": "tool_choice"}


def _tool(index: int, entry: dict[str, Any]) -> Tool:
    where = f"tools.{index}"
    if entry["type"] != "function":
        raise RequestError(f"{where}.type: only function tools are supported, not "
                           f"{entry['type']!r}", param=f"{where}.type", code="invalid_value")
    function = entry.get("function")
    if not isinstance(function, dict):
        raise RequestError(f"{where}: a function tool needs a 'function' object",
                           param=f"{where}.function", code="invalid_value")
    schema = function.get("parameters") or {"type": "object", "properties": {}}
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise RequestError(f"{where}.function.parameters is not a valid JSON Schema: "
                           f"{exc.message}", param=f"{where}.function.parameters",
                           code="invalid_value") from None
    return Tool(function["name"], function.get("description") or "", json.dumps(schema))


def _choice(value: Any, names: set[str]) -> tuple[str, str | None]:
    """(choice, function name) from `tool_choice`."""
    if value is None:
        return "auto", None
    if isinstance(value, str):
        if value not in ("auto", "none", "required"):
            raise RequestError(f"tool_choice must be 'auto', 'none', 'required' or a function, "
                               f"not {value!r}", param="tool_choice", code="invalid_value")
        return value, None
    kind = value.get("type")
    if kind != "function":
        raise RequestError(f"tool_choice of type {kind!r} is not supported here; use 'auto', "
                           "'none', 'required' or {'type': 'function', 'function': {'name': ...}}",
                           param="tool_choice", code="invalid_value")
    name = (value.get("function") or {}).get("name")
    if name not in names:
        raise RequestError(f"tool_choice names the function {name!r}, which is not in tools",
                           param="tool_choice", code="invalid_value")
    return "function", name


def tool_use(body: dict[str, Any], text: Constraint | None, regex: str | None) -> ToolUse | None:
    """The request's tools and how it lets the model use them (None: no tools); 400 for what
    cannot be served, naming it."""
    for legacy, current in _LEGACY.items():
        if body.get(legacy) is not None:
            raise RequestError(f"{legacy} (deprecated by OpenAI) is not supported; send "
                               f"{current} instead", param=legacy, code="unsupported_parameter")
    entries = body.get("tools") or []
    tools = tuple(_tool(i, e) for i, e in enumerate(entries))
    names = {t.name for t in tools}
    if len(names) < len(tools):
        raise RequestError("tools: two functions have the same name", param="tools",
                           code="invalid_value")
    choice, function = _choice(body.get("tool_choice"), names)
    if not tools:
        if choice in ("required", "function"):
            raise RequestError("tool_choice needs tools", param="tool_choice",
                               code="invalid_value")
        return None
    if regex is not None:
        raise RequestError("swarm.regex cannot be combined with tools", param="swarm.regex",
                           code="invalid_value")
    parallel = body.get("parallel_tool_calls")
    use = ToolUse(tools, choice, function, True if parallel is None else bool(parallel))  # type: ignore[arg-type]
    why = problem(tool_constraint(use, text))
    if why:
        raise RequestError(f"the tools cannot be enforced while decoding: {why.splitlines()[0]}",
                           param="tools", code="invalid_value")
    return use


def turn_calls(message: dict[str, Any], where: str) -> tuple[ToolCall, ...]:
    """An assistant turn's `tool_calls` as records (a missing id becomes one from its place)."""
    calls = message.get("tool_calls") or []
    if calls and message["role"] != "assistant":
        raise RequestError(f"{where}.tool_calls: only assistant messages carry tool calls",
                           param=f"{where}.tool_calls", code="invalid_value")
    return tuple(ToolCall(c.get("id") or f"call_{i}", c["function"]["name"],
                          c["function"]["arguments"]) for i, c in enumerate(calls))


def turn_call_id(message: dict[str, Any], where: str) -> str | None:
    """A tool turn's `tool_call_id` (required there, as OpenAI requires it)."""
    call_id = message.get("tool_call_id")
    if message["role"] == "tool" and not call_id:
        raise RequestError(f"{where}: a tool message needs tool_call_id",
                           param=f"{where}.tool_call_id", code="invalid_value")
    return call_id if message["role"] == "tool" else None
