"""The paths half of /openapi.json: every operation a node can serve, described once.

`OPERATIONS` maps (path, method) to its OpenAPI operation; network/api/openapi/document.py lists
those the app's router has. The federation routes are described in federation.py, the dashboard
and Ollama routes in surfaces.py; the bodies and answers named here by `$ref` are in
network/api/openapi/schemas.py.
"""
from __future__ import annotations

from typing import Any

from network.api.openapi.federation import FEDERATION_OPERATIONS
from network.api.openapi.responses import JSON, SSE, error_responses, json_content, ref
from network.api.openapi.surfaces import SURFACE_OPERATIONS

_FORWARDED = ("A peer forwarding a route-mode request adds X-Local-Swarm-Forwarded and signs it "
              "with the swarm key (the X-Swarm-* headers of /v1/federation/vote); that header "
              "without a valid signature is refused with 401 or 403.")
# One server-sent event: `data:` carries a chunk as JSON (chat.completion.chunk or
# text_completion; an error body if the request fails after the 200), the last one `[DONE]`.
_SSE_EVENT = {"type": "object", "required": ["data"],
              "properties": {"data": {"type": "string"}, "event": {"type": "string"}}}

# (path, method) -> operation.
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/health", "get"): {
        "operationId": "health", "summary": "Liveness and load of this node",
        "responses": {"200": {"description": "The node is up",
                              "content": json_content(ref("Health"))}}},
    ("/openapi.json", "get"): {
        "operationId": "openapi", "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1 document",
                              "content": json_content({"type": "object"})}}},
    ("/v1/models", "get"): {
        "operationId": "listModels", "summary": "The model this node serves (OpenAI format)",
        "responses": {"200": {"description": "A list with one model",
                              "content": json_content(ref("ModelList"))}, **error_responses(401)}},
    ("/v1/chat/completions", "post"): {
        "operationId": "createChatCompletion",
        "summary": "Chat completion: one instance (route) or a consensus (the swarm field)",
        "description": _FORWARDED,
        "requestBody": {"required": True, "content": json_content(ref("ChatRequest"))},
        "responses": {"200": {"description": "The completion, or SSE chunks ending in "
                                             "`data: [DONE]` when stream is true",
                              "content": {JSON: {"schema": ref("ChatCompletion")},
                                          SSE: {"schema": _SSE_EVENT}}},
                      **error_responses(400, 401, 403, 404, 413, 429, 502, 504)}},
    ("/v1/completions", "post"): {
        "operationId": "createCompletion", "summary": "Text completion of a raw prompt",
        "description": _FORWARDED,
        "requestBody": {"required": True, "content": json_content(ref("CompletionRequest"))},
        "responses": {"200": {"description": "The completion, or SSE chunks ending in "
                                             "`data: [DONE]` when stream is true",
                              "content": {JSON: {"schema": ref("TextCompletion")},
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
        "requestBody": {"required": True, "content": json_content(ref("EmbeddingRequest"))},
        "responses": {"200": {"description": "The vectors, in input order",
                              "content": json_content(ref("EmbeddingList"))},
                      **error_responses(400, 401, 403, 404, 413, 429, 500)}},
    **FEDERATION_OPERATIONS,  # the /v1/federation/* routes (federation.py)
    **SURFACE_OPERATIONS,  # the dashboard and the Ollama routes (surfaces.py)
}
