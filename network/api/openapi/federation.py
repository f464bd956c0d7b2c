"""The federation routes' half of the paths in /openapi.json: `/v1/federation/*` (health, peers,
approve, vote, cancel, election, plan, tether and joining by approval), merged into `OPERATIONS`
(operations.py). The routes are those of network/federation/server.py, vote_routes.py,
tether_routes.py and join_routes.py, and network/trust/approval.py; the swarm-key signature
headers they take are network/trust/signing.py's.
"""
from __future__ import annotations

from typing import Any

from network.api.openapi.responses import JSON, MSGPACK, error_responses, json_content, ref
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
    TETHER_PATH,
    VOTE_PATH,
)

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

FEDERATION_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
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
                              "content": {JSON: {"schema": ref("Heartbeat")},
                                          MSGPACK: {"schema": ref("Heartbeat")}}},
                      **error_responses(400, 401, 403)}},
    (PEERS_PATH, "get"): {
        "operationId": "federationPeers", "tags": ["federation"],
        "summary": "This node (marked self) and every peer it tracks, filtered",
        "parameters": _PEER_FILTERS,
        "responses": {"200": {"description": "The peer table",
                              "content": json_content(ref("PeerList"))}, **error_responses(400, 401, 403)}},
    (APPROVE_PATH, "post"): {
        "operationId": "federationApprove", "tags": ["federation"],
        "summary": "Approve (or revoke) a machine asking to join, or a peer's node id "
                   "(--approve-peers); this machine only",
        "description": "Accepted only from a loopback address (`python main.py peers approve "
                       "ID`); needs the API key when [api] keys is set. When ID has a join "
                       "request here, approving seals the swarm key to it (`join` says so) and "
                       "revoking refuses it. Approving an id not seen yet is allowed; `state` "
                       "is then null.",
        "requestBody": {"required": True, "content": json_content(ref("ApproveRequest"))},
        "responses": {"200": {"description": "The approval as stored, and the peer's state",
                              "content": json_content(ref("ApproveReply"))},
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
        "requestBody": {"required": True, "content": {JSON: {"schema": ref("VoteRequest")},
                                                      MSGPACK: {"schema": ref("VoteRequest")}}},
        "responses": {"200": {"description": "The candidate, in the request's format",
                              "headers": _REPLY_HEADERS,
                              "content": {JSON: {"schema": ref("VoteReply")},
                                          MSGPACK: {"schema": ref("VoteReply")}}},
                      **error_responses(400, 401, 403, 409, 413, 415, 429, 500, 503)}},
    (CANCEL_PATH, "post"): {
        "operationId": "federationCancel", "tags": ["federation"],
        "summary": "Stop a running vote (or one that has not arrived yet)",
        "description": "Signed with the swarm key; the answer is signed over the request's nonce.",
        "parameters": _SIGNED_HEADERS,
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": ref("CancelRequest")},
                                    MSGPACK: {"schema": ref("CancelRequest")}}},
        "responses": {"200": {"description": "Whether a running vote was stopped",
                              "headers": _REPLY_HEADERS,
                              "content": json_content(ref("CancelReply"))},
                      **error_responses(400, 401, 403, 413, 415)}},
    (ELECTION_PATH, "post"): {
        "operationId": "federationElection", "tags": ["federation"],
        "summary": "One coordinator-election message (Claim, Ack or Announce; JSON or msgpack)",
        "description": "Signed with the swarm key; the answer (the messages this node sends "
                       "back, at most 8) is signed over the request's nonce, in msgpack when "
                       "Accept asks for it, else in the request's format.",
        "parameters": _SIGNED_HEADERS,
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": ref("ElectionEnvelope")},
                                    MSGPACK: {"schema": ref("ElectionEnvelope")}}},
        "responses": {"200": {"description": "The messages sent back to the sender",
                              "headers": _REPLY_HEADERS,
                              "content": {JSON: {"schema": ref("ElectionReply")},
                                          MSGPACK: {"schema": ref("ElectionReply")}}},
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
                              "content": {JSON: {"schema": ref("SwarmPlan")},
                                          MSGPACK: {"schema": ref("SwarmPlan")}}},
                      **error_responses(401, 403, 503, notes={
                          503: "No coordinator plan yet (this node does not lead)"})}},
    (TETHER_PATH, "get"): {
        "operationId": "federationTether", "tags": ["federation"],
        "summary": "Held open by a follower; it ends only when this node's process does",
        "description": "Signed with the swarm key. The 200's body never comes while this node "
                       "runs: when its process ends (a crash, a kill, a shutdown) the connection "
                       "closes at once, which is how followers see their coordinator crash "
                       "within milliseconds. At most 256 are held (429 past that).",
        "parameters": _SIGNED_HEADERS,
        "responses": {"200": {"description": "A stream that stays empty until this node stops",
                              "content": {"application/octet-stream": {
                                  "schema": {"type": "string", "format": "binary"}}}},
                      **error_responses(401, 403, 429)}},
    (JOIN_PATH, "post"): {
        "operationId": "federationJoin", "tags": ["federation", "pairing"],
        "summary": "A fresh machine asks to join this swarm (unsigned; rate-limited per address)",
        "description": "Answers with the swarm's one-time public key for the joiner's "
                       "commitment (the same on every member). Refused with 403 when pairing "
                       "is off, 409 when this node asks to join elsewhere, 429 beyond 5 "
                       "hellos from one address (then one per 10 s) or 16 waiting requests.",
        "requestBody": {"required": True, "content": {JSON: {"schema": ref("JoinHello")},
                                                      MSGPACK: {"schema": ref("JoinHello")}}},
        "responses": {"200": {"description": "The offer", "content": {
            JSON: {"schema": ref("JoinOffer")}, MSGPACK: {"schema": ref("JoinOffer")}}},
                      **error_responses(400, 403, 409, 413, 415, 429)}},
    (JOIN_REVEAL_PATH, "post"): {
        "operationId": "federationJoinReveal", "tags": ["federation", "pairing"],
        "summary": "The joiner opens its commitment; the request now shows its code here",
        "requestBody": {"required": True, "content": {JSON: {"schema": ref("JoinReveal")},
                                                      MSGPACK: {"schema": ref("JoinReveal")}}},
        "responses": {"200": {"description": "The request, pending", "content": {
            JSON: {"schema": ref("JoinStatus")}, MSGPACK: {"schema": ref("JoinStatus")}}},
                      **error_responses(400, 404, 409, 413, 415, notes={
                          404: "No such join request (expired, refused or never made)"})}},
    (JOIN_WAIT_PATH, "post"): {
        "operationId": "federationJoinWait", "tags": ["federation", "pairing"],
        "summary": "Wait (long poll, at most 25 s) for the decision on a join request",
        "description": "Approved answers carry the swarm key sealed to the joiner's one-time "
                       "key (ChaCha20-Poly1305 under an X25519 exchange): only that joiner "
                       "opens it.",
        "requestBody": {"required": True, "content": {JSON: {"schema": ref("JoinWait")},
                                                      MSGPACK: {"schema": ref("JoinWait")}}},
        "responses": {"200": {"description": "pending, approved or refused", "content": {
            JSON: {"schema": ref("JoinStatus")}, MSGPACK: {"schema": ref("JoinStatus")}}},
                      **error_responses(400, 404, 413, 415, 429, notes={
                          404: "No such join request (expired, refused or never made)"})}},
    (JOINS_PATH, "get"): {
        "operationId": "federationJoins", "tags": ["federation", "pairing"],
        "summary": "The join requests this node holds, with their codes, and its own request",
        "responses": {"200": {"description": "Pairing state and join requests",
                              "content": json_content(ref("JoinList"))},
                      **error_responses(401, 403)}},
}
