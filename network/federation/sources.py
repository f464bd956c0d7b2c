"""Peers as sources: `RemoteSource` (a peer behind the `Source` seam), the node's view of every
source it may use now (`SwarmSources`), and the ask that retries a failed peer elsewhere."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from network.coordination.chooser import fallback, honour_plan
from network.membership.records import Peer
from network.wire.address import Address
from swarm.engine.backend import Completion, GenerationRequest, StreamEnd, TokenEvent
from swarm.engine.pool import Instance, InstancePool
from swarm.engine.source import Answer, Source
from swarm.errors import PeerError

log = logging.getLogger(__name__)

VOTE_TIMEOUT_S = 600.0  # a peer's candidate may take as long as a local one


class Voter(Protocol):
    """What a `RemoteSource` needs from `FederationClient`."""

    async def vote(self, peer_address: str, api_port: int, node_id: str,
                   request: GenerationRequest, request_id: str,
                   timeout_s: float) -> Completion: ...

    def new_request_id(self) -> str: ...


@dataclass(frozen=True)
class RemoteSource:
    """A peer node as a `Source`, as of its last heartbeat: asked for one candidate at a time
    over the signed vote route. It never says its capacity (None): a full peer answers 429."""

    node_id: str
    endpoint: Address
    voter: Voter = field(compare=False, repr=False)
    busy: float = 0.0  # its pool's busy fraction, 0..1
    queue_depth: int = 0
    score: float = 0.0
    timeout_s: float = VOTE_TIMEOUT_S
    capabilities: frozenset[str] = frozenset()  # what it serves, from its heartbeat

    @property
    def source_id(self) -> str:
        """The peer's node id (what consensus reports show)."""
        return self.node_id

    def load(self) -> float:
        """Busy-ness on an instance's scale: 0 idle, 1 every instance busy, +1 per queued."""
        return self.busy + self.queue_depth

    def capacity(self) -> None:
        """Unknown here: the peer refuses (429) when full, and the ask retries elsewhere."""
        return None

    async def complete(self, request: GenerationRequest) -> Answer:
        """One candidate from the peer; on cancellation or timeout the peer is told to stop."""
        completion = await self.voter.vote(self.endpoint.host, self.endpoint.port, self.node_id,
                                           request, self.voter.new_request_id(), self.timeout_s)
        return Answer(completion, self.node_id)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[TokenEvent | StreamEnd]:
        """The peer's candidate as one event and the end: votes come back whole."""
        completion = (await self.complete(request)).completion
        if completion.text:
            yield TokenEvent(completion.text, -1, sum(completion.logprobs))
        yield StreamEnd(completion.finish_reason, completion.prompt_tokens,
                        completion.completion_tokens)

    @classmethod
    def from_peer(cls, peer: Peer, voter: Voter) -> RemoteSource | None:
        """The source for a routable peer that votes; None for any other peer."""
        beat = peer.heartbeat
        if not peer.routable or beat is None or not beat.votes:
            return None
        return cls(node_id=peer.node_id, endpoint=peer.endpoint, voter=voter, busy=beat.load,
                   queue_depth=beat.queue_depth, score=beat.bench_score,
                   capabilities=frozenset(beat.capabilities))


class SwarmSources:
    """Every source this node may use now: its own instances, and the live voting peers that
    the coordinator's plan picks (all of them while there is no plan). Route and consensus both
    take their sources from here, so both honour the plan."""

    def __init__(self, pool: InstancePool, peers: Callable[[], Sequence[RemoteSource]] = tuple,
                 plan: Callable[[], Sequence[str] | None] = lambda: None) -> None:
        self.pool = pool
        self._peers = peers
        self._plan = plan

    def local(self) -> list[Instance]:
        """This node's instances."""
        return list(self.pool.instances)

    def remote(self, needs: frozenset[str] = frozenset()) -> list[RemoteSource]:
        """The peers a request (that needs the features `needs`) may use now."""
        return [r for r in honour_plan(self._peers(), self._plan(), self.pool.node_id)
                if needs <= r.capabilities]

    def __call__(self) -> list[Source]:
        """Every source a request may use now, this node's first."""
        return [*self.local(), *self.remote()]


class FederatedAsk:
    """`(source, request) -> Answer` for consensus: a source that fails with `PeerError` is
    retried once, after `backoff_s`, on a local instance with room, else on another peer."""

    def __init__(self, sources: SwarmSources, *, backoff_s: float = 0.1,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self.sources = sources
        self.backoff_s = backoff_s
        self._sleep = sleep
        self.retries = 0

    async def __call__(self, source: Source, request: GenerationRequest) -> Answer:
        """Ask `source`; a `PeerError` is retried once elsewhere, then re-raised if that fails."""
        try:
            return await source.complete(request)
        except PeerError as exc:
            failure = exc
        await self._sleep(self.backoff_s)
        other = fallback(self.sources.local(), self.sources.remote(request.needs), source.node_id)
        if other is None:
            raise failure
        self.retries += 1
        log.info("%s; retrying on %s", failure, other.source_id)
        try:
            return await other.complete(request)
        except Exception as exc:
            raise PeerError(f"{failure}; retry on {other.source_id} failed: "
                            f"{type(exc).__name__}: {exc}", node_id=source.node_id) from exc
