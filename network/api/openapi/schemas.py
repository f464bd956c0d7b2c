"""The components half of /openapi.json: the JSON Schemas of every body and answer, by name.

`SCHEMAS` holds the OpenAI-side bodies (the request schemas are those the handlers validate
with, network/api/openai/schema.py), the federation wire messages (federation_schemas.py) and the
dashboard's and Ollama's bodies (surfaces.py).
"""
from __future__ import annotations

from typing import Any

from consensus.service import SWARM_SCHEMA
from network.api.openai.embeddings import EMBEDDINGS_SCHEMA
from network.api.openai.schema import CHAT_SCHEMA, COMPLETION_SCHEMA
from network.api.openapi.federation_schemas import FEDERATION_SCHEMAS
from network.api.openapi.surfaces import SURFACE_SCHEMAS

_USAGE = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
          "properties": {k: {"type": "integer", "minimum": 0}
                         for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
_FINISH = {"enum": ["stop", "length"]}
_CHAT_FINISH = {"enum": ["stop", "length", "tool_calls"]}
_TOOL_CALL = {"type": "object", "required": ["id", "type", "function"], "properties": {
    "id": {"type": "string"}, "type": {"const": "function"},
    "function": {"type": "object", "required": ["name", "arguments"],
                 "properties": {"name": {"type": "string"},
                                "arguments": {"type": "string",
                                              "description": "JSON matching the function's "
                                                             "parameters schema"}}}}}
_SWARM_REPORT = {
    "type": "object", "description": "How the answer was chosen",
    "required": ["strategy", "candidates"],
    "properties": {
        "strategy": {"type": "string"}, "winner": {"type": ["string", "null"]},
        "early_stop": {"type": "boolean"},
        "voted_on": {"enum": ["tool_call", "json", "letter", "number", "text", None],
                     "description": "the kind of answer the outcome was decided on: tool "
                                    "calls (same functions and arguments) or text"},
        "candidates": {"type": "array", "items": {"type": "object", "properties": {
            "source": {"type": "string"}, "latency_ms": {"type": "number"},
            "kind": {"enum": ["tool_call", "json", "letter", "number", "text", None]},
            "tokens": {"type": ["integer", "null"]}, "score": {"type": ["number", "null"]},
            "votes": {"type": ["number", "null"]}, "valid": {"type": "boolean"},
            "error": {"type": ["string", "null"]}}}}}}


def _completion(obj: str, choice: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object",
            "required": ["id", "object", "created", "model", "choices", "usage"],
            "properties": {"id": {"type": "string"}, "object": {"const": obj},
                           "created": {"type": "integer"}, "model": {"type": "string"},
                           "system_fingerprint": {"type": ["string", "null"]},
                           "choices": {"type": "array", "items": choice},
                           "usage": _USAGE, "swarm": _SWARM_REPORT}}


SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["message", "type"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]},
                       "code": {"type": ["string", "null"]}}}}},
    "Health": {"type": "object", "required": ["status", "model", "instances"], "properties": {
        "status": {"const": "ok"}, "model": {"type": "string"}, "backend": {"type": "string"},
        "instances": {"type": "integer", "minimum": 1},
        "load": {"type": "number", "minimum": 0, "maximum": 1},
        "queue_depth": {"type": "integer", "minimum": 0}, "uptime_s": {"type": "number"}}},
    "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
        "object": {"const": "list"}, "data": {"type": "array", "items": {
            "type": "object", "required": ["id", "object"],
            "properties": {"id": {"type": "string"}, "object": {"const": "model"},
                           "created": {"type": "integer"}, "owned_by": {"type": "string"}}}}}},
    "SwarmOptions": SWARM_SCHEMA,
    "ChatRequest": CHAT_SCHEMA,
    "CompletionRequest": COMPLETION_SCHEMA,
    "ChatCompletion": _completion("chat.completion", {
        "type": "object", "required": ["index", "message", "finish_reason"],
        "properties": {"index": {"type": "integer"}, "finish_reason": _CHAT_FINISH,
                       "message": {"type": "object", "properties": {
                           "role": {"const": "assistant"},
                           "content": {"type": ["string", "null"],
                                       "description": "null when the answer is tool calls"},
                           "tool_calls": {"type": "array", "items": _TOOL_CALL}}}}}),
    "EmbeddingRequest": EMBEDDINGS_SCHEMA,
    "EmbeddingList": {"type": "object", "required": ["object", "data", "model", "usage"],
                      "properties": {
        "object": {"const": "list"}, "model": {"type": "string"},
        "data": {"type": "array", "items": {
            "type": "object", "required": ["object", "index", "embedding"],
            "properties": {"object": {"const": "embedding"}, "index": {"type": "integer"},
                           "embedding": {"oneOf": [
                               {"type": "array", "items": {"type": "number"}},
                               {"type": "string", "contentEncoding": "base64",
                                "description": "little-endian float32"}]}}}},
        "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                  "properties": {"prompt_tokens": {"type": "integer", "minimum": 0},
                                 "total_tokens": {"type": "integer", "minimum": 0}}},
        "swarm": {"type": "object", "properties": {"strategy": {"const": "route"},
                                                   "source": {"type": "string"}}}}},
    "TextCompletion": _completion("text_completion", {
        "type": "object", "required": ["index", "text", "finish_reason"],
        "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                       "finish_reason": _FINISH}}),
    **FEDERATION_SCHEMAS,  # the federation wire messages (federation_schemas.py)
    **SURFACE_SCHEMAS,  # the dashboard's and the Ollama routes' (surfaces.py)
}
