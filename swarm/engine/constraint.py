"""Structured output enforced while decoding: a grammar from `response_format` or a regex, turned
into a token mask at every step by llguidance (the one module that imports it).

Both engines sample in our own code from raw logits, so one mask library serves both: before each
pick the tokens the grammar forbids get -inf, and end-of-sequence is allowed only once the text is
complete. llguidance was chosen over xgrammar and lm-format-enforcer: a 3 MB wheel with no
dependencies (xgrammar requires torch, transformers and triton; lm-format-enforcer is pure Python
at about 0.25 ms a token and imports a module transformers 5 removed), about 13 us a token here,
tokenizers built from llama.cpp's vocabulary or a Hugging Face tokenizer, JSON Schema, regex and
Lark grammars, and it is what llama.cpp, vLLM and SGLang use.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from swarm.errors import RequestError

log = logging.getLogger(__name__)

# The JSON a constrained model writes: json.dumps' default separators, no other whitespace, so a
# model can never loop on newlines between tokens.
JSON_STYLE = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_OBJECT: dict[str, Any] = {"type": "object"}


class ConstraintError(RequestError):
    """A constraint that llguidance cannot follow within its resource limits (a schema or regex
    too complex for a token mask): the client's request, so a 400."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="response_format", code="invalid_value")


@dataclass(frozen=True)
class Constraint:
    """What the whole output must match: a JSON Schema (`source` is the schema as JSON text), a
    regular expression that must match somewhere in it (`re.search`'s meaning), or tool calls
    (`source` is the Lark grammar of swarm/engine/tools.py)."""

    kind: Literal["json_schema", "regex", "tool_calls"]
    source: str

    def grammar(self) -> str:
        """The llguidance grammar for this constraint."""
        from llguidance import LLMatcher

        if self.kind == "tool_calls":
            return LLMatcher.grammar_from_lark(self.source)
        if self.kind == "json_schema":
            return LLMatcher.grammar_from_json_schema(
                self.source, defaults=dict(JSON_STYLE))  # type: ignore[arg-type]  # a TypedDict
        return LLMatcher.grammar_from_regex(_search_pattern(self.source))


def _search_pattern(pattern: str) -> str:
    """A whole-text pattern that holds when `pattern` matches somewhere (leading ^ / trailing $
    anchor it to the start / end instead of allowing text around it)."""
    head = pattern[1:] if pattern.startswith("^") else None
    body = head if head is not None else pattern
    tail = body.endswith("$") and not body.endswith("\\$")
    body = body[:-1] if tail else body
    return f"{'' if head is not None else '(?s:.)*'}(?:{body}){'' if tail else '(?s:.)*'}"


def problem(constraint: Constraint) -> str:
    """Why llguidance cannot enforce `constraint` ("" when it can)."""
    from llguidance import LLMatcher

    try:
        return LLMatcher.validate_grammar(constraint.grammar())
    except ValueError as exc:
        return str(exc)


def json_constraint(schema: Mapping[str, Any] | None) -> Constraint:
    """The constraint for a JSON Schema (None: any JSON object); ValueError if it cannot be
    enforced."""
    constraint = Constraint("json_schema", json.dumps(schema or ANY_OBJECT, sort_keys=True))
    why = problem(constraint)
    if why:
        raise ValueError(f"the JSON schema cannot be enforced while decoding: {why.splitlines()[0]}")
    return constraint


def regex_constraint(pattern: str) -> Constraint | None:
    """The constraint for a regex, or None (checked after generation only) when it uses what a
    token mask cannot follow: look-around, \\b, back-references."""
    re.compile(pattern)  # a Python syntax error is the caller's ValueError (re.error)
    constraint = Constraint("regex", pattern)
    why = problem(constraint)
    if why:
        log.info("regex %r is checked after generation only: %s", pattern, why.splitlines()[0])
        return None
    return constraint


CLOSING = frozenset(b'"]}')  # the bytes that end a JSON string, array or object
CLOSING_MARGIN = 6  # tokens kept in hand, beyond one per open string/array/object


