"""The one seam between a request and whatever answers it: the `Source` protocol.

A source is anything a generation request can be sent to. Three kinds implement it:

    Source
    ├── swarm.engine.instance.Instance        one loaded model on this machine
    ├── network.federation.sources.RemoteSource   a peer node, asked over the signed channel
    └── network.petals.chain.SpanChain         layers spread over several nodes (--spans)

Consensus, route mode and the chooser (network/coordination/chooser.py) read only this protocol:
how busy a source is (`load`), how many more requests it takes before it refuses (`capacity`),
where it runs and how fast it is (`node_id`, `score`), and they ask it (`complete`, `stream`). The
`Answer` names who really answered, which differs from the source asked when a peer's failure was
retried elsewhere. Nothing in the consensus path tells the kinds apart.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from swarm.engine.backend import Completion, GenerationRequest, StreamEnd, TokenEvent, TopLogprob

LOCAL_NODE = "local"  # the node id of this machine's instances while it has no other


@dataclass(frozen=True)
class Answer:
    """A finished completion and the source that produced it (after any retry)."""

    completion: Completion
    answered_by: str


async def gather(events: AsyncIterator[TokenEvent | StreamEnd],
                 request: GenerationRequest) -> Completion:
    """A source's stream for `request`, whole: its text, token ids and logprobs (pieces and
    alternatives only when the request asks for them) and how it ended ("cancelled" when the
    stream stopped without saying)."""
    texts: list[str] = []
    ids: list[int] = []
    logprobs: list[float] = []
    pieces: list[bytes] = []
    top: list[tuple[TopLogprob, ...]] = []
    end = StreamEnd("cancelled", 0, 0)
    async for event in events:
        if isinstance(event, StreamEnd):
            end = event
            continue
        texts.append(event.text)
        if event.token_id >= 0:
            ids.append(event.token_id)
            logprobs.append(event.logprob)
            if request.params.logprobs:
                pieces.append(event.piece)
            if request.params.top_logprobs:
                top.append(event.top)
    return Completion("".join(texts), tuple(ids), tuple(logprobs), end.finish_reason,
                      end.prompt_tokens, tuple(pieces), tuple(top))


def serves(source: object, needs: frozenset[str]) -> bool:
    """True when `source` serves requests that need the features `needs`
    (`GenerationRequest.needs`): a peer lists what it serves in its heartbeat (`capabilities`);
    this machine's instances, which run this node's own code, serve everything."""
    offered = getattr(source, "capabilities", None)
    return offered is None or needs <= offered


@runtime_checkable
class Ranked(Protocol):
    """What the chooser reads of a source: who and where it is, how fast, how busy, how full."""

    @property
    def source_id(self) -> str:
        """A stable name for reports, e.g. "local/0" or a peer's node id."""
        ...

    @property
    def node_id(self) -> str:
        """The machine it runs on (candidates are spread over machines)."""
        ...

    @property
    def score(self) -> float:
        """Its machine's benchmark score (higher is faster; 0 when not measured)."""
        ...

    def load(self) -> float:
        """How busy it is now: 0 idle, 1 per running or waiting request on one slot (a peer
        reports its pool's busy fraction plus its queue)."""
        ...

    def capacity(self) -> int | None:
        """How many more requests it takes now before refusing; None when it does not say (a
        peer decides itself, and answers 429 when full)."""
        ...


@runtime_checkable
class Source(Ranked, Protocol):
    """A `Ranked` source that can be asked: the whole completion, or its tokens as they come."""

    async def complete(self, request: GenerationRequest) -> Answer:
        """Run `request` to the end; raises `RequestError`, `EngineError` or `PeerError`."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[TokenEvent | StreamEnd]:
        """The tokens of `request` as they are generated; the last item is a `StreamEnd`."""
        ...
