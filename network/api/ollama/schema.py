"""Ollama request bodies (/api/chat, /api/generate, /api/show): JSON Schemas, validation, and
conversion to the same `ParsedRequest` the OpenAI routes serve.

Ollama's `options` map onto our sampling: `temperature`, `top_p`, `seed`, `num_predict` (-1 or
-2: as many as `[api] max_tokens_limit` allows) and `stop`; the other Ollama options (`top_k`,
`num_ctx`, `repeat_penalty`, ...) are accepted and ignored, as Ollama itself ignores options a
model does not use. A consensus strategy is reached two ways: the model name's tag
(`SmolLM2-135M-Instruct:weighted_vote`, what apps that only pick a model can send; `:latest`
and `:route` route), or `options.swarm`, the same object as the OpenAI body's `swarm` field
(`{"strategy": "best_of_n", "n": 5}`), which wins over the tag.
"""
from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from consensus.candidates import STRATEGIES
from consensus.service import SWARM_SCHEMA
from network.api.openai.schema import (
    MAX_MESSAGE_CHARS,
    MAX_MESSAGES,
    MAX_STOP_CHARS,
    SEED_RANGE,
    ParsedRequest,
)
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.errors import RequestError

DEFAULT_TAG = "latest"
DEFAULT_NUM_PREDICT = 512  # what a request without num_predict may generate (as OpenAI chat)
_TEXT = {"type": "string", "maxLength": MAX_MESSAGE_CHARS}
_MODEL = {"type": "string", "minLength": 1, "maxLength": 256}
OPTIONS_SCHEMA: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {
        "temperature": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
        "top_p": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
        "seed": {"type": ["integer", "null"], "minimum": SEED_RANGE[0], "maximum": SEED_RANGE[1]},
        "num_predict": {"type": ["integer", "null"], "minimum": -2},
        "stop": {"type": ["array", "null"], "maxItems": 4,
                 "items": {"type": "string", "maxLength": MAX_STOP_CHARS}},
        "swarm": SWARM_SCHEMA,
    },
}
_FORMAT = {"oneOf": [{"enum": ["", "json"]}, {"type": "object"}, {"type": "null"}]}
_COMMON = {"model": _MODEL, "stream": {"type": ["boolean", "null"]}, "options": OPTIONS_SCHEMA,
           "format": _FORMAT, "keep_alive": {"type": ["number", "string", "null"]},
           "think": {"type": ["boolean", "string", "null"]}}
CHAT_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["model"],
    "properties": {**_COMMON, "messages": {
        "type": ["array", "null"], "maxItems": MAX_MESSAGES, "items": {
            "type": "object", "required": ["role"],
            "properties": {"role": {"enum": ["system", "user", "assistant", "tool"]},
                           "content": {"type": ["string", "null"],
                                       "maxLength": MAX_MESSAGE_CHARS},
                           "images": {"type": ["array", "null"], "maxItems": 0}}}}},
}
GENERATE_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["model"],
    "properties": {**_COMMON, "prompt": {"type": ["string", "null"], **_TEXT},
                   "system": {"type": ["string", "null"], **_TEXT},
                   "raw": {"type": ["boolean", "null"]},
                   "images": {"type": ["array", "null"], "maxItems": 0}},
}
SHOW_SCHEMA: dict[str, Any] = {
    "type": "object", "properties": {"model": _MODEL, "name": _MODEL,
                                     "verbose": {"type": ["boolean", "null"]}},
}
EMBED_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["model", "input"],
    "properties": {"model": _MODEL,
                   "input": {"oneOf": [{"type": "string", **_TEXT},
                                       {"type": "array", "minItems": 1,
                                        "items": {"type": "string", **_TEXT}}]},
                   "truncate": {"type": ["boolean", "null"]},
                   "dimensions": {"type": ["integer", "null"], "minimum": 1},
                   "options": {"type": ["object", "null"]}, "keep_alive": {}},
}
_VALIDATORS = {id(s): Draft202012Validator(s)
               for s in (CHAT_SCHEMA, GENERATE_SCHEMA, SHOW_SCHEMA, EMBED_SCHEMA)}


