"""Properties of the pure consensus decisions and their early-stop predicates."""
from __future__ import annotations

import json
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.candidates import Candidate, Decision
from consensus.strategies import (
    DEFAULT_TEMPERATURE,
    assign_sources,
    best_of_n,
    best_of_n_settled,
    first_valid,
    plan_requests,
    settled,
    vote_settled,
    weighted_vote,
)
from swarm.engine.backend import Completion, GenerationRequest, SamplingParams

ANSWERS = ["Paris", "paris.", "The answer is 42", "42", "(B)", "b", "Lyon", '{"a": 1}',
           "The capital of France is Paris", "Paris is the capital of France",
           "The capital of France is Lyon", "x y z",
           # a bridge: the third is similar to both others, which are not similar to each other
           "one two three four five", "one two three four six", "one two three four five six",
           # short-answer spans: "No" groups with the sentences that begin with it, "Paris" with
           # "... is Paris, ...", and "Paris and Lyon" bridges the Paris and Lyon groups
           "No", "No, it is not.", "The answer is no.", "Yes.", "It is not Paris.",
           "The capital of France is Paris, a big city", "Lyon is the capital of France",
           "Paris and Lyon"]


def make(i: int, answer: str, *, weight: float = 1.0, logprob: float = -0.5, ok: bool = True,
         valid: bool = True, source: str | None = None) -> Candidate:
    completion = Completion(answer, (1,) * 3, (logprob,) * 3, "stop", 5) if ok else None
    return Candidate(source or f"s{i % 3}", completion, None if ok else "boom", 0.1 * i, i,
                     weight, logprob if ok else None, valid and ok, "" if valid else "bad")


# One candidate without its arrival: (answer, weight, logprob, ok, valid).
_spec = st.tuples(
    st.sampled_from(ANSWERS),
    st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0]), st.floats(0.0, 10.0)),
    st.floats(-5.0, 0.0),
    st.sampled_from([True, True, True, False]),
    st.sampled_from([True, True, False]),
)
_specs = st.lists(_spec, min_size=1, max_size=7)


def build(specs, order=None) -> list[Candidate]:
    """Candidates from specs; `order[k]` is the spec that arrived k-th."""
    order = order if order is not None else range(len(specs))
    out = []
    for arrival, index in enumerate(order):
        answer, weight, logprob, ok, valid = specs[index]
        out.append(make(arrival, answer, weight=weight, logprob=logprob, ok=ok, valid=valid,
                        source=f"s{index}"))
    return out


@given(_specs, st.randoms(use_true_random=False))
def test_weighted_vote_is_permutation_invariant(specs, rnd) -> None:
    candidates = build(specs)
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    a, b = weighted_vote(candidates), weighted_vote(shuffled)
    assert a.winner == b.winner
    assert a.groups == b.groups


@given(_specs, st.randoms(use_true_random=False))
def test_best_of_n_and_first_valid_are_permutation_invariant(specs, rnd) -> None:
    candidates = build(specs)
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert best_of_n(candidates).winner == best_of_n(shuffled).winner
    assert first_valid(candidates).winner == first_valid(shuffled).winner


@given(_specs)
def test_decisions_are_deterministic(specs) -> None:
    assert weighted_vote(build(specs)) == weighted_vote(build(specs))
    assert best_of_n(build(specs)) == best_of_n(build(specs))


@settings(max_examples=300)
@given(_specs, st.data())
def test_early_stop_never_changes_the_winner(specs, data) -> None:
    order = data.draw(st.permutations(range(len(specs))))
    everyone = build(specs, order)
    for strategy, decide in (("weighted_vote", weighted_vote), ("first_valid", first_valid),
                             ("best_of_n", best_of_n)):
        final = decide(everyone)
        for k in range(len(everyone)):
            prefix, rest = everyone[:k], everyone[k:]
            if not settled(strategy, prefix, [c.weight for c in rest]):
                continue
            early = decide(prefix)
            assert early.winner is not None
            assert strategy != "best_of_n", "best_of_n settled with candidates outstanding"
            if strategy == "weighted_vote":
                # the same answer wins (the member shown may be a more confident later one)
                assert early.winner.arrival in final.groups[0].members
            else:
                assert early.winner == final.winner
            break


