"""`GET /openapi.json`: an OpenAPI 3.1 document of the routes this app really serves.

Every operation the node can serve is described once in `OPERATIONS`; the document lists those
the app's router has (a node without --federation has no /v1/federation/* routes), and the
request bodies are the very JSON Schemas the handlers validate with (network/openai_schema.py).
tests/test_openapi.py checks the router and this document name the same paths and methods.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from aiohttp import web

from consensus.service import SWARM_SCHEMA
from network.api_auth import Auth, required_auth
from network.election_wire import MAX_PLAN_MEMBERS, MAX_REPLY_MESSAGES, MAX_SCORE
from network.membership import PeerState
from network.messages import (
    FINISH_REASONS,
    MAX_CAPABILITIES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_NONCE_CHARS,
    MAX_PRIORITY,
    MAX_STOP,
    MAX_TERM,
    MAX_TEXT_CHARS,
    MAX_TOKENS,
    MAX_TURNS,
)
from network.openai_schema import CHAT_SCHEMA, COMPLETION_SCHEMA
from swarm.config import ApiConfig

log = logging.getLogger(__name__)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
MSGPACK = "application/msgpack"
SSE = "text/event-stream"
_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$",
       "maxLength": MAX_ID_CHARS}
_ERROR_CODES = {
    400: "Invalid input (the error names the parameter)",
    401: "Missing or wrong API key; on federation routes (and forwarded requests) a missing, "
         "malformed, stale (over 30 s of skew), wrongly signed or replayed swarm signature",
    403: "Signed with a swarm key this node does not accept; for approve, not sent from the "
         "node's own machine",
    404: "Unknown model",
    409: "The vote is running already, or was cancelled; for approve, the approved list is full",
    413: "Request body over [api] max_body_bytes",
    415: "Content-Type is neither JSON nor msgpack",
    429: "Busy (every queue full, or too many requests from this client): see Retry-After",
    500: "The backend failed to generate",
    502: "No candidate of a consensus was usable",
    503: "The node is shutting down",
    504: "The consensus deadline passed without a quorum",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {JSON: {"schema": schema}}


def _errors(*codes: int, notes: dict[int, str] | None = None) -> dict[str, Any]:
    """Error responses for `codes`; `notes` replaces the usual description of some codes."""
    out: dict[str, Any] = {}
    for code in codes:
        headers = ({"Retry-After": {"description": "seconds to wait before retrying",
                                    "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
                   if code == 429 else {})
        description = (notes or {}).get(code, _ERROR_CODES[code])
        out[str(code)] = {"description": description, "content": _json(_ref("Error")),
                          **({"headers": headers} if headers else {})}
    out["default"] = {"description": "Any other error, in the same body",
                      "content": _json(_ref("Error"))}
    return out


# The swarm-key signature of network/signing.py: HMAC-SHA256 over method, path and query,
# timestamp, nonce and the body's SHA-256.
_SIGNED_HEADERS = [
    {"name": "X-Swarm-Key-Id", "in": "header", "required": True,
     "description": "fingerprint of the signing swarm key (never the key)",
     "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}},
    {"name": "X-Swarm-Timestamp", "in": "header", "required": True,
     "description": "the sender's wall clock in whole Unix seconds; more than 30 s off is refused",
     "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"}},
    {"name": "X-Swarm-Nonce", "in": "header", "required": True,
     "description": "fresh per request; a nonce seen before is refused (replay)",
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"}},
    {"name": "X-Swarm-Signature", "in": "header", "required": True,
     "description": "hex HMAC-SHA256 with the swarm key over the request",
     "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
]
_REPLY_HEADERS = {
    "X-Swarm-Key-Id": {"description": "fingerprint of the key that signed this answer",
                       "schema": {"type": "string"}},
    "X-Swarm-Signature": {"description": "HMAC-SHA256 over the caller's nonce and this body",
                          "schema": {"type": "string"}},
}
_FORWARDED = ("A peer forwarding a route-mode request adds X-Local-Swarm-Forwarded and signs it "
              "with the swarm key (the X-Swarm-* headers of /v1/federation/vote); that header "
              "without a valid signature is refused with 401 or 403.")
# One server-sent event: `data:` carries a chunk as JSON (chat.completion.chunk or
# text_completion; an error body if the request fails after the 200), the last one `[DONE]`.
_SSE_EVENT = {"type": "object", "required": ["data"],
              "properties": {"data": {"type": "string"}, "event": {"type": "string"}}}
_NUMBER_QUERY = {"type": "string", "pattern": r"^\s*[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?\s*$"}
_PEER_FILTERS = [
    {"name": "min_ram_gb", "in": "query", "required": False, "schema": _NUMBER_QUERY,
     "description": "only nodes with at least this much RAM (GB)"},
    {"name": "min_vram_gb", "in": "query", "required": False, "schema": _NUMBER_QUERY,
     "description": "only nodes with at least this much GPU memory (GB)"},
    {"name": "model", "in": "query", "required": False,
     "schema": {"type": "string", "minLength": 1, "maxLength": 256},
     "description": "only nodes serving this model id (case-insensitive)"},
    {"name": "status", "in": "query", "required": False,
     "schema": {"enum": [state.value for state in PeerState]}},
    {"name": "idle", "in": "query", "required": False,
     "schema": {"enum": ["true", "1", "yes", "false", "0", "no"]}},
]

# (path, method) -> operation. The federation routes are those of network/federation_server.py.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/health", "get"): {
        "operationId": "health", "summary": "Liveness and load of this node",
        "responses": {"200": {"description": "The node is up",
                              "content": _json(_ref("Health"))}}},
    ("/openapi.json", "get"): {
        "operationId": "openapi", "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1 document",
                              "content": _json({"type": "object"})}}},
    ("/v1/models", "get"): {
        "operationId": "listModels", "summary": "The model this node serves (OpenAI format)",
        "responses": {"200": {"description": "A list with one model",
                              "content": _json(_ref("ModelList"))}, **_errors(401)}},
    ("/v1/chat/completions", "post"): {
        "operationId": "createChatCompletion",
        "summary": "Chat completion: one instance (route) or a consensus (the swarm field)",
        "description": _FORWARDED,
        "requestBody": {"required": True, "content": _json(_ref("ChatRequest"))},
        "responses": {"200": {"description": "The completion, or SSE chunks ending in "
                                             "`data: [DONE]` when stream is true",
                              "content": {JSON: {"schema": _ref("ChatCompletion")},
                                          SSE: {"schema": _SSE_EVENT}}},
                      **_errors(400, 401, 403, 404, 413, 429, 502, 504)}},
    ("/v1/completions", "post"): {
        "operationId": "createCompletion", "summary": "Text completion of a raw prompt",
        "description": _FORWARDED,
        "requestBody": {"required": True, "content": _json(_ref("CompletionRequest"))},
        "responses": {"200": {"description": "The completion, or SSE chunks ending in "
                                             "`data: [DONE]` when stream is true",
                              "content": {JSON: {"schema": _ref("TextCompletion")},
                                          SSE: {"schema": _SSE_EVENT}}},
                      **_errors(400, 401, 403, 404, 413, 429, 502, 504)}},
    ("/v1/federation/health", "get"): {
        "operationId": "federationHealth", "tags": ["federation"],
        "summary": "The heartbeat: identity, load and capacity (msgpack when Accept asks)",
        "description": "With a nonce the answer is signed over it (X-Swarm-Signature), with the "
                       "accepted key the caller names in X-Swarm-Key-Id, else the current one; "
                       "without a nonce it is an unsigned read-only view.",
        "parameters": [{"name": "nonce", "in": "query", "required": False,
                        "description": "echoed in the heartbeat, which is signed over it",
                        "schema": {"type": "string",
                                   "pattern": rf"^[A-Za-z0-9._~:-]{{1,{MAX_NONCE_CHARS}}}$"}},
                       {"name": "X-Swarm-Key-Id", "in": "header", "required": False,
                        "description": "the fingerprint the caller would like the answer "
                                       "signed with",
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "This node's heartbeat",
                              "headers": _REPLY_HEADERS,
                              "content": {JSON: {"schema": _ref("Heartbeat")},
                                          MSGPACK: {"schema": _ref("Heartbeat")}}},
                      **_errors(400, 401, 403)}},
    ("/v1/federation/peers", "get"): {
        "operationId": "federationPeers", "tags": ["federation"],
        "summary": "This node (marked self) and every peer it tracks, filtered",
        "parameters": _PEER_FILTERS,
        "responses": {"200": {"description": "The peer table",
                              "content": _json(_ref("PeerList"))}, **_errors(400, 401, 403)}},
    ("/v1/federation/approve", "post"): {
        "operationId": "federationApprove", "tags": ["federation"],
        "summary": "Approve (or revoke) a peer's node id (--approve-peers); this machine only",
        "description": "Accepted only from a loopback address (`python main.py peers approve "
                       "ID`); needs the API key when [api] keys is set. Approving an id not "
                       "seen yet is allowed; `state` is then null.",
        "requestBody": {"required": True, "content": _json(_ref("ApproveRequest"))},
        "responses": {"200": {"description": "The approval as stored, and the peer's state",
                              "content": _json(_ref("ApproveReply"))},
                      **_errors(400, 401, 403, 409, 413, 500, notes={
                          500: "The approval could not be saved"})}},
    ("/v1/federation/vote", "post"): {
        "operationId": "federationVote", "tags": ["federation"],
        "summary": "Generate one consensus candidate on this node (JSON or msgpack)",
        "description": "Signed with the swarm key; the answer is signed over the request's nonce.",
        "parameters": _SIGNED_HEADERS,
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("VoteRequest")},
                                                      MSGPACK: {"schema": _ref("VoteRequest")}}},
        "responses": {"200": {"description": "The candidate, in the request's format",
                              "headers": _REPLY_HEADERS,
                              "content": {JSON: {"schema": _ref("VoteReply")},
                                          MSGPACK: {"schema": _ref("VoteReply")}}},
                      **_errors(400, 401, 403, 409, 413, 415, 429, 500, 503)}},
    ("/v1/federation/cancel", "post"): {
        "operationId": "federationCancel", "tags": ["federation"],
        "summary": "Stop a running vote (or one that has not arrived yet)",
        "description": "Signed with the swarm key; the answer is signed over the request's nonce.",
        "parameters": _SIGNED_HEADERS,
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": _ref("CancelRequest")},
                                    MSGPACK: {"schema": _ref("CancelRequest")}}},
        "responses": {"200": {"description": "Whether a running vote was stopped",
                              "headers": _REPLY_HEADERS,
                              "content": _json(_ref("CancelReply"))},
                      **_errors(400, 401, 403, 413, 415)}},
    ("/v1/federation/election", "post"): {
        "operationId": "federationElection", "tags": ["federation"],
        "summary": "One coordinator-election message (Claim, Ack or Announce; JSON or msgpack)",
        "description": "Signed with the swarm key; the answer (the messages this node sends "
                       "back, at most 8) is signed over the request's nonce, in msgpack when "
                       "Accept asks for it, else in the request's format.",
        "parameters": _SIGNED_HEADERS,
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": _ref("ElectionEnvelope")},
                                    MSGPACK: {"schema": _ref("ElectionEnvelope")}}},
        "responses": {"200": {"description": "The messages sent back to the sender",
                              "headers": _REPLY_HEADERS,
                              "content": {JSON: {"schema": _ref("ElectionReply")},
                                          MSGPACK: {"schema": _ref("ElectionReply")}}},
                      **_errors(400, 401, 403, 413, 415, 500, 503, notes={
                          500: "The election failed to handle the message",
                          503: "This node takes no part in the election"})}},
    ("/v1/federation/plan", "get"): {
        "operationId": "federationPlan", "tags": ["federation"],
        "summary": "The coordinator's swarm plan: members, weights, consensus sources",
        "description": "A read-only view; a request signed with the swarm key (the X-Swarm-* "
                       "headers, over GET, this path and an empty body) is verified and its "
                       "answer signed over the request's nonce.",
        "parameters": [{**h, "required": False} for h in _SIGNED_HEADERS],
        "responses": {"200": {"description": "The plan (msgpack when Accept asks for it)",
                              "headers": _REPLY_HEADERS,
                              "content": {JSON: {"schema": _ref("SwarmPlan")},
                                          MSGPACK: {"schema": _ref("SwarmPlan")}}},
                      **_errors(401, 403, 503, notes={
                          503: "No coordinator plan yet (this node does not lead)"})}},
}

_USAGE = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
          "properties": {k: {"type": "integer", "minimum": 0}
                         for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
_FINISH = {"enum": ["stop", "length"]}
_SWARM_REPORT = {
    "type": "object", "description": "How the answer was chosen",
    "required": ["strategy", "candidates"],
    "properties": {
        "strategy": {"type": "string"}, "winner": {"type": ["string", "null"]},
        "early_stop": {"type": "boolean"},
        "candidates": {"type": "array", "items": {"type": "object", "properties": {
            "source": {"type": "string"}, "latency_ms": {"type": "number"},
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


_TURN = {"type": "array", "prefixItems": [{"type": "string", "maxLength": 32},
                                          {"type": "string", "maxLength": MAX_TEXT_CHARS}],
         "minItems": 2, "maxItems": 2}
_WIRE_VERSION = {"const": 1, "description": "wire version"}
_TERM = {"type": "integer", "minimum": 0, "maximum": MAX_TERM}
_SCORE = {"type": "number", "minimum": 0, "maximum": MAX_SCORE}
_PRIORITY = {"type": ["integer", "null"], "minimum": -MAX_PRIORITY, "maximum": MAX_PRIORITY,
             "description": "coordinator priority; null: never coordinator"}
_CANDIDATE = {"type": "object", "required": ["node_id", "priority", "score"],
              "properties": {"node_id": _ID, "priority": _PRIORITY, "score": _SCORE}}


def _election_message(versioned: bool) -> dict[str, Any]:
    """A Claim, Ack or Announce (network/election_wire.py); `versioned` for a request body."""
    common: dict[str, Any] = {"kind": {"enum": ["claim", "ack", "announce"]}, "term": _TERM}
    if versioned:
        common["v"] = _WIRE_VERSION
    return {"type": "object", "required": [*(["v"] if versioned else []), "kind", "term"],
            "properties": common, "oneOf": [
                {"required": ["candidate"],
                 "properties": {"kind": {"const": "claim"}, "candidate": _CANDIDATE}},
                {"required": ["voter", "candidate", "granted"],
                 "properties": {"kind": {"const": "ack"}, "voter": _ID, "candidate": _ID,
                                "granted": {"type": "boolean"}, "seen_term": _TERM}},
                {"required": ["coordinator"],
                 "properties": {"kind": {"const": "announce"}, "coordinator": _CANDIDATE}}]}


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
        "properties": {"index": {"type": "integer"}, "finish_reason": _FINISH,
                       "message": {"type": "object", "properties": {
                           "role": {"const": "assistant"}, "content": {"type": "string"}}}}}),
    "TextCompletion": _completion("text_completion", {
        "type": "object", "required": ["index", "text", "finish_reason"],
        "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                       "finish_reason": _FINISH}}),
    "Heartbeat": {"type": "object", "required": ["v", "node_id", "boot_id", "protocol",
                                                 "api_port"], "properties": {
        "v": _WIRE_VERSION, "node_id": _ID, "boot_id": _ID,
        "protocol": {"type": "integer"}, "api_port": {"type": "integer"},
        "swarm": {"type": "string", "description": "the swarm key's fingerprint, never the key"},
        "model_id": {"type": "string"}, "instances": {"type": "integer"},
        "load": {"type": "number"}, "queue_depth": {"type": "integer"},
        "capabilities": {"type": "array", "items": {"type": "string"},
                         "maxItems": MAX_CAPABILITIES},
        "bench_score": {"type": "number"}, "ram_gb": {"type": "number"},
        "vram_gb": {"type": "number"}, "term": {"type": "integer"},
        "coordinator": {"type": ["string", "null"]}, "priority": _PRIORITY,
        "nonce": {"type": ["string", "null"]}}},
    "PeerList": {"type": "object", "required": ["object", "node_id", "data"], "properties": {
        "object": {"const": "list"}, "node_id": {"type": "string"},
        "term": {"type": ["integer", "null"], "description": "this node's election term"},
        "coordinator": {"type": ["string", "null"],
                        "description": "the coordinator this node follows (its own id when "
                                       "it leads)"},
        "role": {"enum": ["coordinator", "follower", "candidate", None]},
        "discovery": {"type": "object"},
        "data": {"type": "array", "items": {
            "type": "object", "required": ["node_id", "self", "state"],
            "properties": {"node_id": {"type": "string"}, "self": {"type": "boolean"},
                           "state": {"type": "string"}, "address": {"type": ["string", "null"]},
                           "api_port": {"type": ["integer", "null"]},
                           "model": {"type": ["string", "null"]},
                           "load": {"type": ["number", "null"]},
                           "queue_depth": {"type": ["integer", "null"]},
                           "last_seen_s_ago": {"type": ["number", "null"]},
                           "reason": {"type": ["string", "null"]},
                           "term": {"type": ["integer", "null"]},
                           "coordinator": {"type": "boolean", "description": "this node's "
                                           "coordinator (self), or a peer leading by its own "
                                           "heartbeat"}}}}}},
    "VoteRequest": {
        "type": "object", "required": ["v", "request_id"],
        "description": "exactly one of messages (non-empty) or prompt",
        "oneOf": [{"required": ["messages"], "properties": {"messages": {"minItems": 1},
                                                            "prompt": {"type": "null"}}},
                  {"required": ["prompt"], "properties": {"prompt": {"type": "string"},
                                                          "messages": {"maxItems": 0}}}],
        "properties": {
            "v": _WIRE_VERSION, "request_id": _ID,
            "messages": {"type": "array", "items": _TURN, "maxItems": MAX_TURNS},
            "prompt": {"type": ["string", "null"], "maxLength": MAX_TEXT_CHARS},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": MAX_TOKENS},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "seed": {"type": ["integer", "null"], "minimum": -(2**63), "maximum": 2**64 - 1},
            "stop": {"type": "array", "items": {"type": "string", "maxLength": MAX_NAME_CHARS},
                     "maxItems": MAX_STOP}}},
    "VoteReply": {"type": "object", "required": [
        "v", "request_id", "text", "logprobs", "finish_reason", "prompt_tokens",
        "completion_tokens", "latency_s", "node_id"], "properties": {
        "v": _WIRE_VERSION, "request_id": _ID, "text": {"type": "string"},
        "logprobs": {"type": "array", "items": {"type": "number"}},
        "finish_reason": {"enum": list(FINISH_REASONS)},
        "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
        "latency_s": {"type": "number"}, "node_id": _ID}},
    "ApproveRequest": {"type": "object", "required": ["node_id"], "properties": {
        "node_id": _ID,
        "approved": {"type": "boolean", "default": True, "description": "false revokes"}}},
    "ApproveReply": {"type": "object", "required": ["node_id", "approved", "state"],
                     "properties": {"node_id": {"type": "string"}, "approved": {"type": "boolean"},
                                    "state": {"type": ["string", "null"]},
                                    "approve_peers": {"type": "boolean"}}},
    "CancelRequest": {"type": "object", "required": ["v", "request_id"],
                      "properties": {"v": _WIRE_VERSION, "request_id": _ID}},
    "CancelReply": {"type": "object", "required": ["request_id", "cancelled"],
                    "properties": {"request_id": {"type": "string"},
                                   "cancelled": {"type": "boolean"}}},
    "ElectionEnvelope": _election_message(versioned=True),
    "ElectionReply": {"type": "object", "required": ["v", "messages"], "properties": {
        "v": _WIRE_VERSION, "messages": {"type": "array", "items": _election_message(False),
                                         "maxItems": MAX_REPLY_MESSAGES}}},
    "SwarmPlan": {"type": "object", "required": ["v", "term", "coordinator", "issued_at",
                                                 "members", "consensus"], "properties": {
        "v": _WIRE_VERSION, "term": _TERM, "coordinator": _ID,
        "issued_at": {"type": "number", "description": "the coordinator's wall clock (Unix s)"},
        "members": {"type": "array", "maxItems": MAX_PLAN_MEMBERS, "items": {
            "type": "object", "required": ["node_id", "score", "load", "queue_depth",
                                           "instances", "weight"],
            "properties": {"node_id": _ID, "score": _SCORE,
                           "load": {"type": "number", "minimum": 0, "maximum": 1},
                           "queue_depth": {"type": "integer", "minimum": 0},
                           "instances": {"type": "integer", "minimum": 0},
                           "weight": _SCORE}}},
        "consensus": {"type": "array", "items": _ID, "maxItems": MAX_PLAN_MEMBERS,
                      "description": "member node ids, the preferred consensus sources first"}}},
}


def served_operations(app: web.Application) -> set[tuple[str, str]]:
    """(path, method) of every route the app's router serves (HEAD, added for GETs, left out)."""
    out: set[tuple[str, str]] = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method not in ("HEAD", "*"):
            out.add((path, route.method.lower()))
    return out