@dataclass(frozen=True)
class Closers:
    """Per token of a vocabulary: made only of `"]}` and starting with `"` (`quoted`), or made
    only of `]}` (`bare`)."""

    quoted: np.ndarray
    bare: np.ndarray

    @classmethod
    def of(cls, pieces: list[bytes]) -> Closers:
        """Classify every token's bytes."""
        closing = [bool(p) and CLOSING.issuperset(p) for p in pieces]
        return cls(np.array([c and p[0] == 0x22 for c, p in zip(closing, pieces, strict=True)]),
                   np.array([c and 0x22 not in p for c, p in zip(closing, pieces, strict=True)]))


class JsonDepth:
    """How many JSON strings, arrays and objects are open in the text so far (a lexical scan)."""

    def __init__(self) -> None:
        self.depth = 0
        self.in_string = False
        self.escaped = False

    def feed(self, data: bytes) -> None:
        """Scan more of the text."""
        for byte in data:
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif byte == 0x5C:  # backslash
                    self.escaped = True
                elif byte == 0x22:  # quote
                    self.in_string = False
                    self.depth -= 1
            elif byte == 0x22:
                self.in_string = True
                self.depth += 1
            elif byte in b"[{":
                self.depth += 1
            elif byte in b"]}":
                self.depth -= 1


