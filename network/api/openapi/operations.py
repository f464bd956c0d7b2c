"""The paths half of /openapi.json: every operation a node can serve, described once.

`OPERATIONS` maps (path, method) to its OpenAPI operation; network/api/openapi/document.py lists those the
app's router has. The bodies and answers named here by `$ref` are in network/api/openapi/schemas.py.
"""
from __future__ import annotations

from typing import Any

from network.api.openapi.surfaces import SURFACE_OPERATIONS
from network.membership.records import PeerState
from network.trust.signing import (
    KEY_ID_HEADER,
    KEY_ID_PATTERN,
    NONCE_HEADER,
    REQUEST_NONCE_PATTERN,
    SIGNATURE_HEADER,
    SIGNATURE_PATTERN,
    TIMESTAMP_HEADER,
    TIMESTAMP_PATTERN,
)
from network.wire.fields import NONCE_PATTERN
from network.wire.paths import (
    APPROVE_PATH,
    CANCEL_PATH,
    ELECTION_PATH,
    HEALTH_PATH,
    JOIN_PATH,
    JOIN_REVEAL_PATH,
    JOIN_WAIT_PATH,
    JOINS_PATH,
    PEERS_PATH,
    PLAN_PATH,
    VOTE_PATH,
)

JSON = "application/json"
MSGPACK = "application/msgpack"
SSE = "text/event-stream"
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


def error_responses(*codes: int, notes: dict[int, str] | None = None) -> dict[str, Any]:
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


# The swarm-key signature of network/trust/signing.py: HMAC-SHA256 over method, path and query,
# timestamp, nonce and the body's SHA-256.
_SIGNED_HEADERS = [
    {"name": name, "in": "header", "required": True, "description": description,
     "schema": {"type": "string", "pattern": f"^{pattern.pattern}$"}}
    for name, description, pattern in (
        (KEY_ID_HEADER, "fingerprint of the signing swarm key (never the key)", KEY_ID_PATTERN),
        (TIMESTAMP_HEADER, "the sender's wall clock in whole Unix seconds; more than 30 s off is "
                           "refused", TIMESTAMP_PATTERN),
        (NONCE_HEADER, "fresh per request; a nonce seen before is refused (replay)",
         REQUEST_NONCE_PATTERN),
        (SIGNATURE_HEADER, "hex HMAC-SHA256 with the swarm key over the request",
         SIGNATURE_PATTERN))]
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

