"""The span planner: which contiguous transformer blocks each node serves. Pure: no I/O, no clock.

A node of speed `s` (block-steps per second) serving `n` blocks adds `s / n` tokens per second to
each of its blocks, so its span is a brick of fixed area `s` and width at most its memory allows.
The swarm's throughput is the lowest stack of bricks over any block (petals' `block_selection.py`
calls it the weakest span and puts each new server there). The planner maximises that bottleneck,
and beyond it the whole profile from the bottom up (leximin), so uncovered blocks come first,
replicas go where the stack is thinnest, and a plan only moves blocks when that buys throughput:

1. start from the previous plan (clipped to each node's current memory), or from nothing; when
   no node joined and that plan still covers every block, keep it as it is: a node leaving then
   restarts no span server, so generations running through the others (and through replicas of
   the lost node's blocks) go on; the throughput is rebalanced at the next join;
2. re-place one node at a time where the profile gains most, ties broken by fewest newly loaded
   blocks, then the lowest start (so the same inputs always give the same plan);
3. also plan from scratch, widest nodes first, and keep it only when its bottleneck beats the
   re-placed previous plan by more than `MOVE_GAIN`.

The search itself (scoring, single and pair moves, fresh starts) is placement.py's.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from network.coordination.placement import (
    Placement,
    block_profile,
    fresh_starts,
    moved_blocks,
    polish,
    profile_key,
)

MOVE_GAIN = 0.05  # a fresh plan must raise the bottleneck by 5 % to be worth moving blocks


@dataclass(frozen=True)
class SpanNode:
    """What the planner knows of a node: its speed and how many blocks fit its memory budget."""

    node_id: str
    throughput: float  # block-steps per second, from the node's benchmark (relative is enough)
    max_blocks: int  # blocks that fit the node's memory budget (0: it serves none)


@dataclass(frozen=True)
class Span:
    """Blocks [start, end) served by one node."""

    node_id: str
    start: int
    end: int

    @property
    def length(self) -> int:
        """How many blocks."""
        return self.end - self.start


@dataclass(frozen=True)
class SpanLayout:
    """A plan: one span per serving node, what is left uncovered, and its throughputs."""

    num_blocks: int
    spans: tuple[Span, ...]
    gaps: tuple[tuple[int, int], ...]  # uncovered [start, end) ranges
    bottleneck: float  # tokens per second of the weakest block (0 with a gap)
    moved_blocks: int  # blocks nodes must newly load compared with the previous plan

    def replicas(self, block: int) -> int:
        """How many nodes serve `block`."""
        return sum(1 for s in self.spans if s.start <= block < s.end)

    def span_of(self, node_id: str) -> Span | None:
        """The span `node_id` serves, if any."""
        return next((s for s in self.spans if s.node_id == node_id), None)


def _clip(span: Span | None, node: SpanNode, num_blocks: int) -> Placement:
    if span is None or node.throughput <= 0:
        return (0, 0)
    start = max(0, min(span.start, num_blocks))
    end = max(start, min(span.end, num_blocks, start + node.max_blocks))
    return (start, end - start)


def plan_spans(num_blocks: int, nodes: Iterable[SpanNode],
               previous: Mapping[str, Span] | None = None) -> SpanLayout:
    """Plan spans of `num_blocks` blocks over `nodes`, moving as little as possible from
    `previous` (node id -> its span in the last plan). Deterministic: nodes are sorted by id."""
    given = sorted(nodes, key=lambda n: n.node_id)
    fastest = max((n.throughput for n in given), default=0.0) or 1.0
    ordered = [SpanNode(n.node_id, n.throughput / fastest, n.max_blocks) for n in given]
    old = previous or {}
    prior = [_clip(old.get(n.node_id), n, num_blocks) for n in ordered]
    prev_or_none: list[Placement | None] = [p if p[1] else None for p in prior]
    joined = any(n.node_id not in old and n.throughput > 0 and n.max_blocks > 0 for n in ordered)
    if old and not joined and min(block_profile(num_blocks, ordered, prior), default=0) > 0:
        profile = block_profile(num_blocks, ordered, prior)
        return _layout(num_blocks, ordered, prior, [v * fastest for v in profile], prev_or_none)
    kept = polish(num_blocks, ordered, list(prior), prev_or_none)
    fresh = max((polish(num_blocks, ordered, start, prev_or_none)
                 for start in fresh_starts(num_blocks, ordered, prev_or_none)),
                key=lambda p: profile_key(block_profile(num_blocks, ordered, p)))
    kept_profile = block_profile(num_blocks, ordered, kept)
    fresh_profile = block_profile(num_blocks, ordered, fresh)
    kept_key, fresh_key = profile_key(kept_profile), profile_key(fresh_profile)
    if fresh_key > kept_key and (kept_key[0] == 0 and fresh_key[0] > 0 or
                                 min(fresh_profile) > (1 + MOVE_GAIN) * min(kept_profile)):
        chosen, profile = fresh, fresh_profile
    else:
        chosen, profile = kept, kept_profile
    return _layout(num_blocks, ordered, chosen, [v * fastest for v in profile], prev_or_none)


def _layout(num_blocks: int, nodes: Sequence[SpanNode], placements: Sequence[Placement],
            profile: Sequence[float], previous: Sequence[Placement | None]) -> SpanLayout:
    spans = tuple(Span(n.node_id, s, s + length)
                  for n, (s, length) in zip(nodes, placements, strict=True) if length > 0)
    gaps: list[tuple[int, int]] = []
    for b, value in enumerate(profile):
        if value == 0.0:
            if gaps and gaps[-1][1] == b:
                gaps[-1] = (gaps[-1][0], b + 1)
            else:
                gaps.append((b, b + 1))
    moved = sum(moved_blocks(p, q) for p, q in zip(previous, placements, strict=True))
    return SpanLayout(num_blocks=num_blocks, spans=spans, gaps=tuple(gaps),
                      bottleneck=min(profile) if profile else 0.0, moved_blocks=moved)


def blocks_that_fit(memory_bytes: float, block_bytes: float) -> int:
    """How many blocks of `block_bytes` fit a memory budget (never negative)."""
    if block_bytes <= 0:
        return 0
    return max(0, int(memory_bytes // block_bytes))
