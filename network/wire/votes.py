"""Vote messages: asking a peer for one consensus candidate (`VoteRequest`), its answer
(`VoteReply`) and calling it off (`CancelRequest`); frozen dataclasses whose `from_wire` validates
(with the readers of network/wire/fields.py) and ignores unknown keys, and which convert to and from
the engine's own records."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from network.wire.fields import (
    FINISH_REASONS,
    MAX_COUNT,
    MAX_NAME_CHARS,
    MAX_STOP,
    MAX_TEXT_CHARS,
    MAX_TOKENS,
    MAX_TOOLS,
    MAX_TOP_LOGPROBS,
    MAX_TURNS,
    Fields,
    WireDecodeError,
    alternative,
    choice,
    flag,
    hex_bytes,
    ident,
    integer,
    number,
    optional,
    seq,
    text,
    tool_spec,
    tool_turn,
    turn,
)
from swarm.engine.backend import (
    ChatMessage,
    Completion,
    GenerationRequest,
    SamplingParams,
    TopLogprob,
)
from swarm.engine.constraint import Constraint, problem
from swarm.engine.tools import Tool, ToolCall, ToolUse, tool_constraint

TOOL_CHOICES = ("auto", "none", "required", "function")


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


@dataclass(frozen=True, kw_only=True)
class VoteRequest:
    """Ask a peer for one candidate: chat turns or a raw prompt (exactly one), and sampling;
    with tools, the tools and the tool part of the turns that have one (`tool_turns`)."""

    request_id: str
    messages: tuple[tuple[str, str], ...] = ()
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    constraint_kind: str | None = None  # "json_schema" or "regex": enforced while decoding
    constraint: str = ""
    logprobs: bool = False
    top_logprobs: int = 0
    tools: tuple[tuple[str, str, str], ...] = ()  # (name, description, parameters schema)
    tool_choice: str = "auto"
    tool_function: str | None = None  # the function tool_choice "function" names
    parallel_tool_calls: bool = True
    tool_turns: tuple[tuple[int, str, tuple[tuple[str, str, str], ...]], ...] = ()

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack/JSON types (tuples become arrays)."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: object) -> VoteRequest:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        f = Fields(data, "VoteRequest")
        request = cls(
            request_id=f.get("request_id", ident()),
            messages=f.get("messages", seq(turn, MAX_TURNS), ()),
            prompt=f.get("prompt", optional(text(MAX_TEXT_CHARS)), None),
            max_tokens=f.get("max_tokens", integer(1, MAX_TOKENS), 256),
            temperature=f.get("temperature", number(0.0, 2.0), 1.0),
            top_p=f.get("top_p", number(0.0, 1.0), 1.0),
            seed=f.get("seed", optional(integer(-(2**63), 2**64 - 1)), None),
            stop=f.get("stop", seq(text(MAX_NAME_CHARS), MAX_STOP), ()),
            constraint_kind=f.get("constraint_kind", optional(choice(("json_schema", "regex"))),
                                  None),
            constraint=f.get("constraint", text(MAX_TEXT_CHARS), ""),
            logprobs=f.get("logprobs", flag, False),
            top_logprobs=f.get("top_logprobs", integer(0, MAX_TOP_LOGPROBS), 0),
            tools=f.get("tools", seq(tool_spec, MAX_TOOLS), ()),
            tool_choice=f.get("tool_choice", choice(TOOL_CHOICES), "auto"),
            tool_function=f.get("tool_function", optional(text(MAX_NAME_CHARS)), None),
            parallel_tool_calls=f.get("parallel_tool_calls", flag, True),
            tool_turns=f.get("tool_turns", seq(tool_turn, MAX_TURNS), ()),
        )
        if (request.prompt is None) == (not request.messages):
            raise WireDecodeError("VoteRequest: needs exactly one of messages or prompt")
        if request.top_p <= 0.0:
            raise WireDecodeError("VoteRequest.top_p: must be above 0")
        constraint = request._constraint()
        if constraint is not None and (why := problem(constraint)):
            raise WireDecodeError(f"VoteRequest.constraint: cannot be enforced: "
                                  f"{why.splitlines()[0][:200]}")
        if any(i >= len(request.messages) for i, _, _ in request.tool_turns):
            raise WireDecodeError("VoteRequest.tool_turns: a turn index past the messages")
        use = request._tool_use()
        if use is not None:
            if request.prompt is not None:
                raise WireDecodeError("VoteRequest.tools: tools need chat messages")
            if use.choice == "function" and not use.callable():
                raise WireDecodeError("VoteRequest.tool_function: not one of the tools")
            if not all(isinstance(_json_or_none(t.parameters), dict) for t in use.tools):
                raise WireDecodeError("VoteRequest.tools: parameters must be a JSON object")
            try:
                why = problem(tool_constraint(use, constraint))
            except ValueError as exc:  # a schema that is not JSON, or a regex beside tools
                why = str(exc)
            if why:
                raise WireDecodeError(f"VoteRequest.tools: cannot be enforced: "
                                      f"{why.splitlines()[0][:200]}")
        return request

    def _tool_use(self) -> ToolUse | None:
        if not self.tools:
            return None
        return ToolUse(tuple(Tool(n, d, p) for n, d, p in self.tools),
                       self.tool_choice, self.tool_function,  # type: ignore[arg-type]
                       self.parallel_tool_calls)

    def _constraint(self) -> Constraint | None:
        if self.constraint_kind is None:
            return None
        return Constraint(self.constraint_kind, self.constraint)  # type: ignore[arg-type]

    @classmethod
    def from_generation(cls, request_id: str, request: GenerationRequest) -> VoteRequest:
        """The vote a node sends to a peer for one local `GenerationRequest`."""
        p = request.params
        c = request.constraint
        use = request.tools
        return cls(request_id=request_id,
                   messages=tuple((m.role, m.content) for m in request.messages),
                   prompt=request.prompt, max_tokens=p.max_tokens, temperature=p.temperature,
                   top_p=p.top_p, seed=p.seed, stop=p.stop,
                   constraint_kind=c.kind if c is not None else None,
                   constraint=c.source if c is not None else "", logprobs=p.logprobs,
                   top_logprobs=p.top_logprobs,
                   tools=tuple((t.name, t.description, t.parameters) for t in use.tools)
                   if use is not None else (),
                   tool_choice=use.choice if use is not None else "auto",
                   tool_function=use.function if use is not None else None,
                   parallel_tool_calls=use.parallel if use is not None else True,
                   tool_turns=tuple((i, m.tool_call_id or "",
                                     tuple((t.id, t.name, t.arguments) for t in m.tool_calls))
                                    for i, m in enumerate(request.messages)
                                    if m.tool_calls or m.tool_call_id is not None))

    def to_generation(self) -> GenerationRequest:
        """The `GenerationRequest` a peer runs for this vote."""
        extra = {i: (call_id, calls) for i, call_id, calls in self.tool_turns}
        messages = []
        for i, (role, content) in enumerate(self.messages):
            call_id, calls = extra.get(i, ("", ()))
            messages.append(ChatMessage(role, content, tuple(ToolCall(*c) for c in calls),
                                        call_id or None))
        return GenerationRequest(
            messages=tuple(messages),
            prompt=self.prompt,
            params=SamplingParams(max_tokens=self.max_tokens, temperature=self.temperature,
                                  top_p=self.top_p, seed=self.seed, stop=self.stop,
                                  logprobs=self.logprobs, top_logprobs=self.top_logprobs),
            constraint=self._constraint(), tools=self._tool_use())


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
    pieces: tuple[str, ...] = ()  # each token's bytes as hex, when logprobs were asked for
    top: tuple[tuple[tuple[str, float], ...], ...] = ()  # each step's (hex bytes, logprob)

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack/JSON types (tuples become arrays)."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: object) -> VoteReply:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        f = Fields(data, "VoteReply")
        return cls(
            request_id=f.get("request_id", ident()), text=f.get("text", text(MAX_TEXT_CHARS)),
            logprobs=f.get("logprobs", seq(number(-1e9, 1.0), MAX_TOKENS)),
            finish_reason=f.get("finish_reason", choice(FINISH_REASONS)),
            prompt_tokens=f.get("prompt_tokens", integer(0, MAX_COUNT)),
            completion_tokens=f.get("completion_tokens", integer(0, MAX_TOKENS)),
            latency_s=f.get("latency_s", number(0.0, 1e6)), node_id=f.get("node_id", ident()),
            pieces=f.get("pieces", seq(hex_bytes, MAX_TOKENS), ()),
            top=f.get("top", seq(seq(alternative, MAX_TOP_LOGPROBS), MAX_TOKENS), ()),
        )

    @classmethod
    def from_completion(cls, request_id: str, completion: Completion, *, latency_s: float,
                        node_id: str) -> VoteReply:
        """The reply a peer sends for one finished local `Completion`."""
        return cls(request_id=request_id, text=completion.text, logprobs=completion.logprobs,
                   finish_reason=completion.finish_reason, prompt_tokens=completion.prompt_tokens,
                   completion_tokens=completion.completion_tokens, latency_s=latency_s,
                   node_id=node_id, pieces=tuple(p.hex() for p in completion.pieces),
                   top=tuple(tuple((t.piece.hex(), t.logprob) for t in step)
                             for step in completion.top))

    def to_completion(self) -> Completion:
        """The reply as a local `Completion`; token ids are not sent, so they read as -1."""
        return Completion(text=self.text, token_ids=(-1,) * self.completion_tokens,
                          logprobs=self.logprobs, prompt_tokens=self.prompt_tokens,
                          finish_reason=self.finish_reason,  # type: ignore[arg-type]
                          pieces=tuple(bytes.fromhex(p) for p in self.pieces),
                          top=tuple(tuple(TopLogprob(bytes.fromhex(h), lp) for h, lp in step)
                                    for step in self.top))


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
        return cls(request_id=Fields(data, "CancelRequest").get("request_id", ident()))
