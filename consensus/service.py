"""Answers one API request by a consensus strategy over candidate sources: local instances and
peers alike, behind the `Source` seam (swarm/engine/source.py). Which sources take the candidates
is the chooser's decision, passed in as `choose` (network/coordination/chooser.spread)."""
from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from consensus.candidates import SCORE_MODES, STRATEGIES, Decision
from consensus.runner import Ask, ask_source, run_consensus
from consensus.validators import build_validator
from swarm.engine.backend import ChatMessage, Completion, GenerationRequest, SamplingParams
from swarm.engine.source import Source, serves

log = logging.getLogger(__name__)

Choose = Callable[[Sequence[Source], int], Sequence[Source]]

# The `swarm` request field, validated before anything runs.
SWARM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "strategy": {"enum": list(STRATEGIES)},
        "n": {"type": "integer", "minimum": 1},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
        "quorum": {"type": "integer", "minimum": 1},
        "score": {"enum": list(SCORE_MODES)},
        "regex": {"type": "string", "maxLength": 1000},
    },
}

_JUDGE_PROMPT = (
    "Rate how well the answer responds to the request, from 1 (wrong or useless) to 10 "
    "(correct and complete). Reply with the number only.\n\nRequest:\n{question}\n\n"
    "Answer:\n{answer}"
)


@dataclass(frozen=True)
class SwarmOptions:
    """How one request wants to be answered (request field over configured defaults)."""

    strategy: str
    n: int
    timeout_s: float
    quorum: int
    score: str
    regex: str | None


def options_from(fields: dict[str, Any], defaults: Any, max_n: int) -> SwarmOptions:
    """Merge a request's validated `swarm` field with `[consensus]` defaults; ValueError if bad."""
    n = int(fields.get("n", defaults.n))
    if n > max_n:
        raise ValueError(f"swarm.n must be at most {max_n}, got {n}")
    quorum = int(fields.get("quorum", 1))
    if quorum > n:
        raise ValueError(f"swarm.quorum ({quorum}) cannot exceed swarm.n ({n})")
    regex = fields.get("regex")
    if regex is not None:
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(f"swarm.regex is not a valid regular expression: {exc}") from None
    return SwarmOptions(strategy=fields.get("strategy", defaults.strategy), n=n,
                        timeout_s=float(fields.get("timeout_s", defaults.timeout_s)),
                        quorum=quorum, score=fields.get("score", defaults.score), regex=regex)


def _question(request: GenerationRequest) -> str:
    if request.prompt is not None:
        return request.prompt
    return "\n".join(m.content for m in request.messages if m.role == "user")


def make_judge(source: Callable[[], Source], ask: Ask) -> Callable[
        [GenerationRequest, Completion], Awaitable[float]]:
    """A judge that asks `source()` to rate a candidate 1-10 (greedy); unparsable ratings raise."""

    async def judge(request: GenerationRequest, completion: Completion) -> float:
        prompt = _JUDGE_PROMPT.format(question=_question(request)[:4000],
                                      answer=completion.text[:4000])
        rating = (await ask(source(), GenerationRequest(
            messages=(ChatMessage("user", prompt),),
            params=SamplingParams(max_tokens=4, temperature=0.0)))).completion
        match = re.search(r"\d+", rating.text)
        if match is None:
            raise ValueError(f"the judge gave no rating: {rating.text!r}")
        return float(min(max(int(match.group()), 1), 10))

    return judge


class ConsensusService:
    """Runs a strategy over the sources `choose` picks among `sources()` and explains the
    outcome; `ask` asks one source (the federation's retries a failed peer elsewhere)."""

    def __init__(self, sources: Callable[[], Sequence[Source]], choose: Choose,
                 ask: Ask = ask_source,
                 weight_of: Callable[[Source], float] | None = None) -> None:
        self._sources = sources
        self._choose = choose
        self._ask = ask
        self._weight_of = weight_of
        self._judge = make_judge(lambda: self._chosen(1)[0], ask)

    async def decide(self, request: GenerationRequest, options: SwarmOptions,
                     response_format: dict[str, Any] | None) -> Decision:
        """Gather candidates and return the Decision; raises ConsensusError / ConsensusTimeout."""
        validator = build_validator(response_format, regex=options.regex,
                                    require_finished=options.strategy == "first_valid",
                                    tools=request.tools)
        sources = self._chosen(options.n, request.needs)
        judging = options.strategy == "best_of_n" and options.score == "judge"
        decision = await run_consensus(
            options.strategy, sources, request, self._ask, n=options.n,
            timeout_s=options.timeout_s, quorum=options.quorum, validator=validator,
            weight_of=self._weight_of, judge=self._judge if judging else None,
            score_mode="judge" if judging else "logprob")
        log.info("%s over %d candidates: winner %s%s", options.strategy,
                 len(decision.candidates), decision.winner.source if decision.winner else None,
                 " (early stop)" if decision.early_stopped else "")
        return decision

    def saturated(self) -> bool:
        """True when no source can take a candidate now, so a fan-out would only queue behind
        full queues: every source says it has no room (`capacity` 0). A source that does not
        say (a peer: it answers 429 itself, and the ask retries elsewhere) counts as room."""
        sources = list(self._sources())
        return bool(sources) and all(s.capacity() == 0 for s in sources)

    def _chosen(self, n: int, needs: frozenset[str] = frozenset()) -> list[Source]:
        """The `n` sources to ask, as the chooser spreads them over those that serve `needs`."""
        return list(self._choose([s for s in self._sources() if serves(s, needs)], n))