@given(_specs, st.sets(st.sampled_from(ANSWERS)))
def test_first_valid_never_returns_an_invalid_candidate(specs, accepted) -> None:
    def validator(completion: Completion) -> tuple[bool, str]:
        return (completion.text in accepted, "whitelist")

    candidates = build(specs)
    decision = first_valid(candidates, validator)
    winner = decision.winner
    passing = [c for c in candidates if c.completion is not None and c.ok
               and c.completion.text in accepted]
    if not passing:
        assert winner is None
    else:
        assert winner is not None and winner.completion is not None
        assert winner.completion.text in accepted
        assert winner.arrival == min(c.arrival for c in passing)
    assert first_valid(candidates).winner in (None, *[c for c in candidates if c.valid])


def test_weighted_vote_picks_the_heaviest_group_and_its_most_confident_member() -> None:
    candidates = [make(0, "The answer is 42", logprob=-2.0), make(1, "Paris"),
                  make(2, "42", logprob=-0.1), make(3, "paris", weight=0.5)]
    decision = weighted_vote(candidates)
    assert decision.winner is candidates[2]
    assert [(g.answer, g.weight, g.members) for g in decision.groups] == [
        ("42", 2.0, (0, 2)), ("paris", 1.5, (1, 3))]


def test_weighted_vote_ignores_invalid_candidates() -> None:
    candidates = [make(0, "A", valid=False), make(1, "A", valid=False), make(2, "B"),
                  make(3, "x", ok=False)]
    assert weighted_vote(candidates).winner is candidates[2]
    assert weighted_vote([candidates[0], candidates[3]]).winner is None


def test_vote_settled_examples() -> None:
    two = [make(0, "42"), make(1, "The answer is 42.")]
    assert vote_settled(two, outstanding_weight=1.0)
    assert not vote_settled(two, outstanding_weight=2.0)
    assert not vote_settled([], outstanding_weight=0.0)
    # Free text: a new answer could bridge the two minority groups into one of weight 2.
    texts = [make(0, "alpha beta gamma"), make(1, "alpha beta gamma"), make(2, "lorem ipsum"),
             make(3, "dolor sit amet"), make(4, "alpha beta gamma")]
    assert not vote_settled(texts, outstanding_weight=1.0)
    assert vote_settled(texts, outstanding_weight=0.5)


def test_vote_settled_allows_for_a_bridging_answer() -> None:
    # "42" leads 2.5 to two text groups of 1 each; one more answer similar to both merges them.
    seen = [make(0, "42", weight=1.5), make(1, "one two three four five"),
            make(2, "one two three four six"), make(3, "The answer is 42")]
    bridge = make(4, "one two three four five six")
    assert not vote_settled(seen, outstanding_weight=bridge.weight)
    assert weighted_vote([*seen, bridge]).groups[0].members == (1, 2, 4)


def test_vote_settled_allows_for_a_bridging_short_answer() -> None:
    # The same with answer spans: "Paris and Lyon" gives both short answers, so it joins both.
    seen = [make(0, "42", weight=1.5), make(1, "The capital of France is Paris."),
            make(2, "The capital of France is Lyon."), make(3, "The answer is 42")]
    bridge = make(4, "Paris and Lyon")
    assert len(weighted_vote(seen).groups) == 3
    assert not vote_settled(seen, outstanding_weight=bridge.weight)
    assert weighted_vote([*seen, bridge]).groups[0].members == (1, 2, 4)


