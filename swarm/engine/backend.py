"""The `Backend` protocol every inference engine implements, and the records it speaks in."""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from swarm.engine.constraint import Constraint
from swarm.engine.embedding import Embeddings
from swarm.engine.tools import TOOLS_FEATURE, ToolCall, ToolUse, tool_constraint
from swarm.errors import RequestError

if TYPE_CHECKING:
    import threading  # the records and the protocol are pure; backends bring their threads

FinishReason = Literal["stop", "length", "cancelled"]


class ContextOverflowError(RequestError):
    """The prompt plus `max_tokens` does not fit the model's context window."""

    def __init__(self, message: str, *, param: str = "messages") -> None:
        super().__init__(message, param=param, code="context_length_exceeded")


def check_context(prompt_tokens: int, max_tokens: int, context_length: int) -> None:
    """Raise `ContextOverflowError` unless the prompt plus `max_tokens` fits the context."""
    if prompt_tokens + max_tokens > context_length:
        raise ContextOverflowError(
            f"prompt of {prompt_tokens} tokens plus max_tokens {max_tokens} "
            f"exceeds the context length {context_length}")


@dataclass(frozen=True)
class ChatMessage:
    """One chat turn as OpenAI sends it (content already flattened to text): an assistant turn
    may carry the `tool_calls` it made, a `tool` turn the `tool_call_id` it answers."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class SamplingParams:
    """OpenAI sampling parameters, with OpenAI's defaults (not any engine's)."""

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: bool = False  # report each token's bytes (its log-probability is always there)
    top_logprobs: int = 0  # and this many most likely alternatives at each step

    @property
    def greedy(self) -> bool:
        """True when sampling collapses to argmax (temperature 0)."""
        return self.temperature <= 0.0


@dataclass(frozen=True)
class GenerationRequest:
    """A prompt (chat messages, or raw text for /v1/completions), how to sample it, what a text
    answer must match (`constraint`, enforced while decoding) and the tools the model may call."""

    messages: tuple[ChatMessage, ...] = ()
    prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    constraint: Constraint | None = None
    tools: ToolUse | None = None

    def __post_init__(self) -> None:
        if (self.prompt is None) == (not self.messages):
            raise ValueError("a GenerationRequest needs exactly one of messages or prompt")
        if self.tools is not None and self.prompt is not None:
            raise ValueError("tools need chat messages, not a raw prompt")

    @property
    def needs(self) -> frozenset[str]:
        """The features a source must serve to answer this request (a peer lists its own in
        its heartbeat's capabilities)."""
        return frozenset({TOOLS_FEATURE}) if self.tools is not None else frozenset()

    @property
    def decode_constraint(self) -> Constraint | None:
        """What decoding enforces: the tool-call grammar when tools are offered (a text answer
        within it still matches `constraint`), else `constraint`."""
        if self.tools is None:
            return self.constraint
        return tool_constraint(self.tools, self.constraint)


@dataclass(frozen=True)
class TopLogprob:
    """One likely token at a step: its bytes and log-probability."""

    piece: bytes
    logprob: float


@dataclass(frozen=True)
class TokenEvent:
    """One generated token: its text delta (may be empty mid-UTF-8), id and log-probability (the
    model's own, before any constraint's mask); with `SamplingParams.logprobs` also its bytes,
    and the `top_logprobs` most likely tokens at that step."""

    text: str
    token_id: int
    logprob: float
    piece: bytes = b""
    top: tuple[TopLogprob, ...] = ()


@dataclass(frozen=True)
class StreamEnd:
    """The last event of a stream: why it ended and how many prompt tokens it used."""

    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Completion:
    """A finished generation with per-token log-probabilities."""

    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: FinishReason
    prompt_tokens: int
    pieces: tuple[bytes, ...] = ()  # each token's bytes, when logprobs were asked for
    top: tuple[tuple[TopLogprob, ...], ...] = ()  # each step's alternatives, when asked for

    @property
    def completion_tokens(self) -> int:
        """Number of generated tokens."""
        return len(self.token_ids)

    @property
    def mean_logprob(self) -> float:
        """Mean token log-probability; -inf for an empty completion."""
        return sum(self.logprobs) / len(self.logprobs) if self.logprobs else -math.inf


@runtime_checkable
class Backend(Protocol):
    """A loaded model. Its methods block: callers run them off the event loop, one at a time."""

    name: str
    model_id: str
    context_length: int

    def prompt_text(self, request: GenerationRequest) -> str:
        """The exact text fed to the model (chat template applied for chat requests)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` encodes to (no special tokens added)."""
        ...

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[TokenEvent]:
        """Yield tokens until EOS, `max_tokens` or `cancel`; EOS is not yielded.

        Raises `ContextOverflowError` before the first token when the prompt does not fit.
        Stop strings are the caller's job (see swarm.engine.decoding.StopMatcher).
        """
        ...

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """One pooled, unit-length vector per text (swarm/engine/embedding.py); ValueError for
        an empty text or one longer than the context."""
        ...

    def close(self) -> None:
        """Free the model's memory."""
        ...
