"""Pure consensus decisions over candidates, their early-stop predicates, and the fan-out plan.

Nothing here reads a clock or draws randomness of its own: `rng` is passed in. Every decision is a
function of the candidates' fields (arrival, source, answer, weight, score), never of the order of
the sequence they come in, so permuting the input never changes the outcome.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from consensus.candidates import STRATEGIES, Candidate, Decision, VoteGroup
from consensus.normalize import TEXT_SIMILARITY, AnswerKey, group_keys, normalize_answer
from consensus.validators import Validator
from swarm.engine.backend import GenerationRequest

if TYPE_CHECKING:
    import random

SAMPLING_STRATEGIES = frozenset({"best_of_n", "weighted_vote"})
DEFAULT_TEMPERATURE = 0.7
SEED_SPACE = 2**31
_SETTLE_MARGIN = 1e-9  # relative: float sums of weights must not settle a near-tie

ScoreFn = Callable[[Candidate], float | None]


def _arrival_order(c: Candidate) -> tuple[int, str]:
    return (c.arrival, c.source)


def route(candidates: Sequence[Candidate]) -> Decision:
    """No consensus: the earliest successful candidate wins, valid or not (validity is reported)."""
    ok = sorted((c for c in candidates if c.ok), key=_arrival_order)
    winner = ok[0] if ok else None
    return Decision("route", winner, tuple(candidates),
                    reason="routed" if winner else "no candidate succeeded")


def _revalidated(candidate: Candidate, validator: Validator) -> Candidate:
    if candidate.completion is None or not candidate.ok:
        return replace(candidate, valid=False)
    valid, why = validator(candidate.completion)
    return replace(candidate, valid=valid, verdict=why)


def first_valid(candidates: Sequence[Candidate], validator: Validator | None = None) -> Decision:
    """The earliest-arriving valid candidate; `validator`, if given, overrides recorded validity."""
    if validator is not None:
        candidates = [_revalidated(c, validator) for c in candidates]
    valid = sorted((c for c in candidates if c.valid), key=_arrival_order)
    winner = valid[0] if valid else None
    reason = f"first valid of {len(candidates)}" if winner else "no valid candidate"
    return Decision("first_valid", winner, tuple(candidates), reason=reason)


def _score(candidate: Candidate, score_fn: ScoreFn) -> float:
    value = score_fn(candidate)
    return -math.inf if value is None or math.isnan(value) else value


def _mean_logprob(candidate: Candidate) -> float | None:
    return candidate.mean_logprob


def best_of_n(candidates: Sequence[Candidate], score_fn: ScoreFn | None = None) -> Decision:
    """The valid candidate with the highest score (default: mean logprob); earliest on ties."""
    score_fn = score_fn or _mean_logprob
    valid = [c for c in candidates if c.valid]
    if not valid:
        return Decision("best_of_n", None, tuple(candidates), reason="no valid candidate")
    winner = min(valid, key=lambda c: (-_score(c, score_fn), c.arrival, c.source))
    return Decision("best_of_n", winner, tuple(candidates),
                    reason=f"best score {_score(winner, score_fn):.4g} of {len(valid)} valid")


def _most_confident(members: Sequence[Candidate]) -> Candidate:
    return min(members, key=lambda c: (-c.mean_logprob, c.arrival, c.source))


def vote_groups(
    candidates: Sequence[Candidate], threshold: float = TEXT_SIMILARITY
) -> tuple[VoteGroup, ...]:
    """Valid candidates grouped by normalised answer, heaviest first.

    Ties go to more members, then to the most confident member's mean logprob, then to the
    smaller answer key: never to input order. Weights are summed with `math.fsum` over sorted
    values so the sum does not depend on order either.
    """
    valid = [c for c in candidates if c.valid and c.completion is not None]
    keys = [normalize_answer(c.completion.text) for c in valid]  # type: ignore[union-attr]
    representative = group_keys(keys, threshold)
    members: dict[AnswerKey, list[Candidate]] = {}
    for candidate, key in zip(valid, keys, strict=True):
        members.setdefault(representative[key], []).append(candidate)
    ranked = []
    for rep, group in members.items():
        weight = math.fsum(sorted(c.weight for c in group))
        top = _most_confident(group).mean_logprob
        vote = VoteGroup(rep.kind, rep.value, weight, tuple(sorted(c.arrival for c in group)))
        ranked.append(((-weight, -len(group), -top, rep), vote))
    ranked.sort(key=lambda item: item[0])
    return tuple(vote for _, vote in ranked)


def weighted_vote(candidates: Sequence[Candidate], threshold: float = TEXT_SIMILARITY) -> Decision:
    """The heaviest answer group wins; its most confident member (highest mean logprob) answers."""
    groups = vote_groups(candidates, threshold)
    if not groups:
        return Decision("weighted_vote", None, tuple(candidates), reason="no valid candidate")
    lead = groups[0]
    winner = _most_confident([c for c in candidates if c.valid and c.arrival in lead.members])
    total = math.fsum(sorted(g.weight for g in groups))
    reason = f"{lead.kind} answer {lead.answer!r} has {lead.weight:g} of {total:g} votes"
    return Decision("weighted_vote", winner, tuple(candidates), groups=groups, reason=reason)


def vote_settled(
    candidates: Sequence[Candidate], outstanding_weight: float,
    threshold: float = TEXT_SIMILARITY,
) -> bool:
    """True when no outcome of the outstanding candidates can make another group win.

    The challenger's best case: every outstanding vote joins it, and, for free text, one new answer
    bridges all the other text groups into one (similarity groups can merge, never split).
    """
    groups = vote_groups(candidates, threshold)
    if not groups:
        return False
    leader, others = groups[0], groups[1:]
    merged_text = math.fsum(sorted(g.weight for g in others if g.kind == "text"))
    largest_other = max((g.weight for g in others if g.kind != "text"), default=0.0)
    bound = max(merged_text, largest_other) + outstanding_weight
    return leader.weight > bound + _SETTLE_MARGIN * max(1.0, bound)


def first_valid_settled(candidates: Sequence[Candidate]) -> bool:
    """True once any valid candidate has arrived: later arrivals cannot come first."""
    return any(c.valid for c in candidates)


def best_of_n_settled(candidates: Sequence[Candidate], outstanding: int) -> bool:
    """True only when nothing is outstanding: any unseen candidate might score higher."""
    return outstanding == 0


def settled(strategy: str, candidates: Sequence[Candidate], outstanding: Sequence[float]) -> bool:
    """Whether `strategy`'s outcome is final; `outstanding`: the pending candidates' weights."""
    if not outstanding:
        return True
    if strategy == "first_valid":
        return first_valid_settled(candidates)
    if strategy == "weighted_vote":
        return vote_settled(candidates, math.fsum(sorted(outstanding)))
    return best_of_n_settled(candidates, len(outstanding))  # best_of_n and route wait for all


def decide(
    strategy: str, candidates: Sequence[Candidate], score_fn: ScoreFn | None = None
) -> Decision:
    """Apply `strategy` (one of STRATEGIES) to `candidates`."""
    if strategy == "route":
        return route(candidates)
    if strategy == "first_valid":
        return first_valid(candidates)
    if strategy == "best_of_n":
        return best_of_n(candidates, score_fn)
    if strategy == "weighted_vote":
        return weighted_vote(candidates)
    raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")


def assign_sources(num_sources: int, n: int, load: Sequence[int] | None = None) -> tuple[int, ...]:
    """Source index per candidate: the least-assigned (plus `load`) source, lowest index on ties."""
    if num_sources < 1:
        raise ValueError("need at least one source")
    counts = list(load) if load is not None else [0] * num_sources
    slots = []
    for _ in range(n):
        index = min(range(num_sources), key=lambda i: (counts[i], i))
        counts[index] += 1
        slots.append(index)
    return tuple(slots)


@dataclass(frozen=True)
class RequestPlan:
    """The request each candidate runs, and notes on what was changed from the client's request."""

    requests: tuple[GenerationRequest, ...]
    notes: tuple[str, ...] = ()


def plan_requests(
    request: GenerationRequest, strategy: str, n: int, rng: random.Random
) -> RequestPlan:
    """Per-candidate requests: distinct seeds (from the request's seed, else `rng`) when n > 1,
    and temperature 0 raised to DEFAULT_TEMPERATURE for the sampling strategies."""
    if n == 1:
        return RequestPlan((request,))
    params = request.params
    notes: list[str] = []
    temperature = params.temperature
    if strategy in SAMPLING_STRATEGIES and params.greedy:
        temperature = DEFAULT_TEMPERATURE
        notes.append(f"temperature {params.temperature:g} raised to {temperature:g} "
                     f"so that {strategy} candidates differ")
    base = params.seed if params.seed is not None else rng.randrange(SEED_SPACE)
    requests = tuple(
        replace(request, params=replace(params, temperature=temperature,
                                        seed=(base + i) % SEED_SPACE))
        for i in range(n)
    )
    return RequestPlan(requests, tuple(notes))
