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
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MOVE_GAIN = 0.05  # a fresh plan must raise the bottleneck by 5 % to be worth moving blocks
_ROUNDS = 8  # re-placement sweeps; each strictly improves or the loop stops
_PARTITION_NODES = 6  # up to this many nodes, every grouping into stacked chains is tried
_STARTS = 3  # how many of the best stacked groupings are improved further
_PAIR_CELLS = 8_000_000  # option-pairs x blocks a pair move may score at once (about 64 MB)
_DIGITS = 9  # decimals kept when profiles (speeds scaled to the fastest = 1) are compared


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


Placement = tuple[int, int]  # (start, length); length 0 means the node serves nothing


def block_profile(num_blocks: int, nodes: Sequence[SpanNode],
                  placements: Sequence[Placement]) -> list[float]:
    """Tokens per second each block gets from the nodes placed on it."""
    profile = [0.0] * num_blocks
    for node, (start, length) in zip(nodes, placements, strict=True):
        if length > 0:
            rate = node.throughput / length
            for b in range(start, start + length):
                profile[b] += rate
    return profile


def _key(profile: Iterable[float]) -> tuple[float, ...]:
    return tuple(sorted(round(v, _DIGITS) for v in profile))


def _moved(old: Placement | None, new: Placement) -> int:
    start, length = new
    if old is None or old[1] == 0:
        return length
    overlap = max(0, min(start + length, old[0] + old[1]) - max(start, old[0]))
    return length - overlap


def _best_placement(num_blocks: int, nodes: Sequence[SpanNode], placements: list[Placement],
                    i: int, previous: Placement | None) -> Placement:
    """Where node `i` adds most to the profile of the others (leximin), then moves least."""
    others = list(placements)
    others[i] = (0, 0)
    base = np.array(block_profile(num_blocks, nodes, others))
    options, rows = _options(num_blocks, nodes[i])
    profiles = np.round(np.sort(base + rows, axis=1), _DIGITS)
    moved = np.array([_moved(previous, o) for o in options])
    lengths = np.array([o[1] for o in options])
    starts = np.array([o[0] for o in options])
    # Higher profile first (lowest block first), then fewer moved blocks, longer, lower start.
    keys = [-starts, lengths, -moved] + [profiles[:, b] for b in range(num_blocks - 1, -1, -1)]
    return options[int(np.lexsort(keys)[-1])]


def _options(num_blocks: int, node: SpanNode) -> tuple[list[Placement], np.ndarray]:
    """Every placement of `node` (serving nothing included) and the rates it adds per block."""
    options: list[Placement] = [(0, 0)]
    if node.throughput > 0:
        for length in range(1, min(node.max_blocks, num_blocks) + 1):
            options += [(start, length) for start in range(num_blocks - length + 1)]
    rows = np.zeros((len(options), num_blocks))
    for k, (start, length) in enumerate(options[1:], 1):
        rows[k, start:start + length] = node.throughput / length
    return options, rows


def _pair_moves(num_blocks: int, nodes: Sequence[SpanNode],
                placements: list[Placement]) -> list[Placement]:
    """Move two nodes at once where that lifts the bottleneck (one at a time can be stuck: a
    node must shrink for another to cover what it leaves). Vectorised over both nodes' options;
    pairs with more than `_PAIR_CELLS` option-pairs x blocks are left to single moves."""
    for _ in range(_ROUNDS):
        changed = False
        for i in range(len(nodes)):
            for j in range(i + 1, len(nodes)):
                opt_i, rows_i = _options(num_blocks, nodes[i])
                opt_j, rows_j = _options(num_blocks, nodes[j])
                if len(opt_i) * len(opt_j) * num_blocks > _PAIR_CELLS:
                    continue
                rest = list(placements)
                rest[i] = rest[j] = (0, 0)
                base = np.array(block_profile(num_blocks, nodes, rest))
                mins = (base + rows_i[:, None, :] + rows_j[None, :, :]).min(axis=2)
                a, b = np.unravel_index(int(mins.argmax()), mins.shape)
                now = min(block_profile(num_blocks, nodes, placements))
                if mins[a, b] > now * (1 + 1e-9) + 1e-12:
                    placements = list(placements)
                    placements[i], placements[j] = opt_i[a], opt_j[b]
                    changed = True
        if not changed:
            break
    return placements


def _improve(num_blocks: int, nodes: Sequence[SpanNode], placements: list[Placement],
             previous: Sequence[Placement | None]) -> list[Placement]:
    for _ in range(_ROUNDS):
        changed = False
        for i in range(len(nodes)):
            before = _key(block_profile(num_blocks, nodes, placements))
            candidate = _best_placement(num_blocks, nodes, placements, i, previous[i])
            if candidate == placements[i]:
                continue
            trial = list(placements)
            trial[i] = candidate
            after = _key(block_profile(num_blocks, nodes, trial))
            if after > before or (after == before and _moved(previous[i], candidate)
                                  < _moved(previous[i], placements[i])):
                placements, changed = trial, True
        if not changed:
            break
    return placements


