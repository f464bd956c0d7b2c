"""Embeddings as one clean call for every route that serves them (OpenAI's `/v1/embeddings`,
and the Ollama routes' `/api/embed`): check the inputs against `[api]` limits, pick the least
busy local instance (the chooser's `fill`, as route mode does), embed there in batches, and cut
to `dimensions`. Forwarding to a less busy peer happens before, on the HTTP request
(network/federation/forwarding.py), because the peer answers in the route's own format.
"""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from network.coordination.chooser import fill
from swarm.engine.embedding import shorten
from swarm.engine.pool import InstancePool
from swarm.errors import RequestError
from swarm.node.config import ApiConfig


@dataclass(frozen=True)
class EmbeddingResult:
    """Unit vectors (rows, in input order), tokens over all inputs, and the instance used."""

    vectors: np.ndarray
    prompt_tokens: int
    source: str


class Embedder:
    """Embeds texts on this node's instances within the `[api]` limits."""

    def __init__(self, pool: InstancePool, api: ApiConfig) -> None:
        self.pool = pool
        self.api = api

    def limit_tokens(self) -> int:
        """Tokens one input may have: `[api] max_embedding_tokens`, within the context."""
        return min(self.api.max_embedding_tokens, self.pool.context_length)

    async def embed(self, texts: Sequence[str], dimensions: int | None = None, *,
                    param: str = "input") -> EmbeddingResult:
        """Embed `texts` (one vector each); RequestError (400) naming `param` for too many
        inputs, an empty one, one over the token limit, or `dimensions` beyond the model's."""
        if not texts:
            raise RequestError(f"{param} must hold at least one text", param=param,
                               code="invalid_value")
        if len(texts) > self.api.max_embedding_inputs:
            raise RequestError(f"{param} has {len(texts)} inputs; this node accepts at most "
                               f"{self.api.max_embedding_inputs} per request", param=param,
                               code="invalid_value")
        backend = self.pool.instances[0].backend
        counts = await asyncio.to_thread(lambda: [backend.count_tokens(t) for t in texts])
        limit = self.limit_tokens()
        for i, (text, count) in enumerate(zip(texts, counts, strict=True)):
            where = param if len(texts) == 1 else f"{param}.{i}"
            if not text or count == 0:
                raise RequestError(f"{where} is empty; every input needs some text",
                                   param=where, code="invalid_value")
            if count > limit:
                raise RequestError(f"{where} has {count} tokens; this node embeds at most "
                                   f"{limit} per input", param=where, code="prompt_too_long")
        instance = fill(self.pool.instances, 1)[0]
        result = await instance.embed(texts)
        if dimensions is not None and dimensions > result.vectors.shape[1]:
            raise RequestError(f"dimensions {dimensions} is more than this model's "
                               f"{result.vectors.shape[1]}", param="dimensions",
                               code="invalid_value")
        return EmbeddingResult(shorten(result.vectors, dimensions), result.total_tokens,
                               instance.source_id)
