"""The federation half of the components in /openapi.json: the JSON Schemas of the wire messages
(network/wire/messages.py, network/wire/votes.py, network/wire/election.py,
network/wire/pairing.py) and of the peer table and approval bodies, with the same size limits the
codec enforces; merged into `SCHEMAS` (schemas.py).
"""
from __future__ import annotations

from typing import Any

from network.wire import fields
from network.wire.election import MAX_PLAN_MEMBERS, MAX_REPLY_MESSAGES, MAX_SCORE
from network.wire.pairing import (
    COMMITMENT_BYTES,
    JOIN_STATES,
    MAX_JOINER_NAME,
    MAX_WAIT_S,
    NONCE_BYTES,
    PAIRING_STATES,
    PUBLIC_KEY_BYTES,
)

_ID = {"type": "string", "pattern": f"^{fields.ID_PATTERN.pattern}$", "maxLength": fields.MAX_ID_CHARS}
_TURN = {"type": "array", "prefixItems": [{"type": "string", "maxLength": 32},
                                          {"type": "string", "maxLength": fields.MAX_TEXT_CHARS}],
         "minItems": 2, "maxItems": 2}
_WIRE_VERSION = {"const": 1, "description": "wire version"}


def _blob(size: int) -> dict[str, Any]:
    chars = (size * 8 + 5) // 6
    return {"type": "string", "pattern": "^[A-Za-z0-9_-]*$", "minLength": chars,
            "maxLength": chars, "description": f"{size} bytes, unpadded base64url"}


_TERM = {"type": "integer", "minimum": 0, "maximum": fields.MAX_TERM}
_SCORE = {"type": "number", "minimum": 0, "maximum": MAX_SCORE}
_PRIORITY = {"type": ["integer", "null"], "minimum": -fields.MAX_PRIORITY, "maximum": fields.MAX_PRIORITY,
             "description": "coordinator priority; null: never coordinator"}
_CANDIDATE = {"type": "object", "required": ["node_id", "priority", "score"],
              "properties": {"node_id": _ID, "priority": _PRIORITY, "score": _SCORE}}


def _election_message(versioned: bool) -> dict[str, Any]:
    """A Claim, Ack or Announce (network/wire/election.py); `versioned` for a request body."""
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