class Guide:
    """One generation's grammar state: masks logits before each pick, follows each token.

    JSON must end within `max_tokens`: once the tokens left come down to one per open string,
    array or object plus `margin`, the mask narrows to closing tokens (made only of `"`, `]` and
    `}`; inside a string, starting with its closing quote; outside, without a quote if the
    grammar allows one) wherever the grammar allows any, so open values close instead of running
    out; and at the top level, where the grammar allows the end and fewer tokens are left than a
    new value needs (`restart` to open it, plus `margin`), only the end (no new tool call that
    could not finish). For tool calls (`gate`: the opener) the JSON scan starts only once the answer opens
    with a call; a text answer is left alone."""

    def __init__(self, matcher: Any, vocab_size: int, closers: Closers | None,
                 piece: Callable[[int], bytes], *, margin: int = CLOSING_MARGIN,
                 gate: bytes = b"", eos: tuple[int, ...] = (), restart: int = 0,
                 end: bytes = b"") -> None:
        self._matcher = matcher
        self._bits = np.zeros((vocab_size + 31) // 32, dtype=np.int32)
        self._closers = closers
        self._piece = piece
        self._json = JsonDepth() if closers is not None else None
        self._margin = margin
        self._gate = gate
        self._head = b""  # the answer's first bytes, until the gate is passed or failed
        self._eos = np.array(eos, dtype=np.int64)
        self._restart = restart  # tokens a new value takes before its own JSON opens
        self._end = end  # what ends one value (a tool call), when the answer may hold several
        self._value = bytearray()  # the open value, as written
        self._values: set[bytes] = set()
        self._repeated = False

    def allowed(self, size: int, tokens_left: int) -> np.ndarray:
        """A bool array over `size` logits: True where the grammar allows the token now."""
        self._matcher.unsafe_compute_mask_ptr(self._bits.ctypes.data, self._bits.nbytes)
        if self._matcher.is_error():
            raise ConstraintError(f"cannot enforce the constraint: {self._matcher.get_error()}")
        bits = np.unpackbits(self._bits.view(np.uint8), bitorder="little")
        allowed = np.zeros(size, dtype=bool)
        n = min(size, bits.size)
        allowed[:n] = bits[:n].astype(bool)
        scan, closers = self._json, self._closers
        if scan is None or closers is None or scan.escaped or self._gate:
            return allowed
        if (scan.depth == 0 and self._eos.size
                and tokens_left <= self._margin + self._restart):
            ending = np.zeros(size, dtype=bool)
            ends = self._eos[self._eos < n]
            ending[ends] = allowed[ends]
            if ending.any():
                return ending
        if tokens_left > scan.depth + self._margin:
            return allowed
        for kind in ((closers.quoted,) if scan.in_string else (closers.bare, closers.quoted)):
            closing = np.zeros(size, dtype=bool)
            closing[:n] = allowed[:n] & kind[:n]
            if closing.any():
                return closing
        return allowed

    def advance(self, token: int) -> None:
        """Follow a sampled token; ConstraintError if the grammar cannot (its limits ran out)."""
        if not self._matcher.consume_token(token):
            raise ConstraintError(f"cannot enforce the constraint: {self._matcher.get_error()}")
        if self._json is None:
            return
        data = self._piece(token)
        if self._gate:
            self._head += data
            if not self._gate.startswith(self._head[:len(self._gate)]):
                self._json = None  # a text answer: nothing to close
                return
            if len(self._head) < len(self._gate):
                return
            data, self._gate = self._head, b""
        self._json.feed(data)
        if self._end:
            self._value += data
            if self._json.depth == 0 and self._value.endswith(self._end):
                value = bytes(self._value).lstrip(b"\n")
                self._repeated = value in self._values
                self._values.add(value)
                self._value.clear()

    @property
    def finished(self) -> bool:
        """True once the grammar admits no further token (only the end of the sequence), or
        once a tool call repeated an earlier one exactly: a small model that starts looping on
        its call does not stop by itself (the reader drops the repeat, toolcalls.py)."""
        return self._repeated or bool(self._matcher.is_stopped())

class Guides:
    """Makes `Guide`s for one backend and reads its tokens' bytes; the llguidance tokenizer
    (about 1 s to build from the vocabulary) is built on first use and kept."""

    def __init__(self, build_tokenizer: Callable[[], Any]) -> None:
        self._build = build_tokenizer
        self._tokenizer: Any = None
        self._closers: Closers | None = None

    def closers(self) -> Closers:
        """The closing tokens of this vocabulary (classified once)."""
        if self._closers is None:
            decode = self.tokenizer.decode_bytes
            self._closers = Closers.of([bytes(decode([t]))
                                        for t in range(self.tokenizer.vocab_size)])
        return self._closers

    @property
    def tokenizer(self) -> Any:
        """The llguidance tokenizer of this backend's vocabulary."""
        if self._tokenizer is None:
            self._tokenizer = self._build()
        return self._tokenizer

    def piece(self, token: int) -> bytes:
        """The bytes of one token (part of a UTF-8 character, possibly)."""
        return bytes(self.tokenizer.decode_bytes([token]))

    def start(self, constraint: Constraint) -> Guide:
        """A fresh guide for one generation under `constraint`."""
        from llguidance import LLMatcher

        matcher = LLMatcher(self.tokenizer, constraint.grammar(), log_level=0)
        if matcher.is_error():
            raise ConstraintError(f"cannot enforce the constraint: {matcher.get_error()}")
        if constraint.kind == "regex":
            return Guide(matcher, self.tokenizer.vocab_size, None, self.piece)
        if constraint.kind == "json_schema":
            return Guide(matcher, self.tokenizer.vocab_size, self.closers(), self.piece)
        from swarm.engine.tools import CLOSER, HEAD, MIDDLE, NAME_TOKENS, OPENER, SEPARATOR, TAIL

        # A call's JSON closes, then its frame must still be written: keep tokens for it; and
        # a new call first writes its frame's head and a name.
        frame = len(self.tokenizer.tokenize_str(TAIL + CLOSER))
        head = len(self.tokenizer.tokenize_str(SEPARATOR + OPENER + HEAD + MIDDLE))
        return Guide(matcher, self.tokenizer.vocab_size, self.closers(), self.piece,
                     margin=CLOSING_MARGIN + frame, gate=OPENER.encode(),
                     eos=tuple(self.tokenizer.eos_tokens), restart=head + NAME_TOKENS,
                     end=(TAIL + CLOSER).encode())
