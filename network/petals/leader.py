"""The coordinator's part in layer spans: the hivemind DHT bootstrap every node joins and the span
map (`plan_spans`) published in its swarm plan with the DHT's multiaddrs as `initial_peers`;
re-planned when a member with span capacity comes or goes. `SpanService` (service.py) runs it at
each tick while this node is the coordinator; the DHT is stopped by the service's `close()`.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from network.coordination.spans import Span, SpanNode, plan_spans
from network.membership.table import PeerState
from network.petals.servers import DhtBootstrap
from network.wire.spans import SpanAssignment, SpanPlan

if TYPE_CHECKING:
    from network.petals.service import SpanService

log = logging.getLogger(__name__)

# A suspect peer (a missed probe, a slow heartbeat under load) keeps its span: re-planning moves
# blocks and restarts span servers, so only a peer declared DEAD (or gone) loses its place.
PLANNED_STATES = frozenset({PeerState.ALIVE, PeerState.SUSPECT})


class SpanLeader:
    """The DHT bootstrap and the span map this node publishes while it leads; see the module doc."""

    def __init__(self, service: SpanService) -> None:
        self.service = service
        self.dht: DhtBootstrap | None = None
        self.published: SpanPlan | None = None
        self._planned_for: tuple[tuple[str, float, int], ...] = ()
        self._layout: tuple[tuple[str, int, int], ...] = ()
        # Node id -> the span server id it reported when the plan moved its span: that server
        # serves the old blocks, so the plan names nobody for it until the node reports another.
        self._old_servers: dict[str, str] = {}
        self._gaps: tuple[tuple[int, int], ...] = ()
        self._bottleneck = 0.0

    def server_ids(self) -> dict[str, str]:
        """Node id -> span server peer id, for this node and every planned peer that reports one."""
        service = self.service
        ids = {service.node_id: service.peer_id()}
        for peer in service.peers():
            if peer.state in PLANNED_STATES and peer.heartbeat is not None:
                ids[peer.node_id] = peer.heartbeat.span_peer
        return ids

    def capacities(self) -> list[SpanNode]:
        """This node and every peer offering span capacity that is alive or only suspect, as the
        planner sees them."""
        service = self.service
        nodes = [SpanNode(service.node_id, service.bench_score, service.span_blocks)]
        for peer in service.peers():
            beat = peer.heartbeat
            if peer.state in PLANNED_STATES and beat is not None and beat.span_blocks > 0:
                nodes.append(SpanNode(peer.node_id, beat.bench_score, beat.span_blocks))
        if any(n.throughput <= 0 for n in nodes):  # not all benchmarked: count them alike
            nodes = [SpanNode(n.node_id, 1.0, n.max_blocks) for n in nodes]
        return sorted(nodes, key=lambda n: n.node_id)

    async def stop_dht(self) -> None:
        """Stop the DHT bootstrap (the next `lead()` starts another, on the service's host)."""
        if self.dht is not None:
            await self.dht.stop()

    async def lead(self) -> None:
        """One coordinator tick: keep the DHT bootstrap up, re-plan when the capacities changed,
        and publish the map with every span server's peer id reported so far."""
        service = self.service
        assert service.environment is not None
        if self.dht is None or not self.dht.alive:
            if self.dht is not None:
                await self.dht.stop()
            self.dht = DhtBootstrap(service.environment, service.host, service.config.dht_port,
                                    log_path=service.cache_path / "span-logs" / "dht.log")
            await self.dht.start()
            log.info("spans: DHT bootstrap at %s", " ".join(self.dht.initial_peers))
            self._planned_for = ()
        nodes = self.capacities()
        key = tuple((n.node_id, n.throughput, n.max_blocks) for n in nodes)
        if key != self._planned_for or self.published is None:
            previous = self.published or service.coordinator.current_spans()
            before = {a.node_id: Span(a.node_id, a.start, a.end)
                      for a in (previous.assignments if previous else ())}
            layout = await asyncio.to_thread(plan_spans, service.num_blocks, nodes, before)
            reported = self.server_ids()
            self._old_servers.update({
                s.node_id: reported.get(s.node_id, "") for s in layout.spans
                if before.get(s.node_id) is not None
                and (before[s.node_id].start, before[s.node_id].end) != (s.start, s.end)})
            self._layout = tuple((s.node_id, s.start, s.end) for s in layout.spans)
            self._gaps, self._bottleneck = layout.gaps, layout.bottleneck
            self._planned_for = key
            log.info("spans: planned %s%s (moved %d blocks)",
                     ", ".join(f"{n} {a}:{b}" for n, a, b in self._layout) or "nothing",
                     f"; not served: {layout.gaps}" if layout.gaps else "", layout.moved_blocks)
        # The plan names each span server's peer id as soon as its node reports it, so clients
        # route through the swarm's own servers only (THREAT_MODEL.md: layer spans).
        ids = self.server_ids()
        for node_id, old in list(self._old_servers.items()):
            if ids.get(node_id, "") not in ("", old):
                del self._old_servers[node_id]  # it serves its new span now
            else:
                ids[node_id] = ""
        plan = SpanPlan(
            model=service.model_id, num_blocks=service.num_blocks,
            dht_prefix=service.dht_prefix, initial_peers=self.dht.initial_peers,
            assignments=tuple(SpanAssignment(n, a, b, ids.get(n, "")) for n, a, b in self._layout),
            gaps=self._gaps, bottleneck=self._bottleneck)
        if plan != self.published:
            self.published = plan
