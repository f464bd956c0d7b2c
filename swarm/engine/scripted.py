"""A scripted `Backend` for tests and benches: canned answers, fixed latencies, optional failure."""
from __future__ import annotations

import logging
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from swarm.engine.backend import GenerationRequest, TokenEvent
from swarm.engine.embedding import Embeddings, normalize
from swarm.errors import EngineError

log = logging.getLogger(__name__)

_WORDS = re.compile(r"\s*\S+\s*$|\s*\S+")


class ScriptedError(EngineError):
    """The failure a `ScriptedBackend` raises when told to fail."""


def split_tokens(text: str, per: str = "word") -> list[str]:
    """Token texts that join back to `text`: words with their leading space, or chars."""
    if per == "char":
        return list(text)
    if per != "word":
        raise ValueError(f"per must be 'word' or 'char', not {per!r}")
    return _WORDS.findall(text) if text.strip() else ([text] if text else [])


class ScriptedBackend:
    """Streams canned answers token by token with fixed latencies; honours `cancel` at once.

    `answers` is a list used in turn (call i gets answers[i % len]) or a callable of the request.
    Before token k it waits `token_latency_s` (plus `first_token_latency_s` before token 0), so an
    answer of T tokens takes first_token_latency_s + T * token_latency_s. Every token of answer i
    has log-probability `logprob` (or `logprob[i]` when a list aligned with `answers`). `fail`
    raises ScriptedError (or the given exception) where token `fail_after_tokens` would have come.
    """

    name = "scripted"

    def __init__(
        self,
        answers: Sequence[str] | Callable[[GenerationRequest], str] = ("Paris",),
        *,
        token_latency_s: float = 0.0,
        first_token_latency_s: float = 0.0,
        fail: bool | BaseException = False,
        fail_after_tokens: int = 0,
        logprob: float | Sequence[float] = -0.1,
        model_id: str = "scripted",
        context_length: int = 2048,
        per: str = "word",
    ) -> None:
        if not callable(answers) and not answers:
            raise ValueError("a ScriptedBackend needs at least one answer")
        if not isinstance(logprob, int | float) and (callable(answers)
                                                     or len(logprob) != len(answers)):
            raise ValueError("a list of logprobs must align with a list of answers")
        split_tokens("", per)  # validates `per`
        self.answers = answers
        self.token_latency_s = token_latency_s
        self.first_token_latency_s = first_token_latency_s
        self.fail = fail
        self.fail_after_tokens = fail_after_tokens
        self.logprob = logprob
        self.model_id = model_id
        self.context_length = context_length
        self.per = per
        self.requests: list[GenerationRequest] = []
        self.cancelled = 0
        self.finished = 0
        self.closed = False
        self._lock = threading.Lock()

    def prompt_text(self, request: GenerationRequest) -> str:
        """The raw prompt, or the chat messages as "role: content" lines."""
        if request.prompt is not None:
            return request.prompt
        return "\n".join(f"{m.role}: {m.content}" for m in request.messages)

    def count_tokens(self, text: str) -> int:
        """Whitespace-separated words."""
        return len(text.split())

    def _script(self, request: GenerationRequest) -> tuple[str, float]:
        with self._lock:
            call = len(self.requests)
            self.requests.append(request)
        if callable(self.answers):
            return self.answers(request), float(self.logprob)  # type: ignore[arg-type]
        index = call % len(self.answers)
        logprob = self.logprob if isinstance(self.logprob, (int, float)) else self.logprob[index]
        return self.answers[index], float(logprob)

    def _failure(self) -> BaseException:
        return self.fail if isinstance(self.fail, BaseException) else ScriptedError(
            f"{self.model_id}: scripted failure")

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[TokenEvent]:
        """Yield the next answer's tokens (at most `max_tokens`); stop once `cancel` is set."""
        text, logprob = self._script(request)
        tokens = split_tokens(text, self.per)[: request.params.max_tokens]
        for k, token in enumerate(tokens):
            delay = self.token_latency_s + (self.first_token_latency_s if k == 0 else 0.0)
            if cancel.wait(delay) if delay > 0 else cancel.is_set():
                self._count("cancelled")
                return
            if self.fail and k == self.fail_after_tokens:
                raise self._failure()
            piece = token.encode() if request.params.logprobs else b""
            yield TokenEvent(token, zlib.crc32(token.encode()) & 0x7FFFFFFF, logprob, piece)
        if self.fail and self.fail_after_tokens >= len(tokens):
            raise self._failure()
        self._count("finished")

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """A unit vector of 8 per text, drawn from a generator seeded by the text (the same text,
        the same vector); tokens are words. Fails like `stream` when told to fail."""
        if self.fail:
            raise self._failure()
        if any(not t.split() for t in texts):
            raise ValueError("cannot embed an input of no tokens")
        rows = [normalize(np.random.default_rng(zlib.crc32(t.encode())).standard_normal(8))
                for t in texts]
        return Embeddings(np.array(rows, dtype=np.float32).reshape(len(texts), 8),
                          tuple(self.count_tokens(t) for t in texts))

    def _count(self, what: str) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def close(self) -> None:
        """Mark the backend closed (there is nothing to free)."""
        self.closed = True
