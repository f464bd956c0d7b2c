"""What this node answered: the last requests (strategy, candidates, how each voted) and the
usage they add up to, tokens by strategy and by the node that generated them.

The API routes (OpenAI and Ollama) record one `RequestRecord` per request they finish or
refuse; the dashboard, `/v1/federation/stats` and `main.py status` read it. Records are built from
the `swarm` report every response already carries (consensus/candidates.py `Decision.to_dict`), so
the page shows exactly what the client was told.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

LOCAL_PREFIX = "local/"  # the source id of this node's own instances ("local/0", ...)
KEEP_REQUESTS = 50  # requests the history keeps (the page shows them all)


@dataclass(frozen=True)
class Vote:
    """One candidate of a request: where it ran, what it cost and how it fared."""

    source: str  # "local/0" or a peer's node id, as the swarm report names it
    node: str  # the node that generated it
    tokens: int
    latency_ms: float
    votes: float | None = None  # weight of its vote group (weighted_vote)
    score: float | None = None  # its score (best_of_n)
    valid: bool = True
    error: str | None = None
    winner: bool = False


@dataclass(frozen=True)
class RequestRecord:
    """One request this node answered (or refused), as the dashboard lists it."""

    id: str
    at: float  # wall clock, Unix seconds
    api: str  # "openai" or "ollama"
    endpoint: str  # the path asked
    strategy: str
    model: str
    status: int  # the HTTP status answered
    duration_ms: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    winner: str | None = None  # the winning candidate's node
    candidates: tuple[Vote, ...] = ()
    error: str | None = None
    forwarded_to: str | None = None  # a route request served whole by a peer
    early_stop: bool = False

    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON types."""
        return asdict(self)


def votes_of(report: Mapping[str, Any], node_id: str) -> tuple[Vote, ...]:
    """The candidates of a `swarm` report, each with the node that generated it (`node_id` for
    this node's own instances)."""
    winner = report.get("winner_index")
    out = []
    for i, c in enumerate(report.get("candidates") or ()):
        source = str(c.get("source", "?"))
        out.append(Vote(source=source, node=node_id if source.startswith(LOCAL_PREFIX) else source,
                        tokens=int(c.get("tokens") or 0),
                        latency_ms=float(c.get("latency_ms") or 0.0),
                        votes=c.get("votes"), score=c.get("score"),
                        valid=bool(c.get("valid", True)), error=c.get("error"),
                        winner=(i == winner) if winner is not None
                        else source == report.get("winner")))
    return tuple(out)


@dataclass
class _Tally:
    requests: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class _NodeTally:
    candidates: int = 0
    wins: int = 0
    tokens: int = 0


@dataclass
class Ledger:
    """The last `keep` requests and the usage of every request since start; `on_record` is
    called after each record (the dashboard's change counter)."""

    node_id: str
    keep: int = KEEP_REQUESTS
    on_record: Callable[[], None] | None = None
    _recent: deque[RequestRecord] = field(init=False)
    _by_strategy: dict[str, _Tally] = field(default_factory=dict, init=False)
    _by_node: dict[str, _NodeTally] = field(default_factory=dict, init=False)
    _by_api: dict[str, _Tally] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._recent = deque(maxlen=self.keep)

    def record(self, record: RequestRecord) -> None:
        """Keep `record` and add it to the usage."""
        self._recent.append(record)
        for tally in (self._by_strategy.setdefault(record.strategy, _Tally()),
                      self._by_api.setdefault(record.api, _Tally())):
            tally.requests += 1
            tally.errors += record.status >= 400
            tally.prompt_tokens += record.prompt_tokens
            tally.completion_tokens += record.completion_tokens
        for vote in record.candidates:
            node = self._by_node.setdefault(vote.node, _NodeTally())
            node.candidates += 1
            node.wins += vote.winner
            node.tokens += vote.tokens
        if record.forwarded_to is not None:
            self._by_node.setdefault(record.forwarded_to, _NodeTally()).wins += 1
        if self.on_record is not None:
            self.on_record()

    def recent(self) -> list[dict[str, Any]]:
        """The kept requests, newest first, as JSON."""
        return [r.to_json() for r in reversed(self._recent)]

    def usage(self) -> dict[str, Any]:
        """Requests and tokens by strategy and by API, and candidates, wins and tokens by the
        node that generated them, for every request this node answered since it started."""
        total = _Tally()
        for tally in self._by_strategy.values():
            total.requests += tally.requests
            total.errors += tally.errors
            total.prompt_tokens += tally.prompt_tokens
            total.completion_tokens += tally.completion_tokens
        return {"node_id": self.node_id, "total": asdict(total),
                "by_strategy": {k: asdict(v) for k, v in sorted(self._by_strategy.items())},
                "by_api": {k: asdict(v) for k, v in sorted(self._by_api.items())},
                "by_node": {k: asdict(v) for k, v in sorted(self._by_node.items())}}
