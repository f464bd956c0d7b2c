"""The dashboard's and the Ollama routes' half of /openapi.json: their operations and schemas,
merged into `OPERATIONS` (operations.py) and `SCHEMAS` (schemas.py). The Ollama request schemas
are those the handlers validate with (network/api/ollama/schema.py)."""
from __future__ import annotations

from typing import Any

from network.api.dashboard.routes import MAX_WAIT_S, PAGE_PATH, SNAPSHOT_PATH
from network.api.ollama import schema as ollama
from network.wire.paths import STATS_PATH

JSON = "application/json"
NDJSON = "application/x-ndjson"
_OBJECT = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int, body: str) -> dict[str, Any]:
    described = {400: "Invalid input (the error names the field)", 401: "Missing or wrong API key",
                 403: "A forwarded request signed with a swarm key this node does not accept",
                 404: "Unknown model, or a model tag that is no strategy",
                 413: "Request body over [api] max_body_bytes",
                 429: "Busy: see Retry-After", 502: "No candidate of a consensus was usable",
                 504: "The consensus deadline passed without a quorum"}
    content = {JSON: {"schema": _ref(body)}}
    out: dict[str, Any] = {str(c): {"description": described[c], "content": content}
                           for c in codes}
    out["default"] = {"description": "Any other error, in the same body", "content": content}
    return out


def _page(what: str, media: str) -> dict[str, Any]:
    return {"operationId": "dashboard" + what.title().replace(".", "").replace("/", ""),
            "tags": ["dashboard"], "summary": f"The dashboard's {what} (open, no data in it)",
            "responses": {"200": {"description": what, "content": {media: {
                "schema": {"type": "string"}}}}}}


def _generate(name: str, body: str, summary: str) -> dict[str, Any]:
    return {"operationId": name, "tags": ["ollama"], "summary": summary,
            "description": "Streams NDJSON (one JSON object a line, the last with done: true "
                           "and the counts) unless stream is false. The model's tag picks the "
                           "strategy (:latest routes; :best_of_n, :weighted_vote, :first_valid), "
                           "or options.swarm as in the OpenAI body's swarm field.",
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref(body)}}},
            "responses": {"200": {"description": "The answer, or its NDJSON stream",
                                  "content": {JSON: {"schema": _OBJECT},
                                              NDJSON: {"schema": {"type": "string"}}}},
                          **_errors(400, 401, 403, 404, 413, 429, 502, 504,
                                    body="OllamaError")}}


_MODEL_LIST = {"type": "object", "required": ["models"], "properties": {"models": {
    "type": "array", "items": {"type": "object", "required": ["name", "model"], "properties": {
        "name": {"type": "string"}, "model": {"type": "string"}, "size": {"type": "integer"},
        "digest": {"type": "string"}, "modified_at": {"type": "string"},
        "details": {"type": "object"}}}}}}

