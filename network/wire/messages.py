"""Federation wire messages: frozen dataclasses; `from_wire` validates, ignores unknown keys."""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol, Self, TypeGuard, TypeVar, get_args

from swarm.engine.backend import ChatMessage, Completion, FinishReason, GenerationRequest, SamplingParams
from swarm.errors import PeerError

MAX_ID_CHARS = 64
MAX_NAME_CHARS = 256
MAX_NONCE_CHARS = 128
MAX_TEXT_CHARS = 1 << 19
MAX_TURNS = 256
MAX_STOP = 16
MAX_CAPABILITIES = 64
MAX_TOKENS = 1 << 16
MAX_COUNT = 2**31 - 1
MAX_TERM = 2**63 - 1
MAX_PRIORITY = 1000  # coordinator priority: -1000..1000, or None (never coordinator)
FINISH_REASONS: tuple[str, ...] = get_args(FinishReason)
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", re.ASCII)

T = TypeVar("T")
Check = Callable[[object, str], T]


class WireDecodeError(PeerError, ValueError):
    """Peer data that is not a valid message: bad bytes or type, too big, missing or bad field."""


class WireMessage(Protocol):
    """What the codec needs from a message class."""

    def to_wire(self) -> dict[str, Any]: ...

    @classmethod
    def from_wire(cls, data: object) -> Self: ...


def is_identifier(value: object) -> TypeGuard[str]:
    """True for a node, boot or request id: 1 to 64 ASCII letters, digits and `._:-`."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def _text(max_chars: int) -> Check[str]:
    def check(value: object, where: str) -> str:
        if not isinstance(value, str):
            raise WireDecodeError(f"{where}: expected a string, got {type(value).__name__}")
        if len(value) > max_chars:
            raise WireDecodeError(f"{where}: longer than {max_chars} characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise WireDecodeError(f"{where}: not valid Unicode text") from exc
        return value
    return check


def _ident(*, allow_empty: bool = False) -> Check[str]:
    def check(value: object, where: str) -> str:
        if allow_empty and value == "":
            return ""
        if not is_identifier(value):
            raise WireDecodeError(f"{where}: expected an identifier ({ID_PATTERN.pattern})")
        return value  # type: ignore[return-value]
    return check


def _int(lo: int, hi: int) -> Check[int]:
    def check(value: object, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise WireDecodeError(f"{where}: expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise WireDecodeError(f"{where}: {value} is outside [{lo}, {hi}]")
        return value
    return check


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise WireDecodeError(f"{where}: expected true or false, got {type(value).__name__}")
    return value


def _num(lo: float, hi: float) -> Check[float]:
    def check(value: object, where: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise WireDecodeError(f"{where}: expected a number, got {type(value).__name__}")
        number = float(value)
        if not math.isfinite(number) or not lo <= number <= hi:
            raise WireDecodeError(f"{where}: {value!r} is outside [{lo}, {hi}]")
        return number
    return check


def _choice(allowed: tuple[str, ...]) -> Check[str]:
    def check(value: object, where: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise WireDecodeError(f"{where}: expected one of {', '.join(allowed)}")
        return value
    return check


def _optional(inner: Check[T]) -> Check[T | None]:
    def check(value: object, where: str) -> T | None:
        return None if value is None else inner(value, where)
    return check


def _seq(inner: Check[T], max_items: int) -> Check[tuple[T, ...]]:
    def check(value: object, where: str) -> tuple[T, ...]:
        if not isinstance(value, list | tuple):
            raise WireDecodeError(f"{where}: expected a list, got {type(value).__name__}")
        if len(value) > max_items:
            raise WireDecodeError(f"{where}: more than {max_items} items")
        return tuple(inner(item, f"{where}[{i}]") for i, item in enumerate(value))
    return check


def _turn(value: object, where: str) -> tuple[str, str]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise WireDecodeError(f"{where}: expected a [role, content] pair")
    return _text(32)(value[0], f"{where}.role"), _text(MAX_TEXT_CHARS)(value[1], f"{where}.content")


_REQUIRED: Any = object()
_NO_PRIORITY: int | None = 0  # an absent Heartbeat.priority (typed for `_Fields.get`)


class _Fields:
    """Reads checked fields from one decoded map; absent keys take the default or fail."""

    def __init__(self, data: object, kind: str) -> None:
        if not isinstance(data, dict):
            raise WireDecodeError(f"{kind}: expected a map, got {type(data).__name__}")
        self._data = data
        self._kind = kind

    def get(self, key: str, check: Check[T], default: T = _REQUIRED) -> T:
        if key not in self._data:
            if default is _REQUIRED:
                raise WireDecodeError(f"{self._kind}.{key}: missing")
            return default
        return check(self._data[key], f"{self._kind}.{key}")


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """A node's answer to `/v1/federation/health`: identity, load, capacity and election view."""

    node_id: str
    boot_id: str
    protocol: int
    api_port: int
    swarm: str = ""
    model_id: str = ""
    instances: int = 0
    load: float = 0.0
    queue_depth: int = 0
    capabilities: tuple[str, ...] = ()
    bench_score: float = 0.0
    ram_gb: float = 0.0
    vram_gb: float = 0.0
    term: int = 0
    coordinator: str | None = None
    priority: int | None = 0  # the election's configured priority; None: never coordinator
    solo: bool = False  # it leads only itself: a role taken with no peer in view (election.py)
    nonce: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack/JSON types (tuples become arrays)."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: object) -> Heartbeat:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        f = _Fields(data, "Heartbeat")
        return cls(
            node_id=f.get("node_id", _ident()), boot_id=f.get("boot_id", _ident()),
            protocol=f.get("protocol", _int(0, 65535)), api_port=f.get("api_port", _int(1, 65535)),
            swarm=f.get("swarm", _ident(allow_empty=True), ""),
            model_id=f.get("model_id", _text(MAX_NAME_CHARS), ""),
            instances=f.get("instances", _int(0, 4096), 0), load=f.get("load", _num(0.0, 1.0), 0.0),
            queue_depth=f.get("queue_depth", _int(0, MAX_COUNT), 0),
            capabilities=f.get("capabilities", _seq(_text(MAX_ID_CHARS), MAX_CAPABILITIES), ()),
            bench_score=f.get("bench_score", _num(0.0, 1e12), 0.0),
            ram_gb=f.get("ram_gb", _num(0.0, 1e6), 0.0),
            vram_gb=f.get("vram_gb", _num(0.0, 1e6), 0.0),
            term=f.get("term", _int(0, MAX_TERM), 0),
            coordinator=f.get("coordinator", _optional(_ident()), None),
            priority=f.get("priority", _optional(_int(-MAX_PRIORITY, MAX_PRIORITY)), _NO_PRIORITY),
            solo=f.get("solo", _flag, False),
            nonce=f.get("nonce", _optional(_text(MAX_NONCE_CHARS)), None),
        )


