"""The one source chooser: where a request goes, for route mode and consensus alike.

Pure: it reads each source's `Ranked` half (swarm/engine/source.py) once per call and returns
sources; no clock, no randomness, no I/O. Every ordering here is the same idea, least busy first,
then fastest, then the smallest id (digits compared as numbers: local/2 before local/10), so the
result never depends on the order the sources come in.

- `honour_plan`: the sources a request may use: this node's own, and the peers the coordinator's
  plan picks (every live peer while there is no plan).
- `spread`: n consensus candidates, every source once before any twice, spread over machines.
- `fill`: n generations for one node's instances, each placed as if the ones before it ran; raises
  `PoolBusyError` (429) unless all n fit now, so a request is refused whole, never half started.
- `route`: the peer to forward a whole request to, or None to serve it here.
- `fallback`: where to retry a candidate whose peer failed.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

from swarm.engine.source import Ranked
from swarm.errors import PoolBusyError

S = TypeVar("S", bound=Ranked)
L = TypeVar("L", bound=Ranked)
R = TypeVar("R", bound=Ranked)

_DIGITS = re.compile(r"(\d+)")


def id_key(source_id: str) -> tuple[tuple[int, str], ...]:
    """A sort key for ids that compares runs of digits as numbers ("local/2" < "local/10")."""
    return tuple((int(part), part) if part.isdigit() else (-1, part)
                 for part in _DIGITS.split(source_id))


def _order(source: Ranked, extra: float = 0.0) -> tuple[float, float, tuple[tuple[int, str], ...]]:
    """Least busy (plus `extra` work already placed on it), then fastest, then smallest id."""
    return (source.load() + extra, -source.score, id_key(source.source_id))


def honour_plan(sources: Sequence[S], members: Sequence[str] | None, here: str) -> list[S]:
    """The sources a request may use: those of node `here` always; a peer's only when the
    coordinator's plan (`members`, node ids) picks it; every peer when there is no plan (None)."""
    if members is None:
        return list(sources)
    picked = set(members)
    return [s for s in sources if s.node_id == here or s.node_id in picked]


def spread(sources: Sequence[S], n: int) -> list[S]:
    """Exactly `n` sources (empty if there are none), each used once before any is used twice.

    Order: least busy first, then spread over machines (every machine's k-th source before any
    machine's k+1-th), then fastest, then id.
    """
    by_node: dict[str, list[S]] = {}
    for source in sources:
        by_node.setdefault(source.node_id, []).append(source)
    keyed = []
    for same_node in by_node.values():
        for position, source in enumerate(sorted(same_node, key=_order)):
            load, speed, ident = _order(source)
            keyed.append(((load, position, speed, ident), source))
    keyed.sort(key=lambda item: item[0])
    order = [source for _key, source in keyed]
    return [order[i % len(order)] for i in range(n)] if order else []


def fill(sources: Sequence[S], n: int) -> list[S]:
    """`n` placements over `sources`, each on the least busy one counting those placed before it
    (ties: fastest, then id); `PoolBusyError` unless all `n` fit their `capacity` now."""
    placed = [0] * len(sources)
    chosen: list[S] = []
    for _ in range(n):
        fits = [i for i, s in enumerate(sources)
                if (room := s.capacity()) is None or placed[i] < room]
        if not fits:
            over = [placed[i] - (s.capacity() or 0) + 1 for i, s in enumerate(sources)]
            raise PoolBusyError(retry_after_s=max(1, min(over, default=1)))
        best = min(fits, key=lambda i: _order(sources[i], placed[i]))
        placed[best] += 1
        chosen.append(sources[best])
    return chosen


def route(local: Sequence[Ranked], remote: Sequence[R],
          pending: Mapping[str, int] | None = None) -> R | None:
    """The peer to forward a whole request to, or None to serve it here: an idle local instance
    always wins; else the peer strictly less busy than the least busy local instance.

    A peer's busyness is its last report plus `pending[node_id]`, the requests already sent to
    it and still running, so a burst spreads over peers instead of piling on one.
    """
    here = min((s.load() for s in local), default=0.0)
    if here == 0 or not remote:
        return None
    extra = pending or {}
    best = min(remote, key=lambda r: _order(r, extra.get(r.node_id, 0)))
    return best if best.load() + extra.get(best.node_id, 0) < here else None


def fallback(local: Sequence[L], remote: Sequence[R], failed_node: str) -> L | R | None:
    """Where to retry a candidate whose peer `failed_node` failed: the least busy local instance
    with room, else the best other peer, else None."""
    try:
        return fill(local, 1)[0]
    except PoolBusyError:
        pass
    others = spread([r for r in remote if r.node_id != failed_node], 1)
    return others[0] if others else None
