"""The span chain as a `Source` (swarm/engine/source.py), the third kind beside this node's
instances and its peers: a generation walks the blocks over the span servers the coordinator's
plan names, driven by this node's distributed client (`SpanService`, network/petals/service.py).

It is asked, streamed, queued and refused exactly like an `Instance`, so route mode's serving
code answers `"swarm": {"strategy": "spans"}` with it and the consensus strategies take it as one
more candidate (through `SwarmSources`, network/federation/sources.py):

- `node_id` is this node (the entry node: its client drives the chain and the answer comes from
  here), so the chooser spreads candidates over this node's instances and the chain alike;
- `score` is the chain's single-stream speed in benchmark units (`chain_speed`), 0 while the
  swarm's nodes are not benchmarked, like an unmeasured instance;
- `load()` counts its generations running or waiting (the client runs one at a time, in order),
  `capacity()` how many more it queues (`[model] queue_depth`, as an instance does);
- a chain that fails mid-generation (a span server gone with no replica, no route) raises
  `SpanChainError`, a `PeerError`: consensus retries the candidate elsewhere, and a direct spans
  request gets a 502 naming the failure;
- it cannot enforce a request's constraint (`response_format`, `swarm.regex`, or the tool-call
  grammar of a request with `tools`: the span runtime samples without llguidance's token mask),
  so it refuses one at once with `SpanChainError` and consensus hands that candidate to an
  instance (a spans request with one is a 400 earlier, in the API); it lists no features
  (`capabilities`, swarm/engine/source.py), so consensus does not pick it for a tools request;
  log-probabilities, token bytes and top alternatives come from the span worker.
"""
from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any, Protocol

from network.petals.client import SpanGenerationError
from network.wire.spans import SpanPlan
from swarm.engine.backend import (
    FinishReason,
    GenerationRequest,
    StreamEnd,
    TokenEvent,
    TopLogprob,
)
from swarm.engine.decoding import StopMatcher
from swarm.engine.source import Answer, gather
from swarm.errors import PeerError, PoolBusyError, RequestError

log = logging.getLogger(__name__)

SOURCE_ID = "spans"  # how the chain shows in consensus reports (instances: local/N, peers: ids)
NO_CONSTRAINTS = ("response_format, swarm.regex and tools are not enforced through layer spans "
                  "(the span runtime samples without a token mask)")


class SpanChainError(PeerError):
    """A generation through the span chain failed: a span server vanished with no replica to
    take over, or the client found no route through the plan's servers."""