@dataclass(frozen=True, kw_only=True)
class VoteRequest:
    """Ask a peer for one candidate: chat turns or a raw prompt (exactly one), and sampling."""

    request_id: str
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack/JSON types (tuples become arrays)."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: object) -> VoteRequest:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        f = _Fields(data, "VoteRequest")
        request = cls(
            request_id=f.get("request_id", _ident()),
            messages=f.get("messages", _seq(_turn, MAX_TURNS), ()),
            prompt=f.get("prompt", _optional(_text(MAX_TEXT_CHARS)), None),
            max_tokens=f.get("max_tokens", _int(1, MAX_TOKENS), 256),
            temperature=f.get("temperature", _num(0.0, 2.0), 1.0),
            top_p=f.get("top_p", _num(0.0, 1.0), 1.0),
            seed=f.get("seed", _optional(_int(-(2**63), 2**64 - 1)), None),
            stop=f.get("stop", _seq(_text(MAX_NAME_CHARS), MAX_STOP), ()),
        )
        if (request.prompt is None) == (not request.messages):
            raise WireDecodeError("VoteRequest: needs exactly one of messages or prompt")
        if request.top_p <= 0.0:
            raise WireDecodeError("VoteRequest.top_p: must be above 0")
        return request

    @classmethod
    def from_generation(cls, request_id: str, request: GenerationRequest) -> VoteRequest:
        """The vote a node sends to a peer for one local `GenerationRequest`."""
        p = request.params
        return cls(request_id=request_id,
                   messages=tuple((m.role, m.content) for m in request.messages),
                   prompt=request.prompt, max_tokens=p.max_tokens, temperature=p.temperature,
                   top_p=p.top_p, seed=p.seed, stop=p.stop)

    def to_generation(self) -> GenerationRequest:
        """The `GenerationRequest` a peer runs for this vote."""
        return GenerationRequest(
            messages=tuple(ChatMessage(role, content) for role, content in self.messages),
            prompt=self.prompt,
            params=SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature,
                                  top_p=self.top_p, seed=self.seed, stop=self.stop))


@dataclass(frozen=True, kw_only=True)
class VoteReply:
    """One candidate generated by a peer, with what the consensus strategies score."""

    request_id: str
    text: str
    logprobs: tuple[float, ...]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    node_id: str

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack/JSON types (tuples become arrays)."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: object) -> VoteReply:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        f = _Fields(data, "VoteReply")
        return cls(
            request_id=f.get("request_id", _ident()), text=f.get("text", _text(MAX_TEXT_CHARS)),
            logprobs=f.get("logprobs", _seq(_num(-1e9, 1.0), MAX_TOKENS)),
            finish_reason=f.get("finish_reason", _choice(FINISH_REASONS)),
            prompt_tokens=f.get("prompt_tokens", _int(0, MAX_COUNT)),
            completion_tokens=f.get("completion_tokens", _int(0, MAX_TOKENS)),
            latency_s=f.get("latency_s", _num(0.0, 1e6)), node_id=f.get("node_id", _ident()),
        )

    @classmethod
    def from_completion(cls, request_id: str, completion: Completion, *, latency_s: float,
                        node_id: str) -> VoteReply:
        """The reply a peer sends for one finished local `Completion`."""
        return cls(request_id=request_id, text=completion.text, logprobs=completion.logprobs,
                   finish_reason=completion.finish_reason, prompt_tokens=completion.prompt_tokens,
                   completion_tokens=completion.completion_tokens, latency_s=latency_s,
                   node_id=node_id)

    def to_completion(self) -> Completion:
        """The reply as a local `Completion`; token ids are not sent, so they read as -1."""
        return Completion(text=self.text, token_ids=(-1,) * self.completion_tokens,
                          logprobs=self.logprobs, prompt_tokens=self.prompt_tokens,
                          finish_reason=self.finish_reason)  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class CancelRequest:
    """Stop generating the candidate for `request_id` (a no-op when it already finished)."""

    request_id: str

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack/JSON types (tuples become arrays)."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: object) -> CancelRequest:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        return cls(request_id=_Fields(data, "CancelRequest").get("request_id", _ident()))
