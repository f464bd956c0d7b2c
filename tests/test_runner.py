"""The async consensus runner (with scripted latencies) and the ScriptedBackend itself."""
from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from consensus.candidates import ConsensusError, ConsensusTimeout
from consensus.runner import run_consensus
from consensus.strategies import DEFAULT_TEMPERATURE
from consensus.validators import build_validator
from swarm.engine.backend import (
    Backend,
    Completion,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TokenEvent,
)
from swarm.engine.scripted import ScriptedBackend, ScriptedError, split_tokens
from swarm.engine.source import Answer

REQUEST = GenerationRequest(prompt="What is 6 x 7?", params=SamplingParams(seed=11))


@dataclass
class Fake:
    """A source whose answer arrives after a scripted latency; counts its cancellations."""

    source_id: str
    latency_s: float
    answer: str = "42"
    finish: str = "stop"
    logprob: float = -0.5
    error: BaseException | None = None
    requests: list[GenerationRequest] = field(default_factory=list)
    cancelled: int = 0
    began: asyncio.Event = field(default_factory=asyncio.Event)


async def ask(source: Any, request: GenerationRequest) -> Answer:
    """The ask of a `Fake` source (any source type: the runner reads only `source_id`)."""
    source.requests.append(request)
    source.began.set()
    try:
        await asyncio.sleep(source.latency_s)
    except asyncio.CancelledError:
        source.cancelled += 1
        raise
    if source.error is not None:
        raise source.error
    return Answer(Completion(source.answer, (1, 2), (source.logprob,) * 2,
                             source.finish, 4), source.source_id)


def elapsed_since(start: float) -> float:
    return asyncio.get_running_loop().time() - start


async def consensus(strategy: str, sources, **kw):
    kw.setdefault("n", len(sources))
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("rng", random.Random(0))
    start = asyncio.get_running_loop().time()
    decision = await run_consensus(strategy, sources, kw.pop("request", REQUEST), ask, **kw)
    return decision, elapsed_since(start)


async def test_first_valid_returns_at_the_fastest_valid_and_cancels_the_rest() -> None:
    truncated = Fake("fast", 0.02, finish="length")
    good, slow = Fake("good", 0.1), Fake("slow", 3.0)
    decision, took = await consensus("first_valid", [truncated, good, slow])
    assert decision.winner is not None and decision.winner.source == "good"
    assert 0.09 <= took < 0.6
    assert slow.cancelled == 1 and decision.early_stopped
    errors = {row["source"]: row["error"] for row in decision.to_dict()["candidates"]}
    assert errors["slow"] == "cancelled: decided early"
    assert errors["fast"].startswith("invalid: finish_reason")


async def test_a_failing_candidate_does_not_fail_the_request() -> None:
    broken = Fake("broken", 0.01, error=RuntimeError("GPU on fire"))
    decision, _ = await consensus("weighted_vote", [broken, Fake("a", 0.02), Fake("b", 0.03)])
    assert decision.winner is not None and decision.winner.completion.text == "42"
    failed = [c for c in decision.candidates if c.error]
    assert [c.error for c in failed] == ["RuntimeError: GPU on fire"]


async def test_an_answer_finishing_with_the_decision_is_reported_late() -> None:
    decision, _ = await consensus("first_valid", [Fake("a", 0.0), Fake("b", 0.0)])
    late = decision.candidates[1]
    assert decision.winner.source == "a" and late.source == "b"
    assert late.error == "arrived after the decision" and not late.valid
    assert decision.to_dict()["candidates"][1]["tokens"] == 2


async def test_a_source_cancelling_itself_counts_as_a_failure() -> None:
    quitter = Fake("quitter", 0.01, error=asyncio.CancelledError())
    decision, _ = await consensus("first_valid", [quitter, Fake("a", 0.05)])
    assert decision.winner.source == "a"
    assert decision.candidates[0].error == "CancelledError"
    with pytest.raises(ConsensusError):
        await consensus("first_valid", [quitter])


async def test_all_failing_raises_with_each_reason() -> None:
    sources = [Fake("a", 0.01, error=RuntimeError("oom")), Fake("b", 0.02, error=TimeoutError()),
               Fake("c", 0.03, answer="")]
    with pytest.raises(ConsensusError) as info:
        await consensus("best_of_n", sources)
    assert info.value.reasons == ["a: RuntimeError: oom", "b: TimeoutError", "c: invalid: empty text"]
    assert not isinstance(info.value, TimeoutError)


