"""Embeddings on llama.cpp: a second context on the instance's own weights (no second copy),
with embeddings on and llama.cpp's pooling off, so it hands over every token's final hidden
state and embedding.py pools them as it does for transformers.

The context is made on the first request and grown (to the next power of two, up to the model's
context) when a longer input comes; inputs are packed several to a decode, each its own sequence,
and the context's memory is cleared after each decode.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from swarm.engine.embedding import Embeddings, batches, pool
from swarm.errors import EngineError

log = logging.getLogger(__name__)

MIN_CONTEXT = 512
MAX_SEQUENCES = 64  # inputs in one decode
UBATCH = 512  # tokens computed at once (bounds the attention buffer, whatever the context)


class LlamaEmbedder:
    """Pooled embeddings from a loaded llama.cpp model (`model`: its `llama_model` pointer)."""

    def __init__(self, lib: Any, model: Any, *, threads: int, context_length: int) -> None:
        self._lib = lib
        self._model = model
        self._threads = threads
        self._limit = context_length
        self._n_embd = int(lib.llama_model_n_embd(model))
        self._ctx: Any = None
        self._size = 0

    def _context(self, tokens: int) -> Any:
        """A context of at least `tokens` tokens (made or grown now)."""
        if self._ctx is not None and self._size >= tokens:
            return self._ctx
        size = min(max(MIN_CONTEXT, 1 << (tokens - 1).bit_length()), self._limit)
        self.close()
        lib = self._lib
        params = lib.llama_context_default_params()
        params.n_ctx = size
        params.n_batch = size
        params.n_ubatch = min(UBATCH, size)
        params.n_seq_max = MAX_SEQUENCES
        params.n_threads = params.n_threads_batch = self._threads
        params.embeddings = True
        params.pooling_type = lib.LLAMA_POOLING_TYPE_NONE
        params.kv_unified = True
        ctx = lib.llama_init_from_model(self._model, params)
        if not ctx:
            raise EngineError(f"llama.cpp could not make an embeddings context of {size} tokens")
        log.info("llama.cpp embeddings context: %d tokens", size)
        self._ctx, self._size = ctx, size
        return ctx

    def embed(self, ids: Sequence[Sequence[int]]) -> Embeddings:
        """One unit vector per tokenised input."""
        lengths = [len(t) for t in ids]
        if any(n == 0 for n in lengths):
            raise ValueError("cannot embed an input of no tokens")
        if max(lengths, default=0) > self._limit:
            raise ValueError(f"an input of {max(lengths)} tokens exceeds the context "
                             f"{self._limit}")
        ctx = self._context(max(lengths, default=1))
        vectors = np.zeros((len(ids), self._n_embd), dtype=np.float32)
        for group in batches(lengths, self._size, MAX_SEQUENCES):
            for i, states in zip(group, self._decode(ctx, [ids[i] for i in group]), strict=True):
                vectors[i] = pool(states)
        return Embeddings(vectors, tuple(lengths))

    def _decode(self, ctx: Any, group: list[Sequence[int]]) -> list[np.ndarray]:
        """Every token's hidden state, per input, from one decode of `group`."""
        lib = self._lib
        total = sum(len(t) for t in group)
        batch = lib.llama_batch_init(total, 0, 1)
        try:
            k = 0
            for seq, tokens in enumerate(group):
                for pos, token in enumerate(tokens):
                    batch.token[k] = token
                    batch.pos[k] = pos
                    batch.n_seq_id[k] = 1
                    batch.seq_id[k][0] = seq
                    batch.logits[k] = True
                    k += 1
            batch.n_tokens = total
            status = lib.llama_decode(ctx, batch)
            if status != 0:
                raise EngineError(f"llama.cpp could not embed a batch (llama_decode: {status})")
            ptr = lib.llama_get_embeddings(ctx)
            states = np.ctypeslib.as_array(ptr, shape=(total, self._n_embd)).copy()
        finally:
            lib.llama_batch_free(batch)
            lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        out, start = [], 0
        for tokens in group:
            out.append(states[start:start + len(tokens)])
            start += len(tokens)
        return out

    def close(self) -> None:
        """Free the embeddings context (the weights belong to the instance)."""
        if self._ctx is not None:
            self._lib.llama_free(self._ctx)
            self._ctx, self._size = None, 0