def _bounded(schema: dict[str, Any], config: ApiConfig) -> dict[str, Any]:
    """A request schema with this node's configured limits written in."""
    schema = copy.deepcopy(schema)
    props = schema["properties"]
    for key in ("max_tokens", "max_completion_tokens"):
        props[key] = {**props[key], "minimum": 1, "maximum": config.max_tokens_limit}
    props["n"] = {**props["n"], "maximum": config.max_n}
    props["swarm"] = {**props["swarm"], "properties": {
        **props["swarm"]["properties"],
        "n": {**props["swarm"]["properties"]["n"], "maximum": config.max_n}}}
    return schema


def _security(method: str, path: str) -> list[dict[str, list[str]]]:
    """The OpenAPI security of one operation when [api] keys is set (network/api_auth.py)."""
    rules = {required_auth(method, path, query) for query in ({}, {"nonce": "n"})}
    out: list[dict[str, list[str]]] = []
    if rules & {Auth.API_KEY, Auth.API_KEY_OR_FORWARD, Auth.API_KEY_OR_SIGNED}:
        out.append({"apiKey": []})
    if Auth.API_KEY_OR_SIGNED in rules:
        out.append({"swarmSignature": []})
    if out and Auth.OPEN in rules:
        out.append({})  # e.g. the heartbeat probe (with a nonce) needs neither
    return out


