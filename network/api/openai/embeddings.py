"""POST /v1/embeddings, as OpenAI defines it: `input` a string or a list of strings,
`encoding_format` float or base64 (little-endian float32, what the openai SDK asks for by
default), `dimensions` (the first d components, normalised again). Token arrays are a 400 that
says why: they are OpenAI's tokenizer's ids, which mean nothing to this node's model. A request
goes to a less busy peer when every local instance is busy, as a route request does.
"""
from __future__ import annotations

import base64
from typing import Any

import numpy as np
from aiohttp import web
from jsonschema import Draft202012Validator

from network.api.embeddings import Embedder
from network.api.limits import ClientLimiter, parse_json_body
from network.federation.forwarding import RouteForwarder
from network.wire.fields import MAX_TEXT_CHARS
from swarm.engine.embedding import EMBEDDINGS_FEATURE
from swarm.errors import RequestError

_TEXT = {"type": "string", "maxLength": MAX_TEXT_CHARS}
EMBEDDINGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["input", "model"],
    "properties": {
        "input": {"oneOf": [_TEXT, {"type": "array", "items": _TEXT, "minItems": 1},
                            {"type": "array", "items": {"type": ["integer", "array"]}}]},
        "model": {"type": "string", "maxLength": 256},
        "encoding_format": {"enum": ["float", "base64", None]},
        "dimensions": {"type": ["integer", "null"], "minimum": 1},
        "user": {"type": "string"},
    },
}
_VALIDATOR = Draft202012Validator(EMBEDDINGS_SCHEMA)


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not all(isinstance(v, str) for v in value):
        raise RequestError("input: token arrays are not supported: they are ids of OpenAI's "
                           "tokenizer, not this model's; send the text (LangChain's "
                           "OpenAIEmbeddings: check_embedding_ctx_length=False)", param="input",
                           code="invalid_value")
    return list(value)


def _vector(row: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode()
    return [float(x) for x in row]


class EmbeddingRoutes:
    """POST /v1/embeddings."""

    def __init__(self, embedder: Embedder, model: Any, limiter: ClientLimiter,
                 forwarder: RouteForwarder | None = None) -> None:
        self.embedder = embedder
        self.model = model  # (requested name or None) -> the served model's id, or 404
        self.limiter = limiter
        self.forwarder = forwarder

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """Answer one embeddings request (or relay it to a less busy peer)."""
        async with self.limiter.hold(request.remote or "unknown"):
            body = parse_json_body(await request.read())
            if not isinstance(body, dict):
                raise RequestError("the request body must be a JSON object")
            error = next(iter(_VALIDATOR.iter_errors(body)), None)
            if error is not None:
                path = ".".join(str(p) for p in error.absolute_path) or None
                raise RequestError(f"invalid value for {path or 'body'}: {error.message}",
                                   param=path, code="invalid_value")
            model = self.model(body.get("model"))
            texts = _texts(body["input"])
            if self.forwarder is not None:
                relayed = await self.forwarder.maybe_forward(request,
                                                             frozenset({EMBEDDINGS_FEATURE}))
                if relayed is not None:
                    return relayed
            dimensions = body.get("dimensions")  # JSON Schema's integer admits 3.0
            result = await self.embedder.embed(
                texts, int(dimensions) if dimensions is not None else None)
            encoding = body.get("encoding_format") or "float"
            return web.json_response({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": i, "embedding": _vector(row, encoding)}
                         for i, row in enumerate(result.vectors)],
                "usage": {"prompt_tokens": result.prompt_tokens,
                          "total_tokens": result.prompt_tokens},
                "swarm": {"strategy": "route", "source": result.source},
            })
