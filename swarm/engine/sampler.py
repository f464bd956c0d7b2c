"""The decode loop both engines share: OpenAI sampling over raw logits, the constraint's mask,
log-probabilities and their top alternatives, end of sequence, cancellation.

An engine supplies the logits after the prompt and a function that feeds one token and returns
the next logits (a float32 row); everything else here is the same for llama.cpp and transformers,
so a seed means the same draw on both.
"""
from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from swarm.engine.backend import GenerationRequest, SamplingParams, TokenEvent, TopLogprob
from swarm.engine.constraint import Guides
from swarm.engine.decoding import IncrementalDetokenizer


class Sampler:
    """Picks tokens with OpenAI's semantics (temperature 0 is argmax; top_p nucleus; a seeded,
    reproducible draw) and reports the model's own log-probability of each."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        seed = params.seed if params.seed is not None else secrets.randbits(63)
        self._rng = np.random.default_rng(seed)

    def pick(self, logits: np.ndarray, allowed: np.ndarray | None = None) -> tuple[int, float]:
        """(token, its log-probability under the unmasked model) from one row of logits;
        `allowed` (bool per token) masks what may be picked."""
        peak = float(logits.max())
        log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float32).sum()))
        masked = logits if allowed is None else np.where(allowed, logits, np.float32(-np.inf))
        params = self.params
        if params.greedy:
            token = int(np.argmax(masked))
        else:
            scaled = (masked - masked.max()) / np.float32(params.temperature)
            probs = np.exp(scaled)
            if params.top_p < 1.0:
                probs = self._nucleus(probs / probs.sum(), params.top_p)
            cumulative = np.cumsum(probs, dtype=np.float64)
            draw = self._rng.random() * cumulative[-1]
            token = min(int(np.searchsorted(cumulative, draw, side="right")), len(probs) - 1)
        return token, float(logits[token]) - log_total

    @staticmethod
    def _nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
        """Keep the most likely tokens whose mass reaches `top_p` (at least one)."""
        order = np.argsort(-probs, kind="stable")
        ranked = probs[order]
        keep = np.cumsum(ranked) - ranked < top_p
        keep[0] = True
        kept = np.zeros_like(probs)
        kept[order[keep]] = ranked[keep]
        return kept


def top_alternatives(logits: np.ndarray, count: int,
                     piece: Callable[[int], bytes]) -> tuple[TopLogprob, ...]:
    """The `count` most likely tokens of one step, most likely first, with log-probabilities."""
    peak = float(logits.max())
    log_total = peak + float(np.log(np.exp(logits - peak, dtype=np.float32).sum()))
    count = min(count, logits.size)
    best = np.argpartition(-logits, count - 1)[:count]
    best = best[np.argsort(-logits[best], kind="stable")]
    return tuple(TopLogprob(piece(int(t)), float(logits[t]) - log_total) for t in best)


def generate(request: GenerationRequest, cancel: threading.Event, *, first: np.ndarray,
             feed: Callable[[int], np.ndarray], eos: frozenset[int] | set[int],
             decode: Callable[[list[int]], str], guides: Guides) -> Iterator[TokenEvent]:
    """Yield tokens from the logits after the prompt (`first`) until EOS, `max_tokens`, `cancel`
    or the end of the request's constraint; `feed(token)` returns the logits after a token. Text
    the last token left held back comes last, in an event without a token (id -1)."""
    params = request.params
    sampler = Sampler(params)
    constraint = request.decode_constraint
    guide = guides.start(constraint) if constraint is not None else None
    detok = IncrementalDetokenizer(decode)
    logits: Any = first
    for step in range(params.max_tokens):
        if cancel.is_set():
            return
        left = params.max_tokens - step
        allowed = guide.allowed(logits.size, left) if guide is not None else None
        token, logprob = sampler.pick(logits, allowed)
        if token in eos:
            break
        if guide is not None:
            guide.advance(token)
        piece = guides.piece(token) if params.logprobs else b""
        top = (top_alternatives(logits, params.top_logprobs, guides.piece)
               if params.top_logprobs else ())
        yield TokenEvent(detok.push(token), token, logprob, piece, top)
        if guide is not None and guide.finished:
            break
        if step + 1 < params.max_tokens:
            logits = feed(token)
    tail = detok.flush()  # a trailing U+FFFD the last token left held back
    if tail:
        yield TokenEvent(tail, -1, 0.0)
