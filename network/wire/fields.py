"""The checks every wire message is decoded with: limits, identifiers, typed field readers.

Each reader takes the decoded value and where it sits ("Heartbeat.load") and returns it typed, or
raises `WireDecodeError` naming the place. `ID_PATTERN` is the one definition of a node, boot or
request id: the config, the TXT record, the peer table and the approval list all check ids with
`is_identifier`.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Protocol, Self, TypeGuard, TypeVar, get_args

from swarm.engine.backend import FinishReason
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
MAX_TOP_LOGPROBS = 20  # alternatives per token (OpenAI's own limit)
MAX_TOOLS = 128  # tools per request, and tool calls per turn (OpenAI's own limit on tools)
MAX_PIECE_HEX = 64  # one token's bytes as hex (32 bytes)
MAX_BEAT_BYTES = 1200  # one pushed heartbeat datagram: fits one Ethernet frame, never fragments
MAX_REVISION_CHARS = 32  # a plan revision (hex digits)
MAX_SUSPECTS = 16  # peers one heartbeat names as suspected or just dead
FINISH_REASONS: tuple[str, ...] = get_args(FinishReason)
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}", re.ASCII)
# A heartbeat's nonce (the `?nonce=` of a probe, echoed and signed over): URL-safe characters.
NONCE_PATTERN = re.compile(rf"[A-Za-z0-9._~:-]{{1,{MAX_NONCE_CHARS}}}", re.ASCII)

T = TypeVar("T")
Check = Callable[[object, str], T]


class WireDecodeError(PeerError, ValueError):
    """Peer data that is not a valid message: bad bytes or type, too big, missing or bad field."""


class WireMessage(Protocol):
    """What the codec needs from a message class."""

    def to_wire(self) -> dict[str, Any]: ...

    @classmethod
    def from_wire(cls, data: object) -> Self: ...


def is_unicode(value: str) -> bool:
    """True when `value` encodes to UTF-8 (no lone surrogates, which JSON and msgpack can carry)."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def is_identifier(value: object) -> TypeGuard[str]:
    """True for a node, boot or request id: 1 to 64 ASCII letters, digits and `._:-`."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def text(max_chars: int) -> Check[str]:
    """A string of at most `max_chars` characters, valid Unicode."""
    def check(value: object, where: str) -> str:
        if not isinstance(value, str):
            raise WireDecodeError(f"{where}: expected a string, got {type(value).__name__}")
        if len(value) > max_chars:
            raise WireDecodeError(f"{where}: longer than {max_chars} characters")
        if not is_unicode(value):
            raise WireDecodeError(f"{where}: not valid Unicode text")
        return value
    return check


def ident(*, allow_empty: bool = False) -> Check[str]:
    """An identifier (`is_identifier`), or "" when `allow_empty`."""
    def check(value: object, where: str) -> str:
        if allow_empty and value == "":
            return ""
        if not is_identifier(value):
            raise WireDecodeError(f"{where}: expected an identifier ({ID_PATTERN.pattern})")
        return value
    return check


def integer(lo: int, hi: int) -> Check[int]:
    """An integer (not a bool) in [lo, hi]."""
    def check(value: object, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise WireDecodeError(f"{where}: expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise WireDecodeError(f"{where}: {value} is outside [{lo}, {hi}]")
        return value
    return check


def number(lo: float, hi: float) -> Check[float]:
    """A finite number (not a bool) in [lo, hi], as a float."""
    def check(value: object, where: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise WireDecodeError(f"{where}: expected a number, got {type(value).__name__}")
        as_float = float(value)
        if not math.isfinite(as_float) or not lo <= as_float <= hi:
            raise WireDecodeError(f"{where}: {value!r} is outside [{lo}, {hi}]")
        return as_float
    return check


def flag(value: object, where: str) -> bool:
    """true or false (not a number)."""
    if not isinstance(value, bool):
        raise WireDecodeError(f"{where}: expected true or false, got {type(value).__name__}")
    return value


def choice(allowed: tuple[str, ...]) -> Check[str]:
    """One of the strings `allowed`."""
    def check(value: object, where: str) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise WireDecodeError(f"{where}: expected one of {', '.join(allowed)}")
        return value
    return check


def optional(inner: Check[T]) -> Check[T | None]:
    """None, or what `inner` accepts."""
    def check(value: object, where: str) -> T | None:
        return None if value is None else inner(value, where)
    return check


def seq(inner: Check[T], max_items: int) -> Check[tuple[T, ...]]:
    """A list of at most `max_items` items, each checked by `inner`, as a tuple."""
    def check(value: object, where: str) -> tuple[T, ...]:
        if not isinstance(value, list | tuple):
            raise WireDecodeError(f"{where}: expected a list, got {type(value).__name__}")
        if len(value) > max_items:
            raise WireDecodeError(f"{where}: more than {max_items} items")
        return tuple(inner(item, f"{where}[{i}]") for i, item in enumerate(value))
    return check


def turn(value: object, where: str) -> tuple[str, str]:
    """One chat turn: a [role, content] pair."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise WireDecodeError(f"{where}: expected a [role, content] pair")
    return text(32)(value[0], f"{where}.role"), text(MAX_TEXT_CHARS)(value[1], f"{where}.content")