class ChainDriver(Protocol):
    """What the chain needs from `SpanService`."""

    node_id: str

    def unavailable(self) -> str | None:
        """Why the chain cannot serve now (no span map, blocks without a server), or None."""
        ...

    def speeds(self) -> Mapping[str, float]:
        """Node id -> benchmark score of every node that may serve blocks."""
        ...

    def current_plan(self) -> SpanPlan | None:
        """The span map in force."""
        ...

    def generate(self, request: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """The span worker's events for one generation (runtime/worker.py)."""
        ...


def chain_speed(plan: SpanPlan, speeds: Mapping[str, float]) -> float:
    """A single stream's speed through `plan`, in the units of `speeds` (a whole-model run's
    benchmark score): each block runs on the fastest node serving it, one after another, so a
    token takes the sum of the blocks' times. 0 when a block has no server or a speed is 0."""
    total = 0.0
    for block in range(plan.num_blocks):
        best = max((speeds.get(a.node_id, 0.0) for a in plan.assignments
                    if a.start <= block < a.end), default=0.0)
        if best <= 0:
            return 0.0
        total += 1.0 / best
    return plan.num_blocks / total if total else 0.0


def worker_request(request: GenerationRequest) -> dict[str, Any]:
    """The span worker's generate request for a generation request."""
    params = request.params
    message: dict[str, Any] = {"max_tokens": params.max_tokens, "temperature": params.temperature,
                               "top_p": params.top_p, "seed": params.seed,
                               "logprobs": params.logprobs, "top_logprobs": params.top_logprobs}
    if request.prompt is not None:
        message["prompt"] = request.prompt
    else:
        message["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
    return message


def token_event(event: dict[str, Any], text: str) -> TokenEvent:
    """A worker's token line as a `TokenEvent` whose text delta is `text` (after stop strings)."""
    return TokenEvent(text, int(event["token"]), float(event.get("logprob", 0.0)),
                      bytes.fromhex(event.get("piece", "")),
                      tuple(TopLogprob(bytes.fromhex(piece), float(logprob))
                            for piece, logprob in event.get("top", ())))


class SpanChain:
    """The span chain of this node's plan as a `Source`; see the module doc."""

    capabilities: frozenset[str] = frozenset()  # no tools: see the module doc

    def __init__(self, driver: ChainDriver, queue_depth: int = 8) -> None:
        self.driver = driver
        self.slots = queue_depth + 1
        self.active = 0
        self.served = 0

    @property
    def source_id(self) -> str:
        """"spans"."""
        return SOURCE_ID

    @property
    def node_id(self) -> str:
        """The entry node: this one."""
        return self.driver.node_id

    @property
    def score(self) -> float:
        """Single-stream speed through the plan in force (benchmark units; 0 unmeasured)."""
        plan = self.driver.current_plan()
        return chain_speed(plan, self.driver.speeds()) if plan is not None else 0.0

    def load(self) -> float:
        """Generations running or waiting on the chain."""
        return float(self.active)

    def capacity(self) -> int:
        """Generations it still takes before refusing with `PoolBusyError`."""
        return max(self.slots - self.active, 0)

    def unavailable(self) -> str | None:
        """Why it cannot serve now, or None."""
        return self.driver.unavailable()

    async def stream(self, request: GenerationRequest) -> AsyncGenerator[TokenEvent | StreamEnd]:
        """The tokens of one generation through the chain; stop strings applied; the last
        item is a `StreamEnd`. RequestError (503) while the chain cannot serve."""
        if self.active >= self.slots:
            raise PoolBusyError(retry_after_s=max(1, self.active - self.slots + 1))
        if request.decode_constraint is not None:
            raise SpanChainError(NO_CONSTRAINTS)
        reason = self.unavailable()
        if reason is not None:
            raise RequestError(reason, status=503, code="spans_unavailable",
                               type_="server_error", headers={"Retry-After": "5"})
        self.active += 1
        stops = StopMatcher(request.params.stop)
        count = prompt_tokens = 0
        try:
            async with aclosing(self.driver.generate(worker_request(request))) as events:
                async for event in events:
                    if event.get("done"):
                        break
                    count += 1
                    prompt_tokens = int(event.get("prompt_tokens", prompt_tokens))
                    text = stops.feed(str(event["text"]))
                    token = token_event(event, text)
                    if stops.stopped:  # leaving the loop closes the generation: the worker stops
                        if text:
                            yield token
                        yield StreamEnd("stop", prompt_tokens, count)
                        return
                    yield token
                else:
                    raise SpanChainError("the span client ended a generation without its end")
        except SpanGenerationError as exc:
            raise SpanChainError(str(exc)) from exc
        finally:
            self.active -= 1
            self.served += 1
        tail = stops.flush()
        if tail:
            yield TokenEvent(tail, -1, 0.0)
        finish: FinishReason = "length" if count >= request.params.max_tokens else \
            "cancelled" if event.get("finish_reason") == "cancelled" else "stop"
        yield StreamEnd(finish, int(event.get("prompt_tokens", prompt_tokens)), count)

    async def complete(self, request: GenerationRequest) -> Answer:
        """One generation through the chain, whole."""
        async with aclosing(self.stream(request)) as events:
            return Answer(await gather(events, request), SOURCE_ID)