SURFACE_SCHEMAS: dict[str, Any] = {
    "OllamaError": {"type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}},
    "OllamaChatRequest": ollama.CHAT_SCHEMA,
    "OllamaGenerateRequest": ollama.GENERATE_SCHEMA,
    "OllamaShowRequest": ollama.SHOW_SCHEMA,
    "OllamaEmbedRequest": ollama.EMBED_SCHEMA,
    "OllamaModelList": _MODEL_LIST,
    "SwarmSnapshot": {"type": "object", "required": ["object", "node_id", "version", "nodes"],
                      "properties": {"object": {"const": "swarm.snapshot"},
                                     "node_id": {"type": "string"},
                                     "version": {"type": "integer"},
                                     "nodes": {"type": "array", "items": _OBJECT},
                                     "spans": {"type": ["object", "null"]},
                                     "requests": {"type": "array", "items": _OBJECT},
                                     "usage": _OBJECT,
                                     "joins": {"type": "object", "description":
                                               "machines asking to join, with their codes "
                                               "(as GET /v1/federation/joins)"}}},
    "UsageStats": {"type": "object", "required": ["node_id", "total", "by_strategy", "by_node"],
                   "properties": {"node_id": {"type": "string"}, "total": _OBJECT,
                                  "by_strategy": _OBJECT, "by_api": _OBJECT, "by_node": _OBJECT,
                                  "generated_tokens": {"type": "integer"},
                                  "tok_s": {"type": "number"}}},
}

_SNAPSHOT_QUERY = [
    {"name": "after", "in": "query", "required": False,
     "description": "the version the caller has; the answer waits for a newer one",
     "schema": {"type": "string", "pattern": "^[0-9]{1,15}$"}},
    {"name": "wait_s", "in": "query", "required": False,
     "description": f"how long to wait for a change (at most {MAX_WAIT_S:g} s)",
     "schema": {"type": "string", "pattern": r"^[0-5](\.[0-9]{1,3})?$"}},
]

SURFACE_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    (PAGE_PATH, "get"): _page("page", "text/html"),
    (PAGE_PATH + "/app.js", "get"): _page("script", "application/javascript"),
    (PAGE_PATH + "/style.css", "get"): _page("style sheet", "text/css"),
    (SNAPSHOT_PATH, "get"): {
        "operationId": "dashboardSnapshot", "tags": ["dashboard"],
        "summary": "The swarm as this node sees it: nodes, coordinator, spans, requests, usage",
        "description": "With `after`, a long poll: answered when the change version passes it "
                       "(or at once when `after` is not the current version), else after "
                       "`wait_s` seconds (default 2).",
        "parameters": _SNAPSHOT_QUERY,
        "responses": {"200": {"description": "The snapshot",
                              "content": {JSON: {"schema": _ref("SwarmSnapshot")}}},
                      **_errors(400, 401, body="Error")}},
    (STATS_PATH, "get"): {
        "operationId": "federationStats", "tags": ["federation"],
        "summary": "Usage: requests and tokens by strategy and API, tokens by node",
        "responses": {"200": {"description": "This node's usage since it started",
                              "content": {JSON: {"schema": _ref("UsageStats")}}},
                      **_errors(401, body="Error")}},
    ("/api/version", "get"): {
        "operationId": "ollamaVersion", "tags": ["ollama"], "summary": "Ollama API version",
        "responses": {"200": {"description": "The version", "content": {JSON: {"schema": {
            "type": "object", "required": ["version"],
            "properties": {"version": {"type": "string"}}}}}},
            **_errors(401, body="OllamaError")}},
    ("/api/tags", "get"): {
        "operationId": "ollamaTags", "tags": ["ollama"],
        "summary": "The model, once per strategy tag (:latest routes)",
        "responses": {"200": {"description": "The models",
                              "content": {JSON: {"schema": _ref("OllamaModelList")}}},
                      **_errors(401, body="OllamaError")}},
    ("/api/ps", "get"): {
        "operationId": "ollamaRunning", "tags": ["ollama"], "summary": "The loaded model",
        "responses": {"200": {"description": "The models",
                              "content": {JSON: {"schema": _ref("OllamaModelList")}}},
                      **_errors(401, body="OllamaError")}},
    ("/api/show", "post"): {
        "operationId": "ollamaShow", "tags": ["ollama"], "summary": "What a model is",
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": _ref("OllamaShowRequest")}}},
        "responses": {"200": {"description": "The model's details",
                              "content": {JSON: {"schema": _OBJECT}}},
                      **_errors(400, 401, 404, 413, body="OllamaError")}},
    ("/api/embed", "post"): {
        "operationId": "ollamaEmbed", "tags": ["ollama"],
        "summary": "Embeddings, as POST /v1/embeddings makes them, in Ollama's shape",
        "requestBody": {"required": True,
                        "content": {JSON: {"schema": _ref("OllamaEmbedRequest")}}},
        "responses": {"200": {"description": "One unit vector per input", "content": {JSON: {
            "schema": {"type": "object", "required": ["model", "embeddings"], "properties": {
                "model": {"type": "string"},
                "embeddings": {"type": "array", "items": {"type": "array",
                                                          "items": {"type": "number"}}},
                "total_duration": {"type": "integer"}, "load_duration": {"type": "integer"},
                "prompt_eval_count": {"type": "integer"}}}}}},
                      **_errors(400, 401, 404, 413, 429, body="OllamaError")}},
    ("/api/chat", "post"): _generate("ollamaChat", "OllamaChatRequest", "Ollama chat"),
    ("/api/generate", "post"): _generate("ollamaGenerate", "OllamaGenerateRequest",
                                         "Ollama completion of a prompt"),
}
