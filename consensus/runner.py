"""The async consensus runner: fan out, gather candidates, decide early, cancel the rest."""
from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace

from consensus.candidates import (
    NEVER_ARRIVED,
    SCORE_MODES,
    Candidate,
    ConsensusError,
    ConsensusTimeout,
    Decision,
    ScoreMode,
)
from consensus.strategies import STRATEGIES, assign_sources, decide, plan_requests, settled
from consensus.validators import Validator, finished_nonempty
from swarm.engine.backend import Completion, GenerationRequest
from swarm.engine.source import Answer, Source

log = logging.getLogger(__name__)

Ask = Callable[[Source, GenerationRequest], Awaitable[Answer]]
Judge = Callable[[GenerationRequest, Completion], Awaitable[float]]


@dataclass(frozen=True)
class _Arrival:
    """What one candidate task reports: its index in the plan and its outcome."""

    index: int
    completion: Completion | None
    error: str | None
    latency_s: float
    score: float | None = None
    valid: bool = False
    verdict: str = ""


def _validate(validator: Validator, completion: Completion) -> tuple[bool, str]:
    try:
        return validator(completion)
    except Exception as exc:  # a buggy validator marks the candidate, it does not fail the run
        log.warning("validator raised %r", exc)
        return False, f"validator raised {type(exc).__name__}: {exc}"


def _check(strategy: str, sources: Sequence[Source], n: int, timeout_s: float, quorum: int,
           score_mode: str, judge: Judge | None) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    if not sources:
        raise ValueError("consensus needs at least one source")
    if n < 1:
        raise ValueError(f"n must be at least 1, not {n}")
    if not 1 <= quorum <= n:
        raise ValueError(f"quorum must be between 1 and n={n}, not {quorum}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s}")
    if score_mode not in SCORE_MODES:
        raise ValueError(f"score_mode must be 'logprob' or 'judge', not {score_mode!r}")
    if score_mode == "judge" and (judge is None or strategy != "best_of_n"):
        raise ValueError("score_mode 'judge' needs strategy best_of_n and a judge")


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _recorded_score(candidate: Candidate) -> float | None:
    return candidate.score


async def ask_source(source: Source, request: GenerationRequest) -> Answer:
    """The plain ask: the source's own `complete` (federation adds a retry on peer failure)."""
    return await source.complete(request)