async def test_deadline_decides_on_what_arrived_when_quorum_is_met() -> None:
    fast, slow = Fake("fast", 0.02, answer="7"), Fake("slow", 5.0)
    decision, took = await consensus("best_of_n", [fast, slow], timeout_s=0.2, quorum=1)
    assert took < 0.6 and slow.cancelled == 1
    assert decision.winner is not None and decision.winner.source == "fast"
    assert "deadline" in decision.reason and not decision.early_stopped
    assert decision.candidates[1].error == "no answer before the deadline"


async def test_deadline_without_quorum_raises_a_timeout() -> None:
    sources = [Fake("fast", 0.02), Fake("slow", 5.0), Fake("slower", 6.0)]
    with pytest.raises(ConsensusTimeout) as info:
        await consensus("weighted_vote", sources, timeout_s=0.2, quorum=2)
    assert isinstance(info.value, TimeoutError)
    assert "slow: no answer before the deadline" in info.value.reasons
    assert sources[1].cancelled == sources[2].cancelled == 1


async def test_weighted_vote_stops_once_the_leader_cannot_be_overtaken() -> None:
    slow = Fake("slow", 3.0, answer="7")
    sources = [Fake("a", 0.02), Fake("b", 0.05, answer="The answer is 42."), slow]
    decision, took = await consensus("weighted_vote", sources)
    assert took < 0.6 and decision.early_stopped and slow.cancelled == 1
    assert decision.groups[0].answer == "42" and decision.groups[0].weight == 2.0


async def test_weighted_vote_waits_for_a_split_vote_and_respects_weights() -> None:
    sources = [Fake("a", 0.01, answer="A"), Fake("b", 0.02, answer="B"), Fake("c", 0.03, answer="B")]
    weights = {"a": 1.5, "b": 1.0, "c": 1.0}
    decision, _ = await consensus("weighted_vote", sources,
                                  weight_of=lambda s: weights[s.source_id])
    assert decision.winner.source == "b" and not decision.early_stopped
    assert [row["votes"] for row in decision.to_dict()["candidates"]] == [1.5, 2.0, 2.0]
    weights["a"] = 2.5  # now "a" alone outweighs everything outstanding
    decision, _ = await consensus("weighted_vote", sources,
                                  weight_of=lambda s: weights[s.source_id])
    assert decision.winner.source == "a" and decision.early_stopped


async def test_sampling_candidates_get_distinct_seeds_and_a_positive_temperature() -> None:
    sources = [Fake("a", 0.0), Fake("b", 0.0)]
    greedy = GenerationRequest(prompt="q", params=SamplingParams(temperature=0.0, seed=5))
    decision, _ = await consensus("best_of_n", sources, n=4, request=greedy)
    sent = [r.params for s in sources for r in s.requests]
    assert len(sent) == 4 and len(sources[0].requests) == 2
    assert sorted(p.seed or 0 for p in sent) == [5, 6, 7, 8]
    assert {p.temperature for p in sent} == {DEFAULT_TEMPERATURE}
    assert decision.notes


async def test_judge_mode_ranks_by_the_judge() -> None:
    sources = [Fake("sure", 0.01, answer="41", logprob=-0.1), Fake("unsure", 0.02, logprob=-3.0),
               Fake("cranky", 0.03, answer="judge me")]

    async def judge(request: GenerationRequest, completion: Completion) -> float:
        if completion.text == "judge me":
            raise ValueError("no rating")
        return 9.0 if completion.text == "42" else 2.0

    decision, _ = await consensus("best_of_n", sources, judge=judge, score_mode="judge")
    assert decision.winner.source == "unsure"
    assert [c.score for c in decision.candidates] == [2.0, 9.0, None]
    with pytest.raises(ValueError):
        await consensus("weighted_vote", sources, judge=judge, score_mode="judge")


async def test_route_asks_one_source() -> None:
    sources = [Fake("a", 0.0, finish="length"), Fake("b", 0.0)]
    decision, _ = await consensus("route", sources, n=3)
    assert decision.winner.source == "a" and not decision.winner.valid
    assert len(decision.candidates) == 1 and not sources[1].requests


async def test_a_raising_validator_only_invalidates() -> None:
    def validator(completion: Completion) -> tuple[bool, str]:
        raise KeyError("bug")

    with pytest.raises(ConsensusError) as info:
        await consensus("first_valid", [Fake("a", 0.0)], validator=validator)
    assert "validator raised KeyError" in info.value.reasons[0]


