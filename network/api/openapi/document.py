"""`GET /openapi.json`: an OpenAPI 3.1 document of the routes this app really serves.

Every operation the node can serve is described once in `OPERATIONS`
(network/api/openapi/operations.py); the document lists those the app's router has (a node without
--federation has no /v1/federation/* routes), and the request bodies in `SCHEMAS`
(network/api/openapi/schemas.py) are the very JSON Schemas the handlers validate with
(network/api/openai/schema.py).
tests/test_openapi.py checks the router and this document name the same paths and methods.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from aiohttp import web

from network.api.auth import Auth, required_auth
from network.api.openai.embeddings import EMBEDDINGS_SCHEMA
from network.api.openai.schema import CHAT_SCHEMA, COMPLETION_SCHEMA
from network.api.openapi.operations import OPERATIONS
from network.api.openapi.responses import error_responses
from network.api.openapi.schemas import SCHEMAS
from swarm.node.config import ApiConfig

__all__ = ["OPENAPI_VERSION", "OPERATIONS", "SCHEMAS", "openapi_document", "openapi_route",
           "served_operations"]

log = logging.getLogger(__name__)

OPENAPI_VERSION = "3.1.0"


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


def _bounded_embeddings(config: ApiConfig) -> dict[str, Any]:
    """The embeddings request schema with this node's limit on inputs per request written in
    (the limit on tokens per input is the model's to count: it is in the description)."""
    schema = copy.deepcopy(EMBEDDINGS_SCHEMA)
    schema["properties"]["input"]["oneOf"][1]["maxItems"] = config.max_embedding_inputs
    schema["properties"]["input"]["description"] = (
        f"a string or a list of at most {config.max_embedding_inputs} strings, each at most "
        f"{config.max_embedding_tokens} of the model's tokens (and within its context)")
    return schema


def _security(method: str, path: str) -> list[dict[str, list[str]]]:
    """The OpenAPI security of one operation when [api] keys is set (network/api/auth.py)."""
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
            operation = {"summary": "not described yet", "responses": error_responses()}
        if config.keys and (security := _security(method, path)):
            operation["security"] = security
        paths.setdefault(path, {})[method] = operation
    schemas = dict(SCHEMAS)
    schemas["ChatRequest"] = _bounded(CHAT_SCHEMA, config)
    schemas["CompletionRequest"] = _bounded(COMPLETION_SCHEMA, config)
    schemas["EmbeddingRequest"] = _bounded_embeddings(config)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Local Swarm node", "version": "0.1.0",
                 "description": "OpenAI-compatible API of one node, with Ollama's (/api/*) and "
                                "the dashboard's; /v1/federation/* are the "
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
