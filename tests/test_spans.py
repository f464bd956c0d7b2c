"""Layer spans end to end on loopback: real petals servers in the span venv, the distributed
client, greedy tokens against the same model run locally in the span runtime (through spans
capped by memory, routed only through the planned servers), a replica taking over from a
SIGKILLed server, and a clear error then a re-plan without one. The same through `main.py`
nodes: tests/test_span_nodes.py.

One swarm per module (one DHT bootstrap, the local reference run once); each test keeps its
servers apart from the other's by DHT prefix and stops them when it ends."""
from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from network.coordination.spans import Span, SpanNode, blocks_that_fit, plan_spans
from network.petals.client import SpanGenerationError
from network.petals.supervisor import SpanSupervisor
from tests.span_swarm import PREFIX, QUESTION, SpanSwarm, generate_timed, span_swarm

pytestmark = [pytest.mark.petals, pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.asyncio(loop_scope="module")]

LONG = {"messages": QUESTION, "max_tokens": 40, "temperature": 0, "ignore_eos": True}
ANSWER = {"messages": QUESTION, "max_tokens": 24, "temperature": 0}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory):
    """The module's swarm with its DHT bootstrap up, and the reference: greedy tokens of the
    whole model run in one process of the span venv (LONG, ANSWER)."""
    async with span_swarm(tmp_path_factory.mktemp("spans")) as swarm:
        _peers, local = await asyncio.gather(swarm.start_dht(), swarm.client(local=True))
        long, _final = await local.complete(LONG)
        answer, _final = await local.complete(ANSWER)
        await local.stop()
        swarm.clients.remove(local)
        yield swarm, (long, answer)


async def stop_servers(swarm: SpanSwarm) -> None:
    """Stop the servers and clients a test started (the DHT stays for the next test)."""
    for process in [*swarm.clients, *swarm.servers]:
        await process.stop()
    swarm.clients.clear()
    swarm.servers.clear()


async def test_capped_spans_answer_like_local_and_a_replica_takes_over_a_killed_server(
        shared, tmp_path):
    swarm, reference = shared
    block_bytes = sum(p.stat().st_size for p in swarm.model_dir.glob("*.safetensors")) / 30
    cap = blocks_that_fit(20.5 * block_bytes, block_bytes)  # as --max-memory-gb would allow
    assert cap < 30
    layout = plan_spans(30, [SpanNode("a", 1.0, cap), SpanNode("b", 1.0, cap)])
    assert layout.gaps == () and all(s.length <= cap for s in layout.spans)
    last = layout.spans[-1]
    try:
        # The plan's two spans and a replica of the last one, and a server the plan does not
        # name (a rogue) for the same blocks, all started at once.
        await swarm.add_servers([*((s.start, s.end) for s in layout.spans),
                                 (last.start, last.end), (last.start, last.end)])
        planned = [server.peer_id for server in swarm.servers[:-1]]
        rogue = swarm.servers[-1].peer_id
        client = await swarm.client(allowed=planned)
        long, _ = await client.complete(LONG)
        abandoned = client.generate(LONG)  # a caller that goes away after a token
        async for _event in abandoned:
            break
        await abandoned.aclose()
        answer, final = await client.complete(ANSWER)
        assert len(client.route()) == 2  # really through both spans
        assert all(any(p.endswith(tail) for p in planned) for _a, _b, tail in client.route())

        killed = []

        async def kill_at(n):
            if n == 8:
                victim = swarm.server_on_route(client, last.start)
                victim.kill()
                killed.append(victim)

        tokens, _times, replaced = await generate_timed(client, LONG, kill_at)
        assert killed and await killed[0].wait() != 0  # it really died mid-generation
        assert replaced["completion_tokens"] == len(tokens)
        survivor = swarm.server_on_route(client, last.start)
        assert survivor is not killed[0] and survivor.peer_id != rogue  # the planned replica
    finally:
        await stop_servers(swarm)
    assert long == reference[0] and tokens == reference[0]
    assert answer == reference[1] and final["finish_reason"] == "stop"
    assert any('"finish_reason": "cancelled"' in line for line in client.lines)


async def test_without_a_replica_the_client_fails_clearly_then_a_replan_serves(
        shared, tmp_path):
    swarm, reference = shared
    prefix = PREFIX + "-replan"  # apart from the servers the other test announced
    assert swarm.dht is not None
    peers = swarm.dht.initial_peers
    supervisors = {n: SpanSupervisor(swarm.environment, swarm.model_dir, prefix,
                                     log_dir=tmp_path) for n in ("a", "b")}
    try:
        nodes = [SpanNode("a", 1.0, 30), SpanNode("b", 1.0, 15)]
        first = plan_spans(30, nodes, {"a": Span("a", 0, 15), "b": Span("b", 15, 30)})
        assert first.span_of("b") == Span("b", 15, 30)
        await asyncio.gather(*(supervisors[s.node_id].apply((s.start, s.end), peers)
                               for s in first.spans))
        client = await swarm.client(prefix=prefix)

        async def leave(n):
            if n == 5:
                server = supervisors["b"].server
                server.kill()  # node b is gone, server and all
                await supervisors["b"].close()

        with pytest.raises(SpanGenerationError):
            await generate_timed(client, LONG, leave)
        again = plan_spans(30, nodes[:1], {s.node_id: s for s in first.spans})
        assert again.gaps == () and again.span_of("a") == Span("a", 0, 30)
        assert again.moved_blocks == 15
        await supervisors["a"].apply((0, 30), peers)
        assert supervisors["a"].status.state == "serving"
        await client.refresh()
        tokens, _ = await client.complete(LONG)
    finally:
        for supervisor in supervisors.values():
            await supervisor.close()
        await stop_servers(swarm)
    assert tokens == reference[0]
