"""Engine-independent decoding helpers: stop strings and incremental detokenisation."""
from __future__ import annotations

from collections.abc import Callable, Sequence


class StopMatcher:
    """Cuts a text stream at the first stop string, holding back only a tail that may begin one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._pending = ""
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Add a delta; return the text now safe to emit. Sets `stopped` once a stop string shows."""
        if self.stopped:
            return ""
        if not self._stops:
            return delta
        self._pending += delta
        # The stop that completes first wins (as if streamed one character at a time), so the
        # result never depends on how the text was split into deltas.
        found = [(i + len(s), -len(s)) for s in self._stops if (i := self._pending.find(s)) >= 0]
        if found:
            end, neg_len = min(found)
            cut = end + neg_len
            self.stopped = True
            out, self._pending = self._pending[:cut], ""
            return out
        keep = self._partial_stop_length()
        out = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return out

    def _partial_stop_length(self) -> int:
        """Length of the longest tail of the pending text that begins some stop string."""
        for size in range(min(self._hold, len(self._pending)), 0, -1):
            tail = self._pending[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0

    def flush(self) -> str:
        """Return whatever is held back once the stream has ended without a stop."""
        out, self._pending = ("" if self.stopped else self._pending), ""
        return out


class IncrementalDetokenizer:
    """Turns token ids into text deltas without splitting multi-byte characters.

    A text ending in U+FFFD is held back: it is an incomplete UTF-8 sequence that the next token
    may finish, or a real U+FFFD (or undecodable bytes) that it follows. The next delta or
    `flush`, at the end of the stream, gives it: the deltas joined are always the whole decode.
    """

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self._decode = decode
        self._ids: list[int] = []
        self._emitted = 0
        self._prefix_start = 0

    def push(self, token_id: int) -> str:
        """Add one token and return the newly completed text (maybe empty)."""
        self._ids.append(token_id)
        text = self._decode(self._ids[self._prefix_start :])
        if text.endswith("\ufffd"):
            return ""  # an incomplete UTF-8 sequence; wait for the next token
        delta = text[self._emitted :]
        # Re-decoding a short window keeps this O(1) per token instead of O(n).
        if len(self._ids) - self._prefix_start > 8:
            self._prefix_start = len(self._ids) - 4
            self._emitted = len(self._decode(self._ids[self._prefix_start :]))
        else:
            self._emitted = len(text)
        return delta

    def flush(self) -> str:
        """The text still held back once the stream has ended (a trailing U+FFFD), or ""."""
        return self._decode(self._ids[self._prefix_start :])[self._emitted :]