async def run_consensus(
    strategy: str,
    sources: Sequence[Source],
    request: GenerationRequest,
    ask: Ask = ask_source,
    *,
    n: int,
    timeout_s: float,
    quorum: int = 1,
    validator: Validator = finished_nonempty,
    weight_of: Callable[[Source], float] | None = None,
    rng: random.Random | None = None,
    judge: Judge | None = None,
    score_mode: ScoreMode = "logprob",
) -> Decision:
    """Ask `n` candidates (1 for "route") over `sources` and return the `strategy`'s Decision.

    Decides as soon as the outcome can no longer change and cancels (and awaits) the rest. At the
    deadline it decides on what has arrived if `quorum` valid candidates have, else raises
    ConsensusTimeout; ConsensusError when no candidate is usable; ValueError on bad arguments.
    An `ask` that raises (even CancelledError of its own) only marks its candidate. In "judge"
    mode (best_of_n) each valid candidate is scored by `judge(request, completion)` as it
    arrives, within the deadline; a judge that raises leaves the candidate unscored (ranks last).
    """
    _check(strategy, sources, n, timeout_s, quorum, score_mode, judge)
    count = 1 if strategy == "route" else n
    quorum = min(quorum, count)
    rng = rng if rng is not None else random.Random(request.params.seed)
    plan = plan_requests(request, strategy, count, rng)
    slots = assign_sources(len(sources), count)
    weights = [float(weight_of(sources[s])) if weight_of else 1.0 for s in slots]
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"source weights must be finite and non-negative, not {weights}")
    names = [sources[s].source_id for s in slots]

    loop = asyncio.get_running_loop()
    started = loop.time()
    arrivals: asyncio.Queue[_Arrival] = asyncio.Queue()

    async def attempt(index: int) -> None:
        try:
            answer = await ask(sources[slots[index]], plan.requests[index])
            completion = answer.completion
            names[index] = answer.answered_by  # a retried peer's candidate names its new source
        except (Exception, asyncio.CancelledError) as exc:  # one failure never fails the request
            if isinstance(exc, asyncio.CancelledError) and _being_cancelled():
                raise  # ours (a decision, the deadline, or the caller), not the source's
            log.debug("candidate %d (%s) failed: %r", index, names[index], exc)
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            arrivals.put_nowait(_Arrival(index, None, error, loop.time() - started))
            return
        latency = loop.time() - started
        valid, verdict = _validate(validator, completion)
        score: float | None = completion.mean_logprob
        if score_mode == "judge" and valid and judge is not None:
            try:
                score = float(await judge(request, completion))
            except Exception as exc:  # an unjudged candidate ranks last, it still counts
                log.warning("judging candidate %d (%s) failed: %r", index, names[index], exc)
                score = None
        arrivals.put_nowait(_Arrival(index, completion, None, latency, score, valid, verdict))

    def candidate(item: _Arrival, arrival: int) -> Candidate:
        late = arrival == NEVER_ARRIVED
        error = item.error or ("arrived after the decision" if late else None)
        return Candidate(names[item.index], item.completion, error, item.latency_s, arrival,
                         weights[item.index], item.score, item.valid and not late, item.verdict)

    by_index: list[Candidate | None] = [None] * count
    arrived: list[Candidate] = []
    timed_out = False
    async with asyncio.TaskGroup() as group:
        tasks = [group.create_task(attempt(i), name=f"consensus-{i}") for i in range(count)]
        try:
            async with asyncio.timeout_at(started + timeout_s):
                while len(arrived) < count:
                    item = await arrivals.get()
                    by_index[item.index] = candidate(item, len(arrived))
                    arrived.append(by_index[item.index])  # type: ignore[arg-type]
                    pending = [weights[i] for i, c in enumerate(by_index) if c is None]
                    if pending and settled(strategy, arrived, pending):
                        break
        except TimeoutError:
            timed_out = True
        decided_s = loop.time() - started
        for task in tasks:
            task.cancel()  # the group awaits each cancellation, so their compute is freed
    while not arrivals.empty():  # finished between the decision and the cancellation
        item = arrivals.get_nowait()
        by_index[item.index] = candidate(item, NEVER_ARRIVED)
    missing = "no answer before the deadline" if timed_out else "cancelled: decided early"
    for i, c in enumerate(by_index):
        if c is None:
            by_index[i] = Candidate(names[i], None, missing, decided_s, NEVER_ARRIVED, weights[i])
    seen = {c.arrival for c in arrived}
    everyone = tuple(arrived) + tuple(
        c for c in by_index if c is not None and c.arrival not in seen)

    usable = sum(c.ok if strategy == "route" else c.valid for c in arrived)
    if timed_out and usable < quorum:
        raise ConsensusTimeout(
            f"{strategy}: {usable} of quorum {quorum} usable candidates after {timeout_s:g} s",
            everyone)
    decision = decide(strategy, arrived, _recorded_score)
    if decision.winner is None:
        raise ConsensusError(f"{strategy}: no usable candidate of {count}", everyone)
    reason = decision.reason
    if timed_out:
        reason += f"; deadline {timeout_s:g} s: decided on {len(arrived)} of {count}"
    early = not timed_out and len(arrived) < count
    log.debug("%s decided in %.3f s on %d of %d: %s", strategy, decided_s, len(arrived), count,
              reason)
    return replace(decision, candidates=everyone, early_stopped=early, reason=reason,
                   notes=plan.notes)