def test_vote_settles_early_once_paraphrases_agree() -> None:
    seen = [make(0, "The capital of France is Paris."), make(1, "Paris"),
            make(2, "The capital of France is Paris, a city of light."), make(3, "Lyon")]
    decision = weighted_vote(seen)
    assert [(g.weight, g.members) for g in decision.groups] == [(3.0, (0, 1, 2)), (1.0, (3,))]
    assert vote_settled(seen, outstanding_weight=1.0)


def test_best_of_n_settles_only_when_all_are_in() -> None:
    assert not best_of_n_settled([make(0, "a")], outstanding=1)
    assert best_of_n_settled([make(0, "a")], outstanding=0)


def test_best_of_n_tie_break_prefers_earlier_arrival() -> None:
    candidates = [make(1, "b", logprob=-1.0), make(0, "a", logprob=-1.0), make(2, "c", logprob=-3)]
    assert best_of_n(candidates).winner is candidates[1]
    scored = best_of_n(candidates,
                       score_fn=lambda c: {"c": 9.0}.get(c.completion.text if c.completion else ""))
    assert scored.winner is candidates[2]


@given(st.integers(1, 6), st.integers(1, 20))
def test_assign_sources_round_robins(sources: int, n: int) -> None:
    slots = assign_sources(sources, n)
    counts = [slots.count(i) for i in range(sources)]
    assert max(counts) - min(counts) <= 1 and len(slots) == n
    assert assign_sources(3, 4, load=[2, 0, 1]) == (1, 1, 2, 0)


@given(st.integers(0, 2**32), st.sampled_from(["best_of_n", "weighted_vote", "first_valid"]),
       st.integers(2, 8), st.sampled_from([0.0, 0.3, 1.0]), st.none() | st.integers(0, 2**40))
def test_plan_is_deterministic_for_a_seed(seed, strategy, n, temperature, request_seed) -> None:
    request = GenerationRequest(prompt="q", params=SamplingParams(temperature=temperature,
                                                                  seed=request_seed))
    a = plan_requests(request, strategy, n, random.Random(seed))
    b = plan_requests(request, strategy, n, random.Random(seed))
    assert a == b
    seeds = [r.params.seed for r in a.requests]
    assert len(set(seeds)) == n
    if request_seed is not None and request_seed < 2**31:
        assert seeds[0] == request_seed
    temps = {r.params.temperature for r in a.requests}
    if temperature == 0.0 and strategy != "first_valid":
        assert temps == {DEFAULT_TEMPERATURE} and a.notes
    else:
        assert temps == {temperature} and not a.notes
    assert plan_requests(request, strategy, 1, random.Random(seed)).requests == (request,)


def test_decision_to_dict_shape() -> None:
    candidates = (make(0, "42", logprob=-0.2), make(1, "The answer is 42"),
                  Candidate("peer/x", None, "cancelled: decided early", 0.3, -1, 1.0),
                  make(2, "nope", valid=False))
    decision = weighted_vote(candidates)
    body = decision.to_dict()
    json.dumps(body, allow_nan=False)
    assert body["strategy"] == "weighted_vote" and body["winner"] == "s0"
    assert body["early_stop"] is False and body["voted_on"] == "number"
    rows = body["candidates"]
    assert set(rows[0]) == {"source", "latency_ms", "tokens", "kind", "score", "votes", "valid",
                            "error"}
    assert rows[0]["votes"] == 2.0 and rows[0]["tokens"] == 3 and rows[0]["latency_ms"] == 0.0
    assert rows[0]["kind"] == "number"
    assert rows[2] == {"source": "peer/x", "latency_ms": 300.0, "tokens": 0, "kind": None,
                       "score": None, "votes": None, "valid": False,
                       "error": "cancelled: decided early"}
    assert rows[3]["error"] == "invalid: bad" and rows[3]["votes"] is None
    empty = Decision("best_of_n", None, (make(0, "", logprob=-math.inf),))
    json.dumps(empty.to_dict(), allow_nan=False)