# (path, method) -> operation. The federation routes are those of network/federation/server.py
# and vote_routes.py.
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
                              "content": _json(_ref("ModelList"))}, **error_responses(401)}},
    ("/v1/chat/completions", "post"): {
        "operationId": "createChatCompletion",
        "summary": "Chat completion: one instance (route) or a consensus (the swarm field)",
        "description": _FORWARDED,
        "requestBody": {"required": True, "content": _json(_ref("ChatRequest"))},
        "responses": {"200": {"description": "The completion, or SSE chunks ending in "
                                             "`data: [DONE]` when stream is true",
                              "content": {JSON: {"schema": _ref("ChatCompletion")},
                                          SSE: {"schema": _SSE_EVENT}}},
                      **error_responses(400, 401, 403, 404, 413, 429, 502, 504)}},
    ("/v1/completions", "post"): {
        "operationId": "createCompletion", "summary": "Text completion of a raw prompt",
        "description": _FORWARDED,
        "requestBody": {"required": True, "content": _json(_ref("CompletionRequest"))},
        "responses": {"200": {"description": "The completion, or SSE chunks ending in "
                                             "`data: [DONE]` when stream is true",
                              "content": {JSON: {"schema": _ref("TextCompletion")},
                                          SSE: {"schema": _SSE_EVENT}}},
                      **error_responses(400, 401, 403, 404, 413, 429, 502, 504)}},
    ("/v1/embeddings", "post"): {
        "operationId": "createEmbedding",
        "summary": "Embeddings of a string or a list of strings from the serving model",
        "description": "One unit-length vector per input: the position-weighted mean of the "
                       "model's last hidden states (swarm/engine/embedding.py). `dimensions` "
                       "keeps the first d components, normalised again; `encoding_format: "
                       "base64` sends little-endian float32. Inputs per request and tokens per "
                       "input are bounded by [api] max_embedding_inputs and "
                       "max_embedding_tokens. " + _FORWARDED,
        "requestBody": {"required": True, "content": _json(_ref("EmbeddingRequest"))},
        "responses": {"200": {"description": "The vectors, in input order",
                              "content": _json(_ref("EmbeddingList"))},
                      **error_responses(400, 401, 403, 404, 413, 429, 500)}},
    (HEALTH_PATH, "get"): {
        "operationId": "federationHealth", "tags": ["federation"],
        "summary": "The heartbeat: identity, load and capacity (msgpack when Accept asks)",
        "description": "With a nonce the answer is signed over it (X-Swarm-Signature), with the "
                       "accepted key the caller names in X-Swarm-Key-Id, else the current one; "
                       "without a nonce it is an unsigned read-only view.",
        "parameters": [{"name": "nonce", "in": "query", "required": False,
                        "description": "echoed in the heartbeat, which is signed over it",
                        "schema": {"type": "string",
                                   "pattern": f"^{NONCE_PATTERN.pattern}$"}},
                       {"name": "X-Swarm-Key-Id", "in": "header", "required": False,
                        "description": "the fingerprint the caller would like the answer "
                                       "signed with",
                        "schema": {"type": "string"}}],
        "responses": {"200": {"description": "This node's heartbeat",
                              "headers": _REPLY_HEADERS,
                              "content": {JSON: {"schema": _ref("Heartbeat")},
                                          MSGPACK: {"schema": _ref("Heartbeat")}}},
                      **error_responses(400, 401, 403)}},
    (PEERS_PATH, "get"): {
        "operationId": "federationPeers", "tags": ["federation"],
        "summary": "This node (marked self) and every peer it tracks, filtered",
        "parameters": _PEER_FILTERS,
        "responses": {"200": {"description": "The peer table",
                              "content": _json(_ref("PeerList"))}, **error_responses(400, 401, 403)}},
    (APPROVE_PATH, "post"): {
        "operationId": "federationApprove", "tags": ["federation"],
        "summary": "Approve (or revoke) a machine asking to join, or a peer's node id "
                   "(--approve-peers); this machine only",
        "description": "Accepted only from a loopback address (`python main.py peers approve "
                       "ID`); needs the API key when [api] keys is set. When ID has a join "
                       "request here, approving seals the swarm key to it (`join` says so) and "
                       "revoking refuses it. Approving an id not seen yet is allowed; `state` "
                       "is then null.",
        "requestBody": {"required": True, "content": _json(_ref("ApproveRequest"))},
        "responses": {"200": {"description": "The approval as stored, and the peer's state",
                              "content": _json(_ref("ApproveReply"))},
                      **error_responses(400, 401, 403, 404, 409, 413, 500, notes={
                          404: "A code was given and no join request of ID shows it",
                          409: "The approved list is full, or several join requests claim ID "
                               "(give the code)",
                          500: "The approval could not be saved"})}},
    (VOTE_PATH, "post"): {
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
                      **error_responses(400, 401, 403, 409, 413, 415, 429, 500, 503)}},
    (CANCEL_PATH, "post"): {
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
                      **error_responses(400, 401, 403, 413, 415)}},
    (ELECTION_PATH, "post"): {
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
                      **error_responses(400, 401, 403, 413, 415, 500, 503, notes={
                          500: "The election failed to handle the message",
                          503: "This node takes no part in the election"})}},
    (PLAN_PATH, "get"): {
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
                      **error_responses(401, 403, 503, notes={
                          503: "No coordinator plan yet (this node does not lead)"})}},
    (JOIN_PATH, "post"): {
        "operationId": "federationJoin", "tags": ["federation", "pairing"],
        "summary": "A fresh machine asks to join this swarm (unsigned; rate-limited per address)",
        "description": "Answers with the swarm's one-time public key for the joiner's "
                       "commitment (the same on every member). Refused with 403 when pairing "
                       "is off, 409 when this node asks to join elsewhere, 429 beyond 5 "
                       "hellos from one address (then one per 10 s) or 16 waiting requests.",
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("JoinHello")},
                                                      MSGPACK: {"schema": _ref("JoinHello")}}},
        "responses": {"200": {"description": "The offer", "content": {
            JSON: {"schema": _ref("JoinOffer")}, MSGPACK: {"schema": _ref("JoinOffer")}}},
                      **error_responses(400, 403, 409, 413, 415, 429)}},
    (JOIN_REVEAL_PATH, "post"): {
        "operationId": "federationJoinReveal", "tags": ["federation", "pairing"],
        "summary": "The joiner opens its commitment; the request now shows its code here",
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("JoinReveal")},
                                                      MSGPACK: {"schema": _ref("JoinReveal")}}},
        "responses": {"200": {"description": "The request, pending", "content": {
            JSON: {"schema": _ref("JoinStatus")}, MSGPACK: {"schema": _ref("JoinStatus")}}},
                      **error_responses(400, 404, 409, 413, 415, notes={
                          404: "No such join request (expired, refused or never made)"})}},
    (JOIN_WAIT_PATH, "post"): {
        "operationId": "federationJoinWait", "tags": ["federation", "pairing"],
        "summary": "Wait (long poll, at most 25 s) for the decision on a join request",
        "description": "Approved answers carry the swarm key sealed to the joiner's one-time "
                       "key (ChaCha20-Poly1305 under an X25519 exchange): only that joiner "
                       "opens it.",
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref("JoinWait")},
                                                      MSGPACK: {"schema": _ref("JoinWait")}}},
        "responses": {"200": {"description": "pending, approved or refused", "content": {
            JSON: {"schema": _ref("JoinStatus")}, MSGPACK: {"schema": _ref("JoinStatus")}}},
                      **error_responses(400, 404, 413, 415, 429, notes={
                          404: "No such join request (expired, refused or never made)"})}},
    (JOINS_PATH, "get"): {
        "operationId": "federationJoins", "tags": ["federation", "pairing"],
        "summary": "The join requests this node holds, with their codes, and its own request",
        "responses": {"200": {"description": "Pairing state and join requests",
                              "content": _json(_ref("JoinList"))},
                      **error_responses(401, 403)}},
    **SURFACE_OPERATIONS,  # the dashboard and the Ollama routes (surfaces.py)
}
