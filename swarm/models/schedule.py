"""Which piece each source fetches next, and how fast: the pure core of a download.

`PieceSchedule` hands out the pieces of a model to sources (peers) one at a time, takes them back
when a source fails (another source gets them first) and bans a source that sent a piece whose
hash is wrong. `TokenBucket` caps a download's rate. Both take `now` as an argument and touch no
clock, socket or event loop.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Piece = tuple[int, int]  # (file index, piece index)


@dataclass
class PieceSchedule:
    """The pieces still to fetch (`pending`, in file order), those in flight and who has them."""

    pending: list[Piece]
    sizes: dict[Piece, int]
    in_flight: dict[Piece, str] = field(default_factory=dict)
    done: set[Piece] = field(default_factory=set)
    banned: dict[str, str] = field(default_factory=dict)  # source -> why

    @classmethod
    def of(cls, sizes: dict[Piece, int], done: Iterable[Piece] = ()) -> PieceSchedule:
        """A schedule for pieces of the given sizes, `done` ones (a resumed download) skipped."""
        finished = set(done) & set(sizes)
        return cls(sorted(p for p in sizes if p not in finished), dict(sizes), done=finished)

    @property
    def complete(self) -> bool:
        """Every piece has arrived and checked out."""
        return len(self.done) == len(self.sizes)

    @property
    def done_bytes(self) -> int:
        return sum(self.sizes[p] for p in self.done)

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())

    def take(self, source: str) -> Piece | None:
        """The next piece for `source` (None when it is banned or nothing is left to hand out)."""
        if source in self.banned or not self.pending:
            return None
        piece = self.pending.pop(0)
        self.in_flight[piece] = source
        return piece

    def finish(self, piece: Piece) -> None:
        """`piece` arrived and its hash checked out."""
        self.in_flight.pop(piece, None)
        self.done.add(piece)

    def give_back(self, piece: Piece) -> None:
        """Its source failed (gone, timed out, refused): the piece goes first in line again."""
        if self.in_flight.pop(piece, None) is not None and piece not in self.done:
            self.pending.insert(0, piece)

    def ban(self, source: str, why: str) -> None:
        """`source` sent bytes that do not match the manifest: it gets no more pieces."""
        self.banned.setdefault(source, why)

    def stalled(self, sources: Iterable[str]) -> bool:
        """True when pieces are left but none of `sources` may take them and none are in flight."""
        usable = [s for s in sources if s not in self.banned]
        return not self.complete and not self.in_flight and (not usable or not self.pending)


@dataclass
class TokenBucket:
    """A rate cap of `rate` bytes per second with bursts up to `burst` bytes (rate 0: no cap)."""

    rate: float
    burst: float
    tokens: float = 0.0
    last: float | None = None

    def wait(self, now: float, nbytes: int) -> float:
        """Spend `nbytes` at time `now`; the seconds to wait before using them (0 when in budget)."""
        if self.rate <= 0:
            return 0.0
        if self.last is None:
            self.tokens = self.burst
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= nbytes
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate
