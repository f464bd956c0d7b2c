"""The span planner's search (spans.py plans with it): where each node's brick of blocks goes.
Placements are scored by the profile they give (tokens per second of each block), compared
bottom-up (leximin); single moves put one node where the profile gains most, pair moves shift two
at once where one alone is stuck, and fresh starts (widest-first greedy, speed-proportional chains
stacked in layers, chains of side-by-side groups) give the search other places to begin.
Pure: no I/O, no clock.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from network.coordination.spans import SpanNode

_ROUNDS = 8  # re-placement sweeps; each strictly improves or the loop stops
_PARTITION_NODES = 6  # up to this many nodes, every grouping into stacked chains is tried
_STARTS = 3  # how many of the best stacked groupings are improved further
_PAIR_CELLS = 8_000_000  # option-pairs x blocks a pair move may score at once (about 64 MB)
_DIGITS = 9  # decimals kept when profiles (speeds scaled to the fastest = 1) are compared

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


def profile_key(profile: Iterable[float]) -> tuple[float, ...]:
    """A profile as the planner compares it: sorted, lowest block first (leximin), rounded."""
    return tuple(sorted(round(v, _DIGITS) for v in profile))


def moved_blocks(old: Placement | None, new: Placement) -> int:
    """Blocks a node must newly load to go from placement `old` (None: it served none) to `new`."""
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
    moved = np.array([moved_blocks(previous, o) for o in options])
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
            before = profile_key(block_profile(num_blocks, nodes, placements))
            candidate = _best_placement(num_blocks, nodes, placements, i, previous[i])
            if candidate == placements[i]:
                continue
            trial = list(placements)
            trial[i] = candidate
            after = profile_key(block_profile(num_blocks, nodes, trial))
            if after > before or (after == before and moved_blocks(previous[i], candidate)
                                  < moved_blocks(previous[i], placements[i])):
                placements, changed = trial, True
        if not changed:
            break
    return placements


def polish(num_blocks: int, nodes: Sequence[SpanNode], placements: list[Placement],
            previous: Sequence[Placement | None]) -> list[Placement]:
    """Single moves, then pair moves (up to `_PARTITION_NODES` nodes), then single moves again
    (to spread the replicas the pair moves freed)."""
    placements = _improve(num_blocks, nodes, placements, previous)
    if len(nodes) > _PARTITION_NODES:
        return placements  # larger swarms: single moves only, to plan within a second or two
    moved = _pair_moves(num_blocks, nodes, placements)
    return placements if moved == placements else _improve(num_blocks, nodes, moved, previous)


def _widths(num_blocks: int, speeds: dict[int, float], caps: dict[int, int]) -> dict[int, int]:
    """Widths in proportion to speed within each cap, summing to `num_blocks` when the caps allow
    (water-filling: the highest rate r with sum(min(cap, s / r)) >= num_blocks)."""
    rates = sorted({speeds[i] / k for i, cap in caps.items() for k in range(1, cap + 1)},
                   reverse=True)
    widths = dict(caps)
    for rate in rates:
        trial = {i: min(cap, int(speeds[i] / rate + 1e-9)) for i, cap in caps.items()}
        if sum(trial.values()) >= num_blocks:
            widths = trial
            break
    excess = sum(widths.values()) - num_blocks
    while excess > 0:  # trim the widest (then slowest) first: a narrower span only gets faster
        i = max(widths, key=lambda j: (widths[j], -speeds[j], -j))
        widths[i] -= 1
        excess -= 1
    return widths


def _chain(num_blocks: int, nodes: Sequence[SpanNode], members: Sequence[int],
           placements: list[Placement]) -> None:
    """Lay `members` end to end over all blocks, widths in proportion to speed within memory."""
    caps = {i: min(nodes[i].max_blocks, num_blocks) for i in members if nodes[i].throughput > 0}
    widths = _widths(num_blocks, {i: nodes[i].throughput for i in caps}, caps)
    start = 0
    for i in sorted(widths):
        if widths[i] > 0:
            placements[i] = (start, widths[i])
            start += widths[i]


def _stages(num_blocks: int, nodes: Sequence[SpanNode], groups: Sequence[Sequence[int]],
            placements: list[Placement]) -> None:
    """Lay `groups` end to end over all blocks, every member of a group on its group's whole
    segment (side by side, their speeds add), widths in proportion to each group's speed within
    its narrowest member's memory: small nodes in pairs before a big one, say."""
    live = [[i for i in g if nodes[i].throughput > 0 and nodes[i].max_blocks > 0] for g in groups]
    live = [g for g in live if g]
    caps = {k: min(min(nodes[i].max_blocks for i in g), num_blocks) for k, g in enumerate(live)}
    speeds = {k: sum(nodes[i].throughput for i in g) for k, g in enumerate(live)}
    widths = _widths(num_blocks, speeds, caps)
    start = 0
    for k in sorted(widths):
        if widths[k] > 0:
            for i in live[k]:
                placements[i] = (start, widths[k])
            start += widths[k]


def fresh_starts(num_blocks: int, nodes: Sequence[SpanNode],
                  previous: Sequence[Placement | None]) -> list[list[Placement]]:
    """Plans from scratch to improve on: widest-first greedy, 1 to N stacked chains, and
    chains of side-by-side groups (the same groupings read the other way)."""
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
        staged: list[Placement] = [(0, 0)] * len(nodes)
        _stages(num_blocks, nodes, groups, staged)
        stacks += [stacked, staged]
    stacks.sort(key=lambda p: profile_key(block_profile(num_blocks, nodes, p)), reverse=True)
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
