"""Peers as sources (the `Source` seam over the vote route) and the ask that retries a failed peer
elsewhere, on real servers; the chooser's own tests are tests/test_chooser.py."""
from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from consensus.runner import run_consensus
from network.coordination.chooser import spread
from network.federation.client import FederationClient, PeerError
from network.federation.sources import FederatedAsk, RemoteSource, SwarmSources
from network.membership.table import Membership
from network.wire.address import Address
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.engine.source import Source
from tests.federation_fixtures import SLOW, Node, closed_port, federation_node, until
from tests.swarm_keys import RING

ASK = GenerationRequest(messages=(ChatMessage("user", "Capital of France?"),),
                        params=SamplingParams(max_tokens=50, temperature=0.0))


def test_remote_sources_come_from_routable_voting_peers():
    m = Membership("me", 1, "")
    voter = FederationClient()
    for node_id, capabilities in (("voter", ("vote",)), ("mute", ())):
        m.discovered(PeerAdvert(node_id=node_id, boot_id="b", protocol=1, api_port=9),
                     Address("10.0.0.7", 9), 0.0)
        m.heartbeat_ok(node_id, Heartbeat(node_id=node_id, boot_id="b", protocol=1, api_port=8,
                                          load=0.5, queue_depth=1, bench_score=3.0,
                                          capabilities=capabilities), 1.0)
    sources = [RemoteSource.from_peer(p, voter) for p in m.peers()]
    assert sources == [None, RemoteSource("voter", Address("10.0.0.7", 8), voter, 0.5, 1, 3.0,
                                             capabilities=frozenset({"vote"}))]
    source = sources[1]
    assert source is not None and isinstance(source, Source)
    assert (source.source_id, source.load(), source.capacity()) == ("voter", 1.5, None)


@pytest.fixture()
async def client() -> AsyncIterator[FederationClient]:
    federation = FederationClient(close_grace_s=0.05, keys=RING)
    yield federation
    await federation.close()


def peer_of(node: Node | int, node_id: str, voter: FederationClient,
            score: float = 10.0) -> RemoteSource:
    port = node if isinstance(node, int) else node.port
    return RemoteSource(node_id, Address("127.0.0.1", port), voter, score=score)


def sources(local: InstancePool, peers: list[RemoteSource] | None = None) -> SwarmSources:
    return SwarmSources(local, lambda: peers or [])


class Backoff:
    """An injected sleep that records the backoffs asked for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_local_and_remote_answers_name_their_source(client):
    local = InstancePool([ScriptedBackend(["Lyon"])])
    async with federation_node(InstancePool([ScriptedBackend(["Paris"])]), node_id="peer-b") as b:
        ask = FederatedAsk(sources(local))
        remote = await ask(peer_of(b, "peer-b", client), ASK)
        here = await ask(local.instances[0], ASK)
        streamed = [e async for e in peer_of(b, "peer-b", client).stream(ASK)]
    assert (remote.completion.text, remote.answered_by) == ("Paris", "peer-b")
    assert (here.completion.text, here.answered_by) == ("Lyon", "local/0") and ask.retries == 0
    assert [type(e).__name__ for e in streamed] == ["TokenEvent", "StreamEnd"]
    assert streamed[0].text == "Paris" and streamed[1].completion_tokens == 1


async def test_a_dead_peer_is_retried_on_a_local_instance_after_the_backoff(client):
    local = InstancePool([ScriptedBackend(["Lyon"])])
    backoff = Backoff()
    ask = FederatedAsk(sources(local), backoff_s=0.1, sleep=backoff)
    answer = await ask(peer_of(closed_port(), "ghost", client), ASK)
    assert (answer.completion.text, answer.answered_by) == ("Lyon", "local/0")
    assert backoff.calls == [0.1] and ask.retries == 1


async def test_a_peer_stopped_mid_vote_is_retried_on_another_peer(client):
    local = InstancePool([ScriptedBackend([SLOW], token_latency_s=0.02)], queue_depth=0)
    hog = asyncio.create_task(local.instances[0].complete(ASK))
    await until(lambda: local.instances[0].active == 1, what="the only local slot taken")
    a_pool = InstancePool([ScriptedBackend([SLOW], token_latency_s=0.02)])
    async with (federation_node(a_pool, node_id="peer-a") as a,
                federation_node(InstancePool([ScriptedBackend(["Paris"])]), node_id="peer-b") as b):
        peers = [peer_of(a, "peer-a", client), peer_of(b, "peer-b", client)]
        ask = FederatedAsk(sources(local, peers), sleep=Backoff())
        pending = asyncio.create_task(ask(peers[0], ASK))
        await until(lambda: bool(a_pool.instances[0].backend.requests), what="peer-a to start")
        await a.stop()
        answer = await pending
        assert (answer.completion.text, answer.answered_by) == ("Paris", "peer-b")
        await until(lambda: a_pool.instances[0].active == 0, what="peer-a's compute freed")
    hog.cancel()
    await asyncio.gather(hog, return_exceptions=True)


async def test_when_the_retry_fails_too_the_error_names_both(client):
    local = InstancePool([ScriptedBackend([SLOW], token_latency_s=0.02)], queue_depth=0)
    hog = asyncio.create_task(local.instances[0].complete(ASK))
    await until(lambda: local.instances[0].active == 1, what="the local slot taken")
    ghosts = [peer_of(closed_port(), "ghost-1", client), peer_of(closed_port(), "ghost-2", client)]
    ask = FederatedAsk(sources(local, ghosts), sleep=Backoff())
    with pytest.raises(PeerError, match="ghost-1.*retry on ghost-2 failed"):
        await ask(ghosts[0], ASK)
    alone = FederatedAsk(sources(local), sleep=Backoff())
    with pytest.raises(PeerError, match="ghost-1") as caught:
        await alone(ghosts[0], ASK)
    assert "retry" not in str(caught.value)
    hog.cancel()
    await asyncio.gather(hog, return_exceptions=True)


async def test_a_consensus_over_peers_succeeds_while_one_is_dead(client):
    local = InstancePool([ScriptedBackend(["Paris"], logprob=-0.1)])
    peer = InstancePool([ScriptedBackend(["Lyon"], logprob=-0.9)])
    async with federation_node(peer, node_id="peer-b") as b:
        remotes = [peer_of(closed_port(), "ghost", client, score=50.0),
                   peer_of(b, "peer-b", client, score=20.0)]
        swarm = sources(local, remotes)
        ask = FederatedAsk(swarm, sleep=Backoff())
        chosen = spread(swarm(), 3)
        assert [s.source_id for s in chosen] == ["ghost", "peer-b", "local/0"]
        decision = await run_consensus("best_of_n", chosen, ASK, ask, n=3, timeout_s=20,
                                       rng=random.Random(1))
    assert decision.completion is not None and decision.completion.text == "Paris"
    assert all(c.ok for c in decision.candidates)
    assert sorted(c.source for c in decision.candidates) == ["local/0", "local/0", "peer-b"]