async def test_cancelling_the_caller_cancels_every_candidate() -> None:
    sources = [Fake("a", 5.0), Fake("b", 5.0)]
    task = asyncio.ensure_future(consensus("best_of_n", sources))
    async with asyncio.timeout(2.0):
        await sources[0].began.wait()
        await sources[1].began.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [s.cancelled for s in sources] == [1, 1]


@pytest.mark.parametrize("bad", [dict(n=0), dict(quorum=4), dict(timeout_s=0.0),
                                 dict(weight_of=lambda s: -1.0), dict(strategy="majority")])
async def test_bad_arguments_raise_value_error(bad) -> None:
    strategy = bad.pop("strategy", "best_of_n")
    with pytest.raises(ValueError):
        await consensus(strategy, [Fake("a", 0.0)] * 3, **bad)


# The ScriptedBackend, and the runner over it through a thread like the instance pool's.

async def run_backend(backend: Backend, request: GenerationRequest) -> Completion:
    """Collect one stream off the loop; on cancellation stop the thread and wait for it."""
    cancel = threading.Event()
    work = asyncio.get_running_loop().run_in_executor(
        None, lambda: list(backend.stream(request, cancel)))
    try:
        events: list[TokenEvent] = await asyncio.shield(work)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.wait([work])
        raise
    finish: FinishReason = "length" if len(events) >= request.params.max_tokens else "stop"
    return Completion("".join(e.text for e in events), tuple(e.token_id for e in events),
                      tuple(e.logprob for e in events), finish, 3)


@dataclass
class BackendSource:
    source_id: str
    backend: ScriptedBackend


async def test_runner_over_scripted_backends_frees_the_losers() -> None:
    fast = ScriptedBackend(["not json"], token_latency_s=0.01)
    good = ScriptedBackend(['{"answer": 42}'], token_latency_s=0.05)
    slow = ScriptedBackend(['{"answer": 41} ' + "pad " * 50], token_latency_s=0.05)
    sources: list[Any] = [BackendSource(f"local/{i}", b) for i, b in enumerate((fast, good, slow))]

    async def ask_backend(source: Any, request: GenerationRequest) -> Answer:
        return Answer(await run_backend(source.backend, request), source.source_id)

    start = asyncio.get_running_loop().time()
    decision = await run_consensus(
        "first_valid", sources, REQUEST, ask_backend, n=3,
        timeout_s=5.0, validator=build_validator({"type": "json_object"}))
    assert elapsed_since(start) < 0.5
    assert decision.winner is not None and decision.winner.source == "local/1"
    assert (fast.finished, good.finished, slow.cancelled, slow.finished) == (1, 1, 1, 0)


def test_scripted_backend_streams_its_answers_in_turn() -> None:
    backend = ScriptedBackend(["The capital is Paris.", "Lyon"], logprob=[-0.1, -2.0])
    assert isinstance(backend, Backend) and backend.name == "scripted"
    never = threading.Event()
    first = list(backend.stream(REQUEST, never))
    assert "".join(e.text for e in first) == "The capital is Paris."
    assert len(first) == 4 and {e.logprob for e in first} == {-0.1}
    assert [e.logprob for e in backend.stream(REQUEST, never)] == [-2.0]
    short = GenerationRequest(prompt="p", params=SamplingParams(max_tokens=2))
    assert len(list(backend.stream(short, never))) == 2
    assert backend.count_tokens(backend.prompt_text(REQUEST)) == 5
    assert split_tokens("ab", "char") == ["a", "b"] and split_tokens(" a  b ") == [" a", "  b "]


def test_scripted_backend_fails_and_cancels_on_request() -> None:
    never = threading.Event()
    with pytest.raises(ScriptedError):
        list(ScriptedBackend(["a b c"], fail=True, fail_after_tokens=1).stream(REQUEST, never))
    with pytest.raises(KeyError):
        list(ScriptedBackend(fail=KeyError("x")).stream(REQUEST, never))
    backend = ScriptedBackend(["a b c"], token_latency_s=30.0)
    cancel = threading.Event()
    cancel.set()
    assert list(backend.stream(REQUEST, cancel)) == [] and backend.cancelled == 1
    chosen = ScriptedBackend(lambda r: f"seed {r.params.seed}")
    assert "".join(e.text for e in chosen.stream(REQUEST, never)) == "seed 11"