def check(schema: dict[str, Any], body: Any) -> dict[str, Any]:
    """`body` when it is a JSON object valid against `schema`; else a 400 naming the field."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    error = next(iter(sorted(_VALIDATORS[id(schema)].iter_errors(body),
                             key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or None
        raise RequestError(f"invalid value for {path or 'body'}: {error.message[:300]}",
                           param=path, code="invalid_value")
    return body


def split_model(name: str) -> tuple[str, str]:
    """("SmolLM2-135M-Instruct", "weighted_vote") from "SmolLM2-135M-Instruct:weighted_vote";
    the tag is "latest" when absent."""
    base, _sep, tag = name.partition(":")
    return base, (tag or DEFAULT_TAG)


def swarm_field(tag: str, options: dict[str, Any]) -> dict[str, Any]:
    """The `swarm` field a request asks for: `options.swarm`, else the model tag's strategy."""
    if options.get("swarm"):
        return dict(options["swarm"])
    if tag == DEFAULT_TAG:
        return {}
    if tag not in STRATEGIES:
        raise RequestError(f"unknown model tag {tag!r}: use :latest, or a strategy as the tag "
                           f"({', '.join(':' + s for s in STRATEGIES)})", status=404,
                           param="model", code="model_not_found")
    return {"strategy": tag}


def _sampling(options: dict[str, Any], max_tokens_limit: int) -> SamplingParams:
    predict = options.get("num_predict")
    if predict is None:
        predict = min(DEFAULT_NUM_PREDICT, max_tokens_limit)
    elif predict < 0:  # Ollama: -1 until the model stops, -2 until the context is full
        predict = max_tokens_limit
    if not 1 <= predict <= max_tokens_limit:
        raise RequestError(f"options.num_predict must be between 1 and {max_tokens_limit} "
                           f"(or -1), got {predict}", param="options.num_predict",
                           code="invalid_value")
    temperature, top_p, seed = (options.get(k) for k in ("temperature", "top_p", "seed"))
    return SamplingParams(max_tokens=int(predict),
                          temperature=0.8 if temperature is None else float(temperature),
                          top_p=0.9 if top_p is None else float(top_p),
                          seed=None if seed is None else int(seed) % 2**63,
                          stop=tuple(options.get("stop") or ()))


def _format(value: Any) -> dict[str, Any] | None:
    """Ollama's `format` as an OpenAI `response_format`."""
    if value == "json":
        return {"type": "json_object"}
    if isinstance(value, dict):
        return {"type": "json_schema", "json_schema": {"name": "format", "schema": value}}
    return None


def parse_chat(body: Any, *, max_tokens_limit: int) -> tuple[ParsedRequest | None, str]:
    """A validated /api/chat body as a `ParsedRequest`, and its model tag; None for a chat
    without messages (Ollama's way to load a model)."""
    body = check(CHAT_SCHEMA, body)
    options = body.get("options") or {}
    messages = tuple(ChatMessage(m["role"], m.get("content") or "")
                     for m in body.get("messages") or ())
    base, tag = split_model(body["model"])
    if not messages:
        return None, tag
    return ParsedRequest(
        generation=GenerationRequest(messages=messages,
                                     params=_sampling(options, max_tokens_limit)),
        model=base, n=1, stream=body.get("stream") is not False, include_usage=False,
        swarm=swarm_field(tag, options), response_format=_format(body.get("format"))), tag


def parse_generate(body: Any, *, max_tokens_limit: int) -> tuple[ParsedRequest | None, str]:
    """A validated /api/generate body: with `raw` the prompt goes to the model as is, else it is
    one user turn (after `system`) in the model's chat template, as Ollama does; None for an
    empty prompt (Ollama's way to load a model)."""
    body = check(GENERATE_SCHEMA, body)
    options = body.get("options") or {}
    params = _sampling(options, max_tokens_limit)
    prompt = body.get("prompt") or ""
    if not prompt:
        return None, split_model(body["model"])[1]
    if body.get("raw"):
        generation = GenerationRequest(prompt=prompt, params=params)
    else:
        turns = [ChatMessage("system", body["system"])] if body.get("system") else []
        generation = GenerationRequest(messages=(*turns, ChatMessage("user", prompt)),
                                       params=params)
    base, tag = split_model(body["model"])
    return ParsedRequest(
        generation=generation, model=base, n=1, stream=body.get("stream") is not False,
        include_usage=False, swarm=swarm_field(tag, options),
        response_format=_format(body.get("format"))), tag
