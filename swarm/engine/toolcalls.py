"""Reading an answer written under the tool-call grammar (tools.py), whole or as it streams: its
text, or its calls with ids, names and arguments.

The grammar fixes the frame of every call, so reading needs no JSON parser: an answer that opens
with `OPENER` is calls; a call's name ends at `MIDDLE` and its arguments at `TAIL + CLOSER`
(no newline can occur inside JSON written without whitespace, so that marker cannot occur inside
the arguments). Anything else is text. Arguments stream out as they come, holding back only what
may be the start of the end marker, as OpenAI streams a call's `function.arguments`.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from swarm.engine.tools import CLOSER, HEAD, MIDDLE, OPENER, SEPARATOR, TAIL, ToolCall

_END = TAIL + CLOSER
_NEXT = SEPARATOR + OPENER


def call_id() -> str:
    """A fresh id for a call, in OpenAI's shape (`call_…`)."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolEvent:
    """One piece of a streamed answer: "text" (content in `text`), "call" (call `index` begins:
    its function's name in `text`, its `call_id`), or "arguments" (more of call `index`'s
    arguments in `text`)."""

    kind: Literal["text", "call", "arguments"]
    text: str = ""
    index: int = 0
    call_id: str = ""


class ToolCallReader:
    """Feeds on an answer's text deltas and says what they are; `calls` holds every call begun
    so far (the last one's arguments partial until `complete`).

    A call that repeats an earlier one exactly (same function, same arguments) is dropped: a
    small model tends to loop on its first call, and the decode loop stops at such a repeat
    (constraint.Guide). While a call could still turn out to be one, its events are held back."""

    def __init__(self, new_id: Callable[[], str] = call_id) -> None:
        self._new_id = new_id
        self._mode: Literal["start", "text", "head", "arguments", "between"] = "start"
        self._pending = ""
        self._names: list[str] = []
        self._ids: list[str] = []
        self._arguments: list[list[str]] = []
        self._written: set[str] = set()  # every complete call, as written
        self._raw = ""  # the open call as written so far
        self._held: list[ToolEvent] = []
        self.complete = True  # False while a call is open

    @property
    def calls(self) -> list[ToolCall]:
        """The calls read so far."""
        return [ToolCall(i, n, "".join(a))
                for i, n, a in zip(self._ids, self._names, self._arguments, strict=True)]

    @property
    def is_calls(self) -> bool:
        """True once the answer is known to be calls."""
        return self._mode not in ("start", "text")

    def feed(self, delta: str) -> list[ToolEvent]:
        """Read more of the answer; returns what it now says."""
        if self._mode == "text":
            return [ToolEvent("text", delta)] if delta else []
        self._pending += delta
        events: list[ToolEvent] = []
        while self._step(events):
            pass
        return events

    def close(self) -> list[ToolEvent]:
        """The answer ended: what was held back (text that looked like the start of a call, or
        the tail of unfinished arguments)."""
        pending, self._pending = self._pending, ""
        if self._mode in ("start", "text"):
            self._mode = "text"
            return [ToolEvent("text", pending)] if pending else []
        events: list[ToolEvent] = []
        if self._mode == "arguments" and pending:
            self._arguments[-1].append(pending)
            self._emit(events, ToolEvent("arguments", pending, len(self._names) - 1), pending)
        held, self._held = self._held, []
        return held + events

    def _emit(self, events: list[ToolEvent], event: ToolEvent, raw: str) -> None:
        """Pass on an event of the open call, or hold it while the call may be a repeat."""
        self._raw += raw
        if self._held or any(w.startswith(self._raw) for w in self._written):
            self._held.append(event)
            if not any(w.startswith(self._raw) for w in self._written):
                events.extend(self._held)
                self._held = []
        else:
            events.append(event)

    def _end_call(self, events: list[ToolEvent]) -> None:
        """The open call is complete: keep it, or drop it when it repeats an earlier one."""
        raw = self._raw + TAIL + CLOSER
        if raw in self._written:
            for calls in (self._names, self._ids, self._arguments):
                calls.pop()
        else:
            events.extend(self._held)
            self._written.add(raw)
        self._held, self._raw, self.complete = [], "", True

    def _step(self, events: list[ToolEvent]) -> bool:
        """Consume what can be decided now; True when another step may consume more."""
        pending = self._pending
        if self._mode == "start":
            if pending.startswith(OPENER):
                self._pending, self._mode, self._raw = pending[len(OPENER):], "head", OPENER
                return True
            if not OPENER.startswith(pending):
                self._mode, self._pending = "text", ""
                events.append(ToolEvent("text", pending))
            return False
        if self._mode == "head":
            end = pending.find(MIDDLE)
            if not pending.startswith(HEAD[:len(pending)]) or end < 0:
                return False
            self._names.append(pending[len(HEAD):end])
            self._ids.append(self._new_id())
            self._arguments.append([])
            self.complete = False
            self._pending, self._mode = pending[end + len(MIDDLE):], "arguments"
            self._emit(events, ToolEvent("call", self._names[-1], len(self._names) - 1,
                                         self._ids[-1]), pending[:end + len(MIDDLE)])
            return True
        if self._mode == "arguments":
            end = pending.find(_END)
            cut = end if end >= 0 else _safe_cut(pending, _END)
            if cut:
                self._arguments[-1].append(pending[:cut])
                self._emit(events, ToolEvent("arguments", pending[:cut], len(self._names) - 1),
                           pending[:cut])
            if end < 0:
                self._pending = pending[cut:]
                return False
            self._pending, self._mode = pending[end + len(_END):], "between"
            self._end_call(events)
            return True
        # between calls: the next one, or the end
        if pending.startswith(_NEXT):
            self._pending, self._mode, self._raw = pending[len(_NEXT):], "head", OPENER
            return True
        return False


def _safe_cut(text: str, marker: str) -> int:
    """How much of `text` can go out: all but a tail that may be the start of `marker`."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return len(text) - size
    return len(text)


def read_answer(text: str, new_id: Callable[[], str] = call_id) -> tuple[str | None,
                                                                         list[ToolCall], bool]:
    """A whole answer as (content, calls, complete): content None when it is calls; complete
    False when the last call's arguments were cut off."""
    reader = ToolCallReader(new_id)
    reader.feed(text)
    reader.close()
    if not reader.is_calls:
        return text, [], True
    return None, reader.calls, reader.complete
