"""Embeddings from the serving model: how token states become one vector, and how inputs are
packed into batches. Both engines hand over the final hidden state of every token (after the
model's last norm; llama.cpp with pooling off, transformers' `last_hidden_state`) and pool here,
so a text gets the same vector from either engine, up to their arithmetic.

Pooling is the position-weighted mean (SGPT, Muennighoff 2022): token i of n counts i times. In
a causal model token i has seen only tokens 1..i, so later tokens summarise more of the text; the
plain mean gives the first tokens, which have seen almost nothing, as much say as the last, and
the last token alone encodes the whole text only in models trained to put it there (E5-Mistral
and the like), else mostly the next-word guess. On the embedded SmolLM2-135M (a chat model, not
trained for embeddings) the three differ by less than the noise of bench/embeddings.py's 16
(anchor, paraphrase, unrelated) triplets: each pooling put all 16 paraphrases closer than the
unrelated sentence, and found the paraphrase as the nearest of all 47 other sentences 12 (this
pooling), 12 (mean) and 13 (last token) times of 16; the weighted mean is kept as the one the
literature finds best for causal models not trained for embeddings. Vectors are L2-normalised,
so a dot product is the cosine; `dimensions` keeps the first d components and normalises again.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EMBEDDINGS_FEATURE = "embeddings"  # what a node that serves /v1/embeddings lists in its heartbeat
POOLING = "position-weighted mean of the last hidden states"


@dataclass(frozen=True)
class Embeddings:
    """One unit-length float32 vector per input (rows of `vectors`) and each input's tokens."""

    vectors: np.ndarray
    tokens: tuple[int, ...]

    @property
    def total_tokens(self) -> int:
        """Tokens over all inputs."""
        return sum(self.tokens)


def pool(hidden: np.ndarray) -> np.ndarray:
    """One unit vector from the hidden states of a text's tokens (rows, first token first)."""
    states = np.asarray(hidden, dtype=np.float32)
    if states.shape[0] == 0:
        raise ValueError("cannot embed an input of no tokens")
    weights = np.arange(1, states.shape[0] + 1, dtype=np.float32)
    return normalize(weights @ states / weights.sum())


def normalize(vector: np.ndarray) -> np.ndarray:
    """`vector` scaled to unit length (a zero vector stays zero)."""
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


def shorten(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The first `dimensions` components of each row, normalised again (None: unchanged)."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    cut = vectors[:, :dimensions]
    norms = np.linalg.norm(cut, axis=1, keepdims=True)
    return (cut / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def batches(lengths: Sequence[int], max_tokens: int, max_inputs: int) -> list[list[int]]:
    """Input indices grouped into batches of at most `max_inputs` inputs whose longest input
    times their count is at most `max_tokens` (what a padded batch holds); inputs of similar
    length go together (longest first), and one longer than `max_tokens` gets a batch alone."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    longest = 0
    for i in order:
        group = groups[-1] if groups else None
        if group is not None and len(group) < max_inputs and \
                max(longest, lengths[i]) * (len(group) + 1) <= max_tokens:
            group.append(i)
            longest = max(longest, lengths[i])
        else:
            groups.append([i])
            longest = lengths[i]
    return groups