def tool_spec(value: object, where: str) -> tuple[str, str, str]:
    """One tool: a [name, description, parameters as JSON Schema text] triple."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise WireDecodeError(f"{where}: expected a [name, description, parameters] triple")
    return (text(MAX_NAME_CHARS)(value[0], f"{where}[0]"),
            text(MAX_TEXT_CHARS)(value[1], f"{where}[1]"),
            text(MAX_TEXT_CHARS)(value[2], f"{where}[2]"))


def tool_call(value: object, where: str) -> tuple[str, str, str]:
    """One tool call: an [id, function name, arguments as JSON text] triple."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise WireDecodeError(f"{where}: expected an [id, name, arguments] triple")
    return (text(MAX_NAME_CHARS)(value[0], f"{where}[0]"),
            text(MAX_NAME_CHARS)(value[1], f"{where}[1]"),
            text(MAX_TEXT_CHARS)(value[2], f"{where}[2]"))


def tool_turn(value: object, where: str) -> tuple[int, str, tuple[tuple[str, str, str], ...]]:
    """The tool part of one chat turn: [turn index, the tool call id it answers ("" if none),
    the calls it made as [id, name, arguments] triples]."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise WireDecodeError(f"{where}: expected a [turn, tool_call_id, calls] triple")
    return (integer(0, MAX_TURNS - 1)(value[0], f"{where}[0]"),
            text(MAX_NAME_CHARS)(value[1], f"{where}[1]"),
            seq(tool_call, MAX_TOOLS)(value[2], f"{where}[2]"))


def hex_bytes(value: object, where: str) -> str:
    """One token's bytes as hex digits."""
    digits = text(MAX_PIECE_HEX)(value, where)
    try:
        bytes.fromhex(digits)
    except ValueError:
        raise WireDecodeError(f"{where}: expected hex digits") from None
    return digits


def alternative(value: object, where: str) -> tuple[str, float]:
    """One likely token at a step: a [hex bytes, logprob] pair."""
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise WireDecodeError(f"{where}: expected a [hex bytes, logprob] pair")
    return hex_bytes(value[0], f"{where}[0]"), number(-1e9, 1.0)(value[1], f"{where}[1]")


REQUIRED: Any = object()


class Fields:
    """Reads checked fields from one decoded map; absent keys take the default or fail."""

    def __init__(self, data: object, kind: str) -> None:
        if not isinstance(data, dict):
            raise WireDecodeError(f"{kind}: expected a map, got {type(data).__name__}")
        self._data = data
        self._kind = kind

    def get(self, key: str, check: Check[T], default: T = REQUIRED) -> T:
        """The checked value of `key`, `default` when absent (required without one)."""
        if key not in self._data:
            if default is REQUIRED:
                raise WireDecodeError(f"{self._kind}.{key}: missing")
            return default
        return check(self._data[key], f"{self._kind}.{key}")
