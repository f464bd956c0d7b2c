"""Layer spans in a running node: what `--spans` adds to a `--federation` node.

Every node advertises how many blocks fit its memory budget (heartbeat `span_blocks`) and serves
the span the plan gives it (`SpanSupervisor`). While it is the coordinator it also runs the
hivemind DHT bootstrap and plans the spans (`SpanLeader`, leader.py).
Generations go through the chain by this node's distributed client (`SpanClient`, started on
first use), asked through `SpanChain` (chain.py), the span chain as a `Source`. The loop below is
a task this object owns; `close()` stops it and every process.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from network.coordination.election import Role
from network.coordination.spans import blocks_that_fit
from network.membership.table import Peer, PeerState
from network.petals.client import SpanClient, SpanGenerationError
from network.petals.environment import SpanEnvironment, ensure_environment
from network.petals.leader import SpanLeader
from network.petals.model import block_bytes, span_model_folder
from network.petals.supervisor import SpanStatus, SpanSupervisor
from network.tasks import stop_tasks
from network.wire.paths import SPANS_PATH
from network.wire.spans import SpanPlan
from swarm.models.store import resolve_model
from swarm.node.config import SpansConfig

log = logging.getLogger(__name__)

SERVER_BASE_BYTES = 0.45 * 2**30  # a span server's own memory before its blocks (PSS, measured)
TICK_S = 1.0  # how often the plan is read and, on the coordinator, re-made
LOST_TICK_S = 0.25  # how often the peer table is read for span servers whose node died
# The coordinator's map goes missing for a moment while leadership settles (a solo leader
# claiming its first real term, a follower's fetched plan older than the term it just learnt):
# the span map last applied keeps serving that long, so a client never sees "no span map" then.
PLAN_HOLD_S = 15.0


class SpanService:
    """This node's part in serving layer spans; see the module doc."""

    def __init__(self, config: SpansConfig, *, cache_path: Path, model_path: str, node_id: str,
                 host: str, ram_bytes: int, coordinator: Any,
                 peers: Callable[[], Iterable[Peer]], bench_score: float = 0.0,
                 report: Callable[[str, float], None] | None = None) -> None:
        self.config, self.cache_path, self.model_path = config, cache_path, model_path
        self.node_id, self.host, self.ram_bytes = node_id, host, ram_bytes
        self.coordinator, self.peers, self.bench_score = coordinator, peers, bench_score
        self.report = report
        self.environment: SpanEnvironment | None = None
        self.model_dir: Path | None = None
        self.model_id = ""
        self.num_blocks = 0
        self.span_blocks = 0  # advertised in the heartbeat
        self.supervisor: SpanSupervisor | None = None
        self.leader = SpanLeader(self)
        self.client: SpanClient | None = None
        self._applied: SpanPlan | None = None
        self._applied_seen = -float("inf")  # monotonic time the coordinator last showed a map
        self._task: asyncio.Task[None] | None = None
        self._client_lock = asyncio.Lock()
        self._declared_gone: set[str] = set()

    async def start(self) -> None:
        """Build the span runtime if needed (progress bar), prepare the model, start the loop."""
        source = resolve_model(self.model_path or None)
        self.environment = await asyncio.to_thread(ensure_environment, self.cache_path,
                                                   self.report)
        self.model_dir = await asyncio.to_thread(span_model_folder, source, self.cache_path)
        self.model_id = source.model_id
        self.num_blocks, per_block = await asyncio.to_thread(block_bytes, self.model_dir)
        budget = (self.config.max_memory_gb * 2**30 if self.config.max_memory_gb > 0
                  else self.ram_bytes / 2)
        self.span_blocks = min(self.num_blocks,
                               blocks_that_fit(budget - SERVER_BASE_BYTES, per_block))
        log.info("spans: %d blocks of %s, this node may serve %d (%.2f GB budget)",
                 self.num_blocks, self.model_id, self.span_blocks, budget / 2**30)
        self.supervisor = SpanSupervisor(self.environment, self.model_dir, self.dht_prefix,
                                         host=self.host, throughput=max(self.bench_score, 1.0),
                                         threads=self.config.threads,
                                         log_dir=self.cache_path / "span-logs")
        (self.cache_path / "span-logs").mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="spans")

    @property
    def dht_prefix(self) -> str:
        """The DHT prefix the model's blocks are announced under."""
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in self.model_id)[:48] \
            or "model"

    async def move(self, host: str) -> None:
        """The node's API moved to `host` (a new LAN address): the span server and, on the
        coordinator, the DHT bootstrap listen on the old one, so both restart on `host` at the
        next tick (a moved bootstrap publishes new `initial_peers`; every node follows)."""
        if host == self.host:
            return
        log.info("spans: moving from %s to %s", self.host, host)
        self.host = host
        if self.supervisor is not None:
            self.supervisor.host = host
        await self.leader.stop_dht()  # `lead` starts the next one on `host`
        self._applied = None  # re-apply the plan: the server restarts on `host`

    def published(self) -> SpanPlan | None:
        """The span map this node publishes while it is the coordinator (cached; cheap)."""
        return self.leader.published if self.coordinator.role is Role.COORDINATOR else None

    def peer_id(self) -> str:
        """This node's span server's hivemind peer id while it serves (for the heartbeat)."""
        status = self.supervisor.status if self.supervisor else None
        return status.peer_id if status is not None and status.state == "serving" else ""

    async def _run(self) -> None:
        ticks = round(TICK_S / LOST_TICK_S)
        for tick in itertools.count():
            try:
                await self._declare_lost()
                if tick % ticks == 0:
                    if self.coordinator.role is Role.COORDINATOR:
                        await self.leader.lead()
                    await self._follow(self.coordinator.current_spans())
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep serving; the next tick tries again
                log.exception("spans: tick failed")
            await asyncio.sleep(LOST_TICK_S)

    async def _declare_lost(self) -> None:
        """The node's heartbeat says a node of the plan is dead: tell the client its span server
        is gone, so a generation in flight re-routes to a replica now (not after a timeout)."""
        plan, client = self._applied, self.client
        if plan is None or client is None or not client.alive:
            return
        dead = {p.node_id for p in self.peers() if p.state is PeerState.DEAD}
        lost = [a.peer_id for a in plan.assignments
                if a.node_id in dead and a.peer_id and a.peer_id not in self._declared_gone]
        if lost:
            self._declared_gone.update(lost)
            log.info("spans: span servers of dead nodes are gone: %s", ", ".join(lost))
            await client.mark_gone(lost)

    async def _follow(self, plan: SpanPlan | None) -> None:
        if plan is not None:
            self._applied_seen = time.monotonic()
        if plan is None or plan == self._applied or self.supervisor is None:
            return  # no fresh plan (keep serving what we serve) or nothing new
        mine = plan.span_of(self.node_id)
        if self._applied is None or self._applied.span_of(self.node_id) != mine or \
                self._applied.initial_peers != plan.initial_peers:
            await self.supervisor.apply(mine, plan.initial_peers)
        changed_peers = self._applied is None or \
            self._applied.initial_peers != plan.initial_peers
        self._applied = plan
        async with self._client_lock:
            if self.client is not None and changed_peers:
                await self.client.stop()
                self.client = None
            elif self.client is not None and self.client.alive:
                await self.client.refresh(plan.allowed_servers())

    async def _client_for(self, plan: SpanPlan) -> SpanClient:
        async with self._client_lock:
            if self.client is None or not self.client.alive:
                if self.client is not None:
                    await self.client.stop()
                assert self.environment is not None and self.model_dir is not None
                self.client = SpanClient(self.environment, self.model_dir, plan.initial_peers,
                                         plan.dht_prefix, allowed=plan.allowed_servers(),
                                         log_path=self.cache_path / "span-logs" / "client.log")
                try:
                    await self.client.start()
                except Exception:
                    self.client = None
                    raise
            return self.client

    def current_plan(self) -> SpanPlan | None:
        """The span map in force: the coordinator's, fresh, or while the coordinator shows none
        for up to PLAN_HOLD_S (leadership settling) the map this node last applied."""
        plan = self.coordinator.current_spans()
        if plan is None and time.monotonic() - self._applied_seen <= PLAN_HOLD_S:
            return self._applied
        return plan

    def unavailable(self) -> str | None:
        """Why a generation cannot go through the chain now, or None when it can."""
        plan = self.current_plan()
        if self.supervisor is None:
            return "layer spans are still starting on this node"
        if plan is None:
            return ("no span map yet: the coordinator has not planned spans (is every node "
                    "started with --spans?)")
        if plan.gaps:
            gaps = ", ".join(f"{a}:{b}" for a, b in plan.gaps)
            return (f"blocks {gaps} of {plan.model} have no server: the swarm's memory is too "
                    "small (raise --max-memory-gb or add nodes)")
        return None

    def speeds(self) -> dict[str, float]:
        """Node id -> benchmark score (0: not measured) of this node and every live peer."""
        scores = {self.node_id: self.bench_score}
        for peer in self.peers():
            if peer.state is PeerState.ALIVE and peer.heartbeat is not None:
                scores[peer.node_id] = peer.heartbeat.bench_score
        return scores

    async def generate(self, request: dict[str, Any]) -> AsyncGenerator[dict[str, Any]]:
        """Token events, then the final event, through the span chain of the plan in force
        (SpanGenerationError when it cannot serve; `SpanChain` asks `unavailable()` first)."""
        plan = self.current_plan()
        reason = self.unavailable()
        if plan is None or reason is not None:
            raise SpanGenerationError(reason or "no span map")
        client = await self._client_for(plan)
        async for event in client.generate(request):
            yield event

    def add_to(self, app: web.Application) -> None:
        """GET /v1/federation/spans: the span map and this node's span server (`view()`)."""
        async def spans_view(_request: web.Request) -> web.Response:
            return web.json_response(self.view())

        app.router.add_get(SPANS_PATH, spans_view)

    def view(self) -> dict[str, Any]:
        """The span map and this node's own span server, for /v1/federation/plan and peers."""
        plan = self.current_plan()
        status: SpanStatus | None = self.supervisor.status if self.supervisor else None
        return {"plan": plan.to_wire() if plan else None,
                "node": {"node_id": self.node_id, "span_blocks": self.span_blocks,
                         "server": None if status is None else {
                             "start": status.start, "end": status.end, "state": status.state,
                             "peer_id": status.peer_id, "restarts": status.restarts,
                             "error": status.error}}}

    async def close(self) -> None:
        """Stop the loop, then the client, the span server and the DHT together."""
        await stop_tasks(self._task)
        stops = [p.stop() for p in (self.client, self.leader.dht) if p is not None]
        if self.supervisor is not None:
            stops.append(self.supervisor.close())
        await asyncio.gather(*stops, return_exceptions=True)
