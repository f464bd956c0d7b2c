"""Peers as consensus sources: the plan that spreads n candidates, and the ask that retries."""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from consensus.candidates import Source
from network.federation.client import FederationClient, PeerError
from network.membership.table import Peer
from network.wire.messages import Heartbeat
from swarm.engine.backend import Completion, GenerationRequest
from swarm.engine.pool import Instance, InstancePool, PoolBusyError

log = logging.getLogger(__name__)

VOTE_CAPABILITY = "vote"


def split_address(address: str, default_port: int) -> tuple[str, int]:
    """`(host, port)` from "host", "host:port", "[v6]:port" or a bare IPv6 literal."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else default_port
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port) if port.isdigit() else default_port
    return address, default_port


def peer_endpoint(peer: Peer, heartbeat: Heartbeat) -> tuple[str, int]:
    """(host, API port) to reach `peer`: its table address, with the port its heartbeat names."""
    host, port = split_address(peer.address, heartbeat.api_port)
    return host, heartbeat.api_port or port


@dataclass(frozen=True)
class RemoteSource:
    """A peer node as a candidate source, as of its last heartbeat."""

    node_id: str
    address: str
    api_port: int
    load: float = 0.0
    queue_depth: int = 0
    bench_score: float = 0.0

    @property
    def source_id(self) -> str:
        """The peer's node id (what consensus reports show)."""
        return f"{self.node_id}"

    @property
    def active(self) -> float:
        """Busy-ness on `Instance.active`'s scale: 0 idle, 1 every instance busy, +1 per queued."""
        return self.load + self.queue_depth

    @classmethod
    def from_peer(cls, peer: Peer) -> RemoteSource | None:
        """The source for a routable peer that votes; None for any other peer."""
        beat = peer.heartbeat
        if not peer.routable or beat is None or VOTE_CAPABILITY not in beat.capabilities:
            return None
        host, port = peer_endpoint(peer, beat)
        return cls(node_id=peer.node_id, address=host, api_port=port, load=beat.load,
                   queue_depth=beat.queue_depth, bench_score=beat.bench_score)


@dataclass(frozen=True)
class SourcedCompletion(Completion):
    """A completion that names the source that finally produced it (after any retry)."""

    answered_by: str = ""


def _rank(sources: Sequence[Source], speed: Callable[[Source], float]) -> list[tuple[Source, int]]:
    """Each source with its position inside its node (least busy, fastest, id first)."""
    def key(s: Source) -> tuple[float, float, str]:
        return (float(getattr(s, "active", 0)), -speed(s), s.source_id)

    ordered = sorted(sources, key=key)
    return [(s, i) for i, s in enumerate(ordered)]


def plan_sources(local: Sequence[Instance], remote: Sequence[RemoteSource], n: int, *,
                 local_score: float = 0.0) -> list[Source]:
    """Exactly `n` sources (empty if there are none), each used once before any is used twice.

    Order: least busy first (`active`), then spread over nodes (every node's first source before
    any node's second), then fastest (`bench_score`; local instances count `local_score`), then
    `source_id`. Pure and deterministic; the input order does not matter.
    """
    def speed(s: Source) -> float:
        return s.bench_score if isinstance(s, RemoteSource) else local_score

    ranked = _rank(list(local), speed)
    by_node: dict[str, list[RemoteSource]] = {}
    for source in remote:
        by_node.setdefault(source.node_id, []).append(source)
    for same_node in by_node.values():
        ranked += _rank(same_node, speed)
    ranked.sort(key=lambda item: (float(getattr(item[0], "active", 0)), item[1],
                                  -speed(item[0]), item[0].source_id))
    order = [source for source, _position in ranked]
    return [order[i % len(order)] for i in range(n)] if order else []


class FederatedAsk:
    """`(source, request) -> Completion` for local instances and peers; a failed peer is retried
    once, after `backoff_s`, on a local instance with room, else on another peer."""

    def __init__(self, pool: InstancePool, client: FederationClient, *,
                 remotes: Callable[[], Sequence[RemoteSource]] = tuple,
                 vote_timeout_s: float = 600.0, backoff_s: float = 0.1,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 new_id: Callable[[], str] | None = None) -> None:
        self.pool = pool
        self.client = client
        self.remotes = remotes
        self.vote_timeout_s = vote_timeout_s
        self.backoff_s = backoff_s
        self._sleep = sleep
        prefix = secrets.token_hex(4)
        counter = itertools.count()
        self._new_id = new_id or (lambda: f"{prefix}-{next(counter)}")
        self.retries = 0

    async def __call__(self, source: Source, request: GenerationRequest) -> Completion:
        """Ask `source`; a `PeerError` is retried once elsewhere, then re-raised if that fails."""
        if not isinstance(source, RemoteSource):
            return await self._ask(source, request)
        try:
            return await self._ask(source, request)
        except PeerError as exc:
            failure = exc
        await self._sleep(self.backoff_s)
        fallback = self._fallback(source)
        if fallback is None:
            raise failure
        self.retries += 1
        log.info("%s; retrying on %s", failure, fallback.source_id)
        try:
            return await self._ask(fallback, request)
        except Exception as exc:
            raise PeerError(f"{failure}; retry on {fallback.source_id} failed: "
                            f"{type(exc).__name__}: {exc}", node_id=source.node_id) from exc

    async def _ask(self, source: Source, request: GenerationRequest) -> SourcedCompletion:
        if isinstance(source, RemoteSource):
            completion = await self.client.vote(source.address, source.api_port, source.node_id,
                                                request, self._new_id(), self.vote_timeout_s)
        else:
            assert isinstance(source, Instance), f"unknown source {source!r}"
            completion = await self.pool.complete(request, source)
        fields = {f.name: getattr(completion, f.name) for f in dataclasses.fields(Completion)}
        return SourcedCompletion(**fields, answered_by=source.source_id)

    def _fallback(self, failed: RemoteSource) -> Source | None:
        """A local instance with room (least busy), else the best other peer, else None."""
        try:
            return self.pool.pick()
        except PoolBusyError:
            pass
        others = [r for r in self.remotes() if r.node_id != failed.node_id]
        plan = plan_sources((), others, 1)
        return plan[0] if plan else None