def openapi_document(app: web.Application, config: ApiConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the operations `app` serves, with `config`'s limits."""
    served = served_operations(app)
    paths: dict[str, dict[str, Any]] = {}
    for path, method in sorted(served):
        operation = copy.deepcopy(OPERATIONS.get((path, method)))
        if operation is None:  # tests/test_openapi.py fails on this; a live node still answers
            log.warning("no OpenAPI description for %s %s", method.upper(), path)
            operation = {"summary": "not described yet", "responses": _errors()}
        if config.keys and (security := _security(method, path)):
            operation["security"] = security
        paths.setdefault(path, {})[method] = operation
    schemas = dict(SCHEMAS)
    schemas["ChatRequest"] = _bounded(CHAT_SCHEMA, config)
    schemas["CompletionRequest"] = _bounded(COMPLETION_SCHEMA, config)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Local Swarm node", "version": "0.1.0",
                 "description": "OpenAI-compatible API of one node; /v1/federation/* are the "
                                "routes peers use (present with --federation)."},
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "apiKey": {"type": "http", "scheme": "bearer",
                       "description": "one of [api] keys, when set"},
            "swarmSignature": {"type": "apiKey", "in": "header", "name": "X-Swarm-Signature",
                               "description": "a request signed with the swarm key: "
                                              "X-Swarm-Key-Id, -Timestamp, -Nonce and "
                                              "-Signature over the method, path and query, "
                                              "and the (empty) body"}}},
    }


def openapi_route(config: ApiConfig) -> Any:
    """The `GET /openapi.json` handler (built on first use: federation routes come later)."""
    cache: dict[str, Any] = {}

    async def handler(request: web.Request) -> web.Response:
        if "doc" not in cache:
            cache["doc"] = openapi_document(request.app, config)
        return web.json_response(cache["doc"])

    return handler