def _polish(num_blocks: int, nodes: Sequence[SpanNode], placements: list[Placement],
            previous: Sequence[Placement | None]) -> list[Placement]:
    """Single moves, then pair moves (up to `_PARTITION_NODES` nodes), then single moves again
    (to spread the replicas the pair moves freed)."""
    placements = _improve(num_blocks, nodes, placements, previous)
    if len(nodes) > _PARTITION_NODES:
        return placements  # larger swarms: single moves only, to plan within a second or two
    moved = _pair_moves(num_blocks, nodes, placements)
    return placements if moved == placements else _improve(num_blocks, nodes, moved, previous)


def _chain(num_blocks: int, nodes: Sequence[SpanNode], members: Sequence[int],
           placements: list[Placement]) -> None:
    """Lay `members` end to end over all blocks, widths in proportion to speed within memory
    (water-filling: the highest rate r with sum(min(cap, s / r)) >= num_blocks)."""
    caps = {i: min(nodes[i].max_blocks, num_blocks) for i in members if nodes[i].throughput > 0}
    rates = sorted({nodes[i].throughput / k for i, cap in caps.items() for k in range(1, cap + 1)},
                   reverse=True)
    widths = dict(caps)
    for rate in rates:
        trial = {i: min(cap, int(nodes[i].throughput / rate + 1e-9)) for i, cap in caps.items()}
        if sum(trial.values()) >= num_blocks:
            widths = trial
            break
    excess = sum(widths.values()) - num_blocks
    while excess > 0:  # trim the widest (then slowest) first: a narrower span only gets faster
        i = max(widths, key=lambda j: (widths[j], -nodes[j].throughput, -j))
        widths[i] -= 1
        excess -= 1
    start = 0
    for i in sorted(widths):
        if widths[i] > 0:
            placements[i] = (start, widths[i])
            start += widths[i]


def _fresh_starts(num_blocks: int, nodes: Sequence[SpanNode],
                  previous: Sequence[Placement | None]) -> list[list[Placement]]:
    """Plans from scratch to improve on: widest-first greedy, and 1 to N stacked chains."""
    starts: list[list[Placement]] = []
    greedy: list[Placement] = [(0, 0)] * len(nodes)
    order = sorted(range(len(nodes)), key=lambda i: (-min(nodes[i].max_blocks, num_blocks),
                                                     -nodes[i].throughput, nodes[i].node_id))
    for i in order:
        greedy[i] = _best_placement(num_blocks, nodes, greedy, i, previous[i])
    starts.append(greedy)
    by_speed = sorted(range(len(nodes)), key=lambda i: (-nodes[i].throughput, nodes[i].node_id))
    if len(nodes) <= _PARTITION_NODES:
        groupings = list(_partitions(by_speed))
    else:  # too many to enumerate: deal the nodes round-robin into 1 to N layers
        groupings = [[by_speed[k::layers] for k in range(layers)]
                     for layers in range(1, len(nodes) + 1)]
    stacks = []
    for groups in groupings:
        stacked: list[Placement] = [(0, 0)] * len(nodes)
        for members in groups:
            _chain(num_blocks, nodes, members, stacked)
        stacks.append(stacked)
    stacks.sort(key=lambda p: _key(block_profile(num_blocks, nodes, p)), reverse=True)
    starts.extend(stacks[:_STARTS])
    return starts


def _partitions(items: list[int]) -> Iterator[list[list[int]]]:
    """Every way to split `items` into non-empty groups (order kept inside each group)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for groups in _partitions(rest):
        yield [[first], *groups]
        for k in range(len(groups)):
            yield [*groups[:k], [first, *groups[k]], *groups[k + 1:]]


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
    kept = _polish(num_blocks, ordered, list(prior), prev_or_none)
    fresh = max((_polish(num_blocks, ordered, start, prev_or_none)
                 for start in _fresh_starts(num_blocks, ordered, prev_or_none)),
                key=lambda p: _key(block_profile(num_blocks, ordered, p)))
    kept_profile = block_profile(num_blocks, ordered, kept)
    fresh_profile = block_profile(num_blocks, ordered, fresh)
    kept_key, fresh_key = _key(kept_profile), _key(fresh_profile)
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
    moved = sum(_moved(p, q) for p, q in zip(previous, placements, strict=True))
    return SpanLayout(num_blocks=num_blocks, spans=spans, gaps=tuple(gaps),
                      bottleneck=min(profile) if profile else 0.0, moved_blocks=moved)


def blocks_that_fit(memory_bytes: float, block_bytes: float) -> int:
    """How many blocks of `block_bytes` fit a memory budget (never negative)."""
    if block_bytes <= 0:
        return 0
    return max(0, int(memory_bytes // block_bytes))
