"""What one OpenAI or Ollama request did (strategy, report, tokens), filled in while it is served
and recorded in the dashboard's ledger after."""
from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from consensus.candidates import Decision
from network.api.dashboard.ledger import Ledger, RequestRecord, votes_of
from network.api.errors import as_request_error


@dataclasses.dataclass
class Trace:
    """What one request did, filled in while it is served and recorded in the ledger after:
    its strategy, the `swarm` report it answered with, its token counts."""

    api: str
    endpoint: str
    id: str = ""
    strategy: str = "route"
    model: str = ""
    report: dict[str, Any] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    forwarded_to: str | None = None
    failure: tuple[int, str] | None = None  # an error sent after the 200 (in the stream)
    at: float = dataclasses.field(default_factory=time.time)
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def decided(self, decision: Decision) -> None:
        """A consensus outcome: its report and the winner's tokens."""
        self.report = decision.to_dict()
        if decision.completion is not None:
            self.prompt_tokens = decision.completion.prompt_tokens
            self.completion_tokens = decision.completion.completion_tokens

    def fail(self, exc: BaseException) -> None:
        """A failure told to the client inside a stream that had already answered 200."""
        known = as_request_error(exc)
        self.failure = (known.status, str(known)) if known else (500, "internal error")

    def record(self, ledger: Ledger | None, status: int, error: str | None = None) -> None:
        """Add this request to `ledger` (nothing without one)."""
        if ledger is None:
            return
        report = self.report or {}
        votes = votes_of(report, ledger.node_id)
        winner = next((v.node for v in votes if v.winner), None)
        ledger.record(RequestRecord(
            id=self.id, at=self.at, api=self.api, endpoint=self.endpoint, strategy=self.strategy,
            model=self.model, status=status,
            duration_ms=round((time.perf_counter() - self.started) * 1000.0, 1),
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
            winner=winner or self.forwarded_to, candidates=votes,
            error=None if error is None else error[:500], forwarded_to=self.forwarded_to,
            early_stop=bool(report.get("early_stop"))))

    @asynccontextmanager
    async def recorded(self, ledger: Ledger | None) -> AsyncIterator[Trace]:
        """Record the request once served, with the status its failure maps to."""
        try:
            yield self
        except (asyncio.CancelledError, ConnectionResetError):
            self.record(ledger, 499, "the client went away")
            raise
        except Exception as exc:
            known = as_request_error(exc)
            self.record(ledger, known.status if known else 500,
                        str(known) if known else "internal error")
            raise
        else:
            self.record(ledger, *(self.failure or (200, None)))
