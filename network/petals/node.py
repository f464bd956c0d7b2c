"""`--spans` in a node: the span service and its chain that `main.py` wires into a federated node
(`span_parts`), and their start with the span runtime's progress bar (`start_spans`)."""
from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from network.petals.chain import SpanChain
from network.petals.service import SpanService

if TYPE_CHECKING:
    from network.federation.node import Federation
    from swarm.node.config import Config


def span_parts(config: Config, federation: Federation, node_id: str, host: str, ram_bytes: int,
               bench_score: float) -> tuple[SpanService, SpanChain]:
    """This node's span service (serving the span the coordinator's plan gives it, and planning
    while it leads) and the span chain over it, a `Source` beside the instances and the peers."""
    spans = SpanService(config.spans, cache_path=config.cache_path, model_path=config.model.path,
                        node_id=node_id, host=host, ram_bytes=ram_bytes,
                        coordinator=federation.coordinator, peers=federation.membership.peers,
                        bench_score=bench_score)
    federation.coordinator.span_plan = spans.published
    return spans, SpanChain(spans, queue_depth=config.model.queue_depth)


async def start_spans(spans: SpanService, stack: AsyncExitStack) -> str:
    """Start this node's layer spans (building the span runtime first, with a progress bar),
    stopped by `stack`; the start-up panel's row."""
    from swarm.node.terminal import progress_bar

    with progress_bar("span runtime") as report:
        spans.report = report
        stack.push_async_callback(spans.close)
        await spans.start()
    return f"{spans.model_id}: this node may serve {spans.span_blocks} of {spans.num_blocks} blocks"