FEDERATION_SCHEMAS: dict[str, Any] = {
    "Heartbeat": {"type": "object", "required": ["v", "node_id", "boot_id", "protocol",
                                                 "api_port"], "properties": {
        "v": _WIRE_VERSION, "node_id": _ID, "boot_id": _ID,
        "protocol": {"type": "integer"}, "api_port": {"type": "integer"},
        "swarm": {"type": "string", "description": "the swarm key's fingerprint, never the key"},
        "model_id": {"type": "string"}, "instances": {"type": "integer"},
        "load": {"type": "number"}, "queue_depth": {"type": "integer"},
        "capabilities": {"type": "array", "items": {"type": "string"},
                         "maxItems": fields.MAX_CAPABILITIES},
        "bench_score": {"type": "number"}, "ram_gb": {"type": "number"},
        "vram_gb": {"type": "number"}, "term": {"type": "integer"},
        "coordinator": {"type": ["string", "null"]}, "priority": _PRIORITY,
        "solo": {"type": "boolean", "description": "it leads only itself: no peer was in view "
                 "when it took the role"},
        "nonce": {"type": ["string", "null"]},
        "pairing": {"enum": list(PAIRING_STATES)},
        "tok_s": {"type": "number", "minimum": 0,
                  "description": "decode speed of one instance over its last generations"},
        "tokens": {"type": "integer", "minimum": 0,
                   "description": "completion tokens generated since start, for anyone"}}},
    "PeerList": {"type": "object", "required": ["object", "node_id", "data"], "properties": {
        "object": {"const": "list"}, "node_id": {"type": "string"},
        "term": {"type": ["integer", "null"], "description": "this node's election term"},
        "coordinator": {"type": ["string", "null"],
                        "description": "the coordinator this node follows (its own id when "
                                       "it leads)"},
        "role": {"enum": ["coordinator", "follower", "candidate", None]},
        "solo": {"type": "boolean", "description": "this node leads only itself (no peer in "
                 "view): it never takes the role from one that others follow"},
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
                                           "heartbeat"},
                           "solo": {"type": "boolean",
                                    "description": "it leads only itself"}}}}}},
    "VoteRequest": {
        "type": "object", "required": ["v", "request_id"],
        "description": "exactly one of messages (non-empty) or prompt",
        "oneOf": [{"required": ["messages"], "properties": {"messages": {"minItems": 1},
                                                            "prompt": {"type": "null"}}},
                  {"required": ["prompt"], "properties": {"prompt": {"type": "string"},
                                                          "messages": {"maxItems": 0}}}],
        "properties": {
            "v": _WIRE_VERSION, "request_id": _ID,
            "messages": {"type": "array", "items": _TURN, "maxItems": fields.MAX_TURNS},
            "prompt": {"type": ["string", "null"], "maxLength": fields.MAX_TEXT_CHARS},
            "max_tokens": {"type": "integer", "minimum": 1, "maximum": fields.MAX_TOKENS},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "seed": {"type": ["integer", "null"], "minimum": -(2**63), "maximum": 2**64 - 1},
            "stop": {"type": "array", "items": {"type": "string", "maxLength": fields.MAX_NAME_CHARS},
                     "maxItems": fields.MAX_STOP},
            "tools": {"type": "array", "maxItems": fields.MAX_TOOLS,
                      "description": "[name, description, parameters as JSON Schema text]",
                      "items": {"type": "array", "items": {"type": "string"},
                                "minItems": 3, "maxItems": 3}},
            "tool_choice": {"enum": ["auto", "none", "required", "function"]},
            "tool_function": {"type": ["string", "null"],
                              "description": "the function tool_choice 'function' names"},
            "parallel_tool_calls": {"type": "boolean"},
            "tool_turns": {"type": "array", "maxItems": fields.MAX_TURNS,
                           "description": "[turn index, tool_call_id it answers or '', "
                                          "[[id, name, arguments], ...] it made]",
                           "items": {"type": "array", "minItems": 3, "maxItems": 3}}}},
    "VoteReply": {"type": "object", "required": [
        "v", "request_id", "text", "logprobs", "finish_reason", "prompt_tokens",
        "completion_tokens", "latency_s", "node_id"], "properties": {
        "v": _WIRE_VERSION, "request_id": _ID, "text": {"type": "string"},
        "logprobs": {"type": "array", "items": {"type": "number"}},
        "finish_reason": {"enum": list(fields.FINISH_REASONS)},
        "prompt_tokens": {"type": "integer"}, "completion_tokens": {"type": "integer"},
        "latency_s": {"type": "number"}, "node_id": _ID}},
    "ApproveRequest": {"type": "object", "required": ["node_id"], "properties": {
        "node_id": _ID,
        "approved": {"type": "boolean", "default": True,
                     "description": "false revokes (or refuses a join request)"},
        "code": {"type": "string", "maxLength": 32,
                 "description": "the join code the machine shows, when two requests claim "
                                "one node id"}}},
    "ApproveReply": {"type": "object", "required": ["node_id", "approved", "state"],
                     "properties": {"node_id": {"type": "string"}, "approved": {"type": "boolean"},
                                    "state": {"type": ["string", "null"]},
                                    "join": {"type": ["object", "null"]},
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
    "JoinHello": {"type": "object", "required": ["v", "node_id", "name", "swarm", "commitment"],
                  "properties": {"v": _WIRE_VERSION, "node_id": _ID,
                                 "name": {"type": "string", "maxLength": MAX_JOINER_NAME},
                                 "swarm": _ID, "commitment": _blob(COMMITMENT_BYTES)}},
    "JoinOffer": {"type": "object", "required": ["v", "node_id", "swarm", "member_key",
                                                 "expires_s"],
                  "properties": {"v": _WIRE_VERSION, "node_id": _ID, "swarm": _ID,
                                 "member_key": _blob(PUBLIC_KEY_BYTES),
                                 "expires_s": {"type": "number"}}},
    "JoinReveal": {"type": "object", "required": ["v", "node_id", "commitment", "joiner_key",
                                                  "nonce"],
                   "properties": {"v": _WIRE_VERSION, "node_id": _ID,
                                  "commitment": _blob(COMMITMENT_BYTES),
                                  "joiner_key": _blob(PUBLIC_KEY_BYTES),
                                  "nonce": _blob(NONCE_BYTES)}},
    "JoinWait": {"type": "object", "required": ["v", "node_id", "commitment"],
                 "properties": {"v": _WIRE_VERSION, "node_id": _ID,
                                "commitment": _blob(COMMITMENT_BYTES),
                                "wait_s": {"type": "number", "minimum": 0,
                                           "maximum": MAX_WAIT_S}}},
    "JoinStatus": {"type": "object", "required": ["v", "state"], "properties": {
        "v": _WIRE_VERSION, "state": {"enum": list(JOIN_STATES)},
        "sealed": {"type": "string", "description": "approved only: the swarm key, sealed"},
        "expires_s": {"type": "number"}}},
    "JoinList": {"type": "object", "required": ["node_id", "pairing", "requests"], "properties": {
        "node_id": _ID, "pairing": {"enum": list(PAIRING_STATES)}, "swarm": {"type": "string"},
        "requests": {"type": "array", "items": {"type": "object", "properties": {
            "node_id": _ID, "name": {"type": "string"}, "address": {"type": "string"},
            "state": {"enum": ["offered", "pending", "approved"]},
            "code": {"type": ["string", "null"]}, "age_s": {"type": "number"},
            "expires_in_s": {"type": "number"}}}},
        "joining": {"type": ["object", "null"]}, "reason": {"type": "string"}}},
}
