"""The records of a model download: who holds the model (`Holder`), where a download stands
(`FetchProgress`, what the progress bar shows), the state of one run (`Download`), and which pieces
cover a byte range (`covering`, for fetching only some blocks)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from swarm.models.manifest import Manifest
from swarm.models.partial import PartialModel
from swarm.models.schedule import Piece, PieceSchedule


@dataclass(frozen=True)
class Holder:
    """A peer that holds the model: its node id (for signing) and API address."""

    node_id: str
    address: str
    port: int


@dataclass(frozen=True)
class FetchProgress:
    """Where a download stands: bytes checked so far, of the total, at a rate, and from whom."""

    name: str
    done_bytes: int
    total_bytes: int
    rate_bytes_s: float
    peers: tuple[str, ...]

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far (None before any bytes came)."""
        if self.rate_bytes_s <= 0:
            return None
        return (self.total_bytes - self.done_bytes) / self.rate_bytes_s


@dataclass
class Download:
    """One download under way: its files, the piece schedule, who failed and when it last saved."""

    manifest: Manifest
    files: PartialModel
    schedule: PieceSchedule
    started: float
    start_bytes: int
    cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    gone: dict[str, str] = field(default_factory=dict)  # holder -> last failure
    saving: asyncio.Lock = field(default_factory=asyncio.Lock)  # one progress write at a time
    saved: float = float("-inf")
    reported: int = 0


def covering(manifest: Manifest, index: int, ranges: list[tuple[int, int]]) -> set[Piece]:
    """The pieces of file `index` that overlap any of the byte ranges [start, end)."""
    step = manifest.piece_bytes
    return {(index, p) for start, end in ranges if end > start
            for p in range(start // step, (end - 1) // step + 1)}
