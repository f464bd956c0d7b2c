"""OpenAI request bodies: JSON Schemas, validation, and conversion to `GenerationRequest`s."""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from jsonschema import Draft202012Validator

from consensus.service import SWARM_SCHEMA
from network.api.openai.tools import MESSAGE_FIELDS, TOOL_FIELDS, tool_use, turn_call_id, turn_calls
from network.wire.fields import MAX_NAME_CHARS, MAX_TEXT_CHARS, MAX_TOP_LOGPROBS, MAX_TURNS
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.engine.constraint import Constraint, json_constraint, regex_constraint
from swarm.errors import RequestError

# Bounds inside a body, the federation wire's own (network/wire/messages.py), so that every request
# this API accepts can also be sent to a peer as a vote.
MAX_MESSAGES = MAX_TURNS
MAX_MESSAGE_CHARS = MAX_TEXT_CHARS
MAX_STOP_CHARS = MAX_NAME_CHARS
SEED_RANGE = (-(2**63), 2**64 - 1)


_STOP_TEXT = {"type": "string", "maxLength": MAX_STOP_CHARS}
_STOP = {"oneOf": [_STOP_TEXT, {"type": "array", "items": _STOP_TEXT, "maxItems": 4},
                   {"type": "null"}]}
_SAMPLING = {
    "model": {"type": "string", "maxLength": 256},
    "max_tokens": {"type": ["integer", "null"]},
    "max_completion_tokens": {"type": ["integer", "null"]},
    "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
    "top_p": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
    "n": {"type": ["integer", "null"], "minimum": 1},
    "seed": {"type": ["integer", "null"], "minimum": SEED_RANGE[0], "maximum": SEED_RANGE[1]},
    "stop": _STOP,
    "stream": {"type": ["boolean", "null"]},
    "stream_options": {"type": ["object", "null"],
                       "properties": {"include_usage": {"type": "boolean"}}},
    "user": {"type": "string"},
    "swarm": SWARM_SCHEMA,
}
_CONTENT = {"oneOf": [
    {"type": "string", "maxLength": MAX_MESSAGE_CHARS},
    {"type": "null"},
    {"type": "array", "items": {"type": "object", "required": ["type"],
                                "properties": {"type": {"type": "string"},
                                               "text": {"type": "string",
                                                        "maxLength": MAX_MESSAGE_CHARS}}}},
]}
CHAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        **_SAMPLING,
        "messages": {"type": "array", "minItems": 1, "maxItems": MAX_MESSAGES, "items": {
            "type": "object", "required": ["role"],
            "properties": {"role": {"enum": ["system", "developer", "user", "assistant", "tool"]},
                           "content": _CONTENT, "name": {"type": "string"},
                           **MESSAGE_FIELDS}}},
        **TOOL_FIELDS,
        "response_format": {"type": ["object", "null"], "required": ["type"],
                            "properties": {"type": {"enum": ["text", "json_object",
                                                             "json_schema"]},
                                           "json_schema": {
                                               "type": "object",
                                               "properties": {"name": {"type": "string"},
                                                              "schema": {"type": "object"},
                                                              "strict": {"type": ["boolean",
                                                                                  "null"]}}}}},
        "logprobs": {"type": ["boolean", "null"]},
        "top_logprobs": {"type": ["integer", "null"], "minimum": 0,
                         "maximum": MAX_TOP_LOGPROBS},
    },
}
COMPLETION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["prompt"],
    "properties": {**_SAMPLING, "prompt": {"oneOf": [
        {"type": "string", "maxLength": MAX_MESSAGE_CHARS},
        {"type": "array", "items": {"type": "string", "maxLength": MAX_MESSAGE_CHARS},
         "minItems": 1, "maxItems": 1}]},
        # OpenAI's legacy completions take the number of alternatives here, at most 5.
        "logprobs": {"type": ["integer", "null"], "minimum": 0, "maximum": 5}},
}
_VALIDATORS = {id(s): Draft202012Validator(s) for s in (CHAT_SCHEMA, COMPLETION_SCHEMA)}


@dataclass(frozen=True)
class ParsedRequest:
    """A validated OpenAI request: what to generate and how to answer."""

    generation: GenerationRequest
    model: str | None
    n: int
    stream: bool
    include_usage: bool
    swarm: dict[str, Any] = field(default_factory=dict)
    response_format: dict[str, Any] | None = None


def _check(schema: dict[str, Any], body: Any) -> None:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    error = next(iter(sorted(_VALIDATORS[id(schema)].iter_errors(body),
                             key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or None
        raise RequestError(f"invalid value for {path or 'body'}: {error.message}", param=path,
                           code="invalid_value")


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise RequestError(f"{where}: only text content parts are supported", param=where)
        parts.append(part["text"])
    text = "".join(parts)
    if len(text) > MAX_MESSAGE_CHARS:
        raise RequestError(f"{where}: longer than {MAX_MESSAGE_CHARS} characters", param=where,
                           code="invalid_value")
    return text


def _integer(value: Any) -> int | None:
    """JSON Schema's "integer" admits 5.0; everything past validation sees a real int."""
    return None if value is None else int(value)


def request_constraint(response_format: dict[str, Any] | None,
                       regex: str | None) -> Constraint | None:
    """What decoding must enforce: the JSON of `response_format` (json_object: any object;
    json_schema: its schema), else the swarm field's `regex`; None for plain text. A JSON format
    with a regex enforces the JSON, and `first_valid` checks the regex after. RequestError (400)
    for a schema or regex that cannot be used."""
    kind = (response_format or {}).get("type", "text")
    try:
        if kind == "json_object":
            return json_constraint(None)
        if kind == "json_schema":
            return json_constraint((response_format or {}).get("json_schema", {}).get("schema"))
        return regex_constraint(regex) if regex is not None else None
    except (ValueError, re.error) as exc:
        param = "swarm.regex" if kind == "text" else "response_format"
        raise RequestError(str(exc), param=param, code="invalid_value") from None


def _sampling(body: dict[str, Any], max_tokens_limit: int, default_max: int) -> SamplingParams:
    max_tokens = _integer(body.get("max_completion_tokens"))
    if max_tokens is None:
        max_tokens = _integer(body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = min(default_max, max_tokens_limit)
    if not 1 <= max_tokens <= max_tokens_limit:
        raise RequestError(f"max_tokens must be between 1 and {max_tokens_limit}, got {max_tokens}",
                           param="max_tokens", code="invalid_value")
    stop = body.get("stop") or ()
    logprobs = body.get("logprobs")
    if isinstance(logprobs, bool):  # chat: a flag, with top_logprobs alternatives
        top = _integer(body.get("top_logprobs")) or 0
        if top and not logprobs:
            raise RequestError("top_logprobs needs logprobs: true", param="top_logprobs",
                               code="invalid_value")
    else:  # completions: the number of alternatives, and logprobs on when present
        top = _integer(logprobs) or 0
        logprobs = logprobs is not None
    temperature = body.get("temperature")
    top_p = body.get("top_p")
    seed = _integer(body.get("seed"))
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if temperature is None else float(temperature),
        top_p=1.0 if top_p is None else float(top_p),
        # Engines seed with a non-negative 64-bit integer; fold the rest of the range onto it.
        seed=None if seed is None else seed % 2**63,
        stop=(stop,) if isinstance(stop, str) else tuple(stop),
        logprobs=bool(logprobs),
        top_logprobs=top,
    )


def _common(body: dict[str, Any], generation: GenerationRequest, max_n: int) -> ParsedRequest:
    n = _integer(body.get("n")) or 1
    if n > max_n:
        raise RequestError(f"n must be at most {max_n}, got {n}", param="n", code="invalid_value")
    options = body.get("stream_options") or {}
    swarm = dict(body.get("swarm") or {})
    regex = swarm.get("regex")
    constraint = request_constraint(body.get("response_format"),
                                    regex if not body.get("tools") else None)
    tools = tool_use(body, constraint, regex) if generation.messages else None
    return ParsedRequest(
        generation=replace(generation, constraint=constraint, tools=tools),
        model=body.get("model"),
        n=n,
        stream=bool(body.get("stream")),
        include_usage=bool(options.get("include_usage")),
        swarm=swarm,
        response_format=body.get("response_format"),
    )


def parse_chat(body: Any, *, max_tokens_limit: int, max_n: int,
               default_max_tokens: int = 512) -> ParsedRequest:
    """Validate a /v1/chat/completions body; raise `RequestError` naming the bad parameter."""
    _check(CHAT_SCHEMA, body)
    messages = tuple(
        ChatMessage(m["role"] if m["role"] != "developer" else "system",
                    _text(m.get("content"), f"messages.{i}.content"),
                    turn_calls(m, f"messages.{i}"), turn_call_id(m, f"messages.{i}"))
        for i, m in enumerate(body["messages"])
    )
    params = _sampling(body, max_tokens_limit, default_max_tokens)
    return _common(body, GenerationRequest(messages=messages, params=params), max_n)


def parse_completion(body: Any, *, max_tokens_limit: int, max_n: int) -> ParsedRequest:
    """Validate a /v1/completions body (OpenAI's default max_tokens there is 16)."""
    _check(COMPLETION_SCHEMA, body)
    prompt = body["prompt"] if isinstance(body["prompt"], str) else body["prompt"][0]
    params = _sampling(body, max_tokens_limit, 16)
    return _common(body, GenerationRequest(prompt=prompt, params=params), max_n)
