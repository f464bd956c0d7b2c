"""The records of a consensus run: candidates, vote groups, the decision, and its error."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from consensus.normalize import normalize_answer
from swarm.engine.backend import Completion
from swarm.errors import LocalSwarmError

NEVER_ARRIVED = -1
# The strategy names a request or `[consensus] strategy` may choose (in the order the CLI, the
# config check and the OpenAPI document list them), and how best_of_n scores its candidates.
STRATEGIES = ("route", "best_of_n", "weighted_vote", "first_valid")
ScoreMode = Literal["logprob", "judge"]
SCORE_MODES: tuple[str, ...] = get_args(ScoreMode)


@dataclass(frozen=True)
class Candidate:
    """One answer or failure from one source; `arrival` is its finishing order (-1: never)."""

    source: str
    completion: Completion | None
    error: str | None
    latency_s: float
    arrival: int
    weight: float = 1.0
    score: float | None = None
    valid: bool = False
    verdict: str = ""

    @property
    def ok(self) -> bool:
        """True when the generation succeeded (valid or not)."""
        return self.completion is not None and self.error is None

    @property
    def mean_logprob(self) -> float:
        """The completion's mean token log-probability; -inf without a completion."""
        return self.completion.mean_logprob if self.completion is not None else -math.inf


@dataclass(frozen=True)
class VoteGroup:
    """Valid candidates whose answers normalise to the same group; `members` are arrival indices."""

    kind: str
    answer: str
    weight: float
    members: tuple[int, ...]


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass(frozen=True)
class Decision:
    """What a strategy chose and why; `groups` (heaviest first) only for weighted_vote."""

    strategy: str
    winner: Candidate | None
    candidates: tuple[Candidate, ...]
    groups: tuple[VoteGroup, ...] = ()
    early_stopped: bool = False
    reason: str = ""
    notes: tuple[str, ...] = ()

    @property
    def completion(self) -> Completion | None:
        """The winning completion, if any."""
        return self.winner.completion if self.winner is not None else None

    def votes_of(self, candidate: Candidate) -> float | None:
        """The total weight of the vote group `candidate` belongs to, if it voted."""
        for group in self.groups:
            if candidate.arrival in group.members:
                return group.weight
        return None

    def voted_on(self) -> str | None:
        """What the outcome was decided on: the kind of answer (`tool_call`, `json`, `letter`,
        `number` or `text`, consensus/normalize.py) of the winning group, or of the winner."""
        if self.groups:
            return self.groups[0].kind
        if self.winner is None or self.winner.completion is None:
            return None
        return normalize_answer(self.winner.completion.text).kind

    def to_dict(self) -> dict[str, Any]:
        """The JSON `swarm` object of an API response."""
        return {
            "strategy": self.strategy,
            "voted_on": self.voted_on(),
            "winner": self.winner.source if self.winner is not None else None,
            "winner_index": self.candidates.index(self.winner) if self.winner is not None else None,
            "candidates": [
                {
                    "source": c.source,
                    "latency_ms": round(c.latency_s * 1000.0, 1),
                    "tokens": c.completion.completion_tokens if c.completion is not None else 0,
                    "kind": normalize_answer(c.completion.text).kind
                    if c.completion is not None else None,
                    "score": _finite(c.score),
                    "votes": self.votes_of(c) if c.arrival != NEVER_ARRIVED else None,
                    "valid": c.valid,
                    "error": c.error if c.error is not None
                    else (None if c.valid else f"invalid: {c.verdict}"),
                }
                for c in self.candidates
            ],
            "early_stop": self.early_stopped,
            "notes": list(self.notes),
        }


def failure_reason(candidate: Candidate) -> str:
    """One line saying why `candidate` could not win."""
    if candidate.error is not None:
        return f"{candidate.source}: {candidate.error}"
    return f"{candidate.source}: invalid: {candidate.verdict}"


class ConsensusError(LocalSwarmError, RuntimeError):
    """No candidate gave a usable answer (a backend or peer fault); `reasons` has one line each."""

    def __init__(self, message: str, candidates: Sequence[Candidate]) -> None:
        self.candidates = tuple(candidates)
        self.reasons = [failure_reason(c) for c in self.candidates]
        super().__init__(f"{message}: " + "; ".join(self.reasons) if self.reasons else message)


class ConsensusTimeout(ConsensusError, TimeoutError):
    """The deadline passed before a quorum of valid candidates arrived."""
