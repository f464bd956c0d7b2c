"""Peers as consensus sources: the pure plan (hypothesis) and the ask that retries on real servers."""
from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.runner import run_consensus
from network.federation.client import FederationClient, PeerError
from network.federation.sources import (
    FederatedAsk,
    RemoteSource,
    SourcedCompletion,
    plan_sources,
    split_address,
)
from network.membership.table import Membership
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.engine.pool import Instance, InstancePool
from swarm.engine.scripted import ScriptedBackend
from tests.federation_fixtures import SLOW, Node, closed_port, federation_node, until
from tests.swarm_keys import RING

ASK = GenerationRequest(messages=(ChatMessage("user", "Capital of France?"),),
                        params=SamplingParams(max_tokens=50, temperature=0.0))


def instances(actives: list[int]) -> list[Instance]:
    made = [Instance(i, ScriptedBackend(), queue_depth=4) for i in range(len(actives))]
    for instance, active in zip(made, actives, strict=True):
        instance.active = active
    return made


remote_sources = st.lists(
    st.builds(RemoteSource, node_id=st.text("abcdef0123", min_size=1, max_size=6),
              address=st.just("10.0.0.2"), api_port=st.just(17615),
              load=st.sampled_from([0.0, 0.5, 1.0]), queue_depth=st.integers(0, 3),
              bench_score=st.sampled_from([0.0, 10.0, 50.0, 100.0])),
    max_size=6, unique_by=lambda r: r.node_id)
local_actives = st.lists(st.integers(0, 3), max_size=5)


def ids(plan: list) -> list[str]:
    return [s.source_id for s in plan]


@settings(max_examples=200, deadline=None)
@given(local_actives, remote_sources, st.integers(0, 15), st.sampled_from([0.0, 20.0, 80.0]),
       st.randoms(use_true_random=False))
def test_plan_is_deterministic_whatever_the_input_order(actives, remotes, n, score, rng):
    local = instances(actives)
    plan = ids(plan_sources(local, remotes, n, local_score=score))
    shuffled_local, shuffled_remote = local[:], remotes[:]
    rng.shuffle(shuffled_local)
    rng.shuffle(shuffled_remote)
    assert ids(plan_sources(shuffled_local, shuffled_remote, n, local_score=score)) == plan
    assert len(plan) == (n if local or remotes else 0)


@settings(max_examples=200, deadline=None)
@given(local_actives, remote_sources, st.integers(0, 15))
def test_every_source_is_used_once_before_any_twice(actives, remotes, n):
    local = instances(actives)
    everyone = {s.source_id for s in [*local, *remotes]}
    plan = ids(plan_sources(local, remotes, n))
    if everyone and n >= len(everyone):
        assert set(plan[:len(everyone)]) == everyone
        assert all(plan[i] == plan[i % len(everyone)] for i in range(n))
    else:
        assert len(set(plan)) == len(plan)


@settings(max_examples=200, deadline=None)
@given(local_actives, remote_sources, st.sampled_from([0.0, 20.0, 80.0]))
def test_least_busy_first_and_fast_first_among_equals(actives, remotes, score):
    local = instances(actives)
    plan = plan_sources(local, remotes, len(local) + len(remotes), local_score=score)
    busyness = [float(s.active) for s in plan]
    assert busyness == sorted(busyness)
    peers = [s for s in plan if isinstance(s, RemoteSource)]
    for first, second in zip(peers, peers[1:], strict=False):
        if first.active == second.active:
            assert (-first.bench_score, first.node_id) < (-second.bench_score, second.node_id)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.lists(st.sampled_from([0.0, 10.0, 50.0, 100.0]), max_size=6),
       st.sampled_from([0.0, 20.0, 80.0]))
def test_idle_sources_spread_over_nodes_fastest_node_first(locals_, scores, score):
    local = instances([0] * locals_)
    remotes = [RemoteSource(f"peer-{i}", "10.0.0.2", 1, bench_score=s) for i, s in enumerate(scores)]
    plan = plan_sources(local, remotes, locals_ + len(remotes), local_score=score)
    first_round = plan[:1 + len(remotes)]  # one source of every node
    assert sum(isinstance(s, Instance) for s in first_round) == 1
    speeds = [s.bench_score if isinstance(s, RemoteSource) else score for s in first_round]
    assert speeds == sorted(speeds, reverse=True)
    assert ids(plan[1 + len(remotes):]) == [f"local/{i}" for i in range(1, locals_)]


def test_plan_example():
    local = instances([0, 0, 1])
    remotes = [RemoteSource("slow", "10.0.0.2", 1, bench_score=10.0),
               RemoteSource("fast", "10.0.0.3", 1, bench_score=90.0),
               RemoteSource("busy", "10.0.0.4", 1, load=1.0, bench_score=99.0)]
    assert ids(plan_sources(local, remotes, 7, local_score=50.0)) == [
        "fast", "local/0", "slow", "local/1", "busy", "local/2", "fast"]
    assert plan_sources([], [], 3) == []


def test_remote_sources_come_from_routable_voting_peers():
    m = Membership("me", 1, "")
    for node_id, capabilities in (("voter", ("vote",)), ("mute", ())):
        m.discovered(PeerAdvert(node_id=node_id, boot_id="b", protocol=1, api_port=9),
                     "10.0.0.7:9", 0.0)
        m.heartbeat_ok(node_id, Heartbeat(node_id=node_id, boot_id="b", protocol=1, api_port=9,
                                          load=0.5, queue_depth=1, bench_score=3.0,
                                          capabilities=capabilities), 1.0)
    sources = [RemoteSource.from_peer(p) for p in m.peers()]
    assert sources == [None, RemoteSource("voter", "10.0.0.7", 9, 0.5, 1, 3.0)]
    assert sources[1].source_id == "voter" and sources[1].active == 1.5  # type: ignore[union-attr]


@pytest.mark.parametrize(("address", "expected"), [
    ("10.0.0.5", ("10.0.0.5", 7)), ("10.0.0.5:8000", ("10.0.0.5", 8000)),
    ("[fe80::1]:8000", ("fe80::1", 8000)), ("fe80::1", ("fe80::1", 7)),
    ("[fe80::1]", ("fe80::1", 7)), ("host.local:x", ("host.local", 7)),
])
def test_split_address(address, expected):
    assert split_address(address, 7) == expected


@pytest.fixture()
async def client() -> AsyncIterator[FederationClient]:
    federation = FederationClient(close_grace_s=0.05, keys=RING)
    yield federation
    await federation.close()


def peer_of(node: Node, node_id: str, score: float = 10.0) -> RemoteSource:
    return RemoteSource(node_id, "127.0.0.1", node.port, bench_score=score)


class Backoff:
    """An injected sleep that records the backoffs asked for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def test_local_and_remote_answers_name_their_source(client):
    local = InstancePool([ScriptedBackend(["Lyon"])])
    async with federation_node(InstancePool([ScriptedBackend(["Paris"])]), node_id="peer-b") as b:
        ask = FederatedAsk(local, client)
        remote = await ask(peer_of(b, "peer-b"), ASK)
        here = await ask(local.instances[0], ASK)
    assert isinstance(remote, SourcedCompletion) and isinstance(here, SourcedCompletion)
    assert (remote.text, remote.answered_by) == ("Paris", "peer-b")
    assert (here.text, here.answered_by) == ("Lyon", "local/0") and ask.retries == 0


async def test_a_dead_peer_is_retried_on_a_local_instance_after_the_backoff(client):
    local = InstancePool([ScriptedBackend(["Lyon"])])
    backoff = Backoff()
    ask = FederatedAsk(local, client, backoff_s=0.1, sleep=backoff)
    completion = await ask(RemoteSource("ghost", "127.0.0.1", closed_port()), ASK)
    assert (completion.text, completion.answered_by) == ("Lyon", "local/0")  # type: ignore[attr-defined]
    assert backoff.calls == [0.1] and ask.retries == 1


async def test_a_peer_stopped_mid_vote_is_retried_on_another_peer(client):
    local = InstancePool([ScriptedBackend([SLOW], token_latency_s=0.02)], queue_depth=0)
    hog = asyncio.create_task(local.complete(ASK))
    await until(lambda: local.instances[0].active == 1, what="the only local slot taken")
    a_pool = InstancePool([ScriptedBackend([SLOW], token_latency_s=0.02)])
    async with (federation_node(a_pool, node_id="peer-a") as a,
                federation_node(InstancePool([ScriptedBackend(["Paris"])]), node_id="peer-b") as b):
        ask = FederatedAsk(local, client, remotes=lambda: [peer_of(a, "peer-a"),
                                                            peer_of(b, "peer-b")],
                           sleep=Backoff())
        answer = asyncio.create_task(ask(peer_of(a, "peer-a"), ASK))
        await until(lambda: bool(a_pool.instances[0].backend.requests), what="peer-a to start")
        await a.stop()
        completion = await answer
        assert (completion.text, completion.answered_by) == ("Paris", "peer-b")  # type: ignore[attr-defined]
        await until(lambda: a_pool.instances[0].active == 0, what="peer-a's compute freed")
    hog.cancel()
    await asyncio.gather(hog, return_exceptions=True)


async def test_when_the_retry_fails_too_the_error_names_both(client):
    local = InstancePool([ScriptedBackend([SLOW], token_latency_s=0.02)], queue_depth=0)
    hog = asyncio.create_task(local.complete(ASK))
    await until(lambda: local.instances[0].active == 1, what="the local slot taken")
    ghosts = [RemoteSource("ghost-1", "127.0.0.1", closed_port()),
              RemoteSource("ghost-2", "127.0.0.1", closed_port())]
    ask = FederatedAsk(local, client, remotes=lambda: ghosts, sleep=Backoff())
    with pytest.raises(PeerError, match="ghost-1.*retry on ghost-2 failed"):
        await ask(ghosts[0], ASK)
    alone = FederatedAsk(local, client, sleep=Backoff())
    with pytest.raises(PeerError, match="ghost-1") as caught:
        await alone(ghosts[0], ASK)
    assert "retry" not in str(caught.value)
    hog.cancel()
    await asyncio.gather(hog, return_exceptions=True)


async def test_a_consensus_over_peers_succeeds_while_one_is_dead(client):
    local = InstancePool([ScriptedBackend(["Paris"], logprob=-0.1)])
    peer = InstancePool([ScriptedBackend(["Lyon"], logprob=-0.9)])
    async with federation_node(peer, node_id="peer-b") as b:
        remotes = [RemoteSource("ghost", "127.0.0.1", closed_port(), bench_score=50.0),
                   peer_of(b, "peer-b", score=20.0)]
        ask = FederatedAsk(local, client, remotes=lambda: remotes, sleep=Backoff())
        sources = plan_sources(local.instances, remotes, 3)
        assert ids(sources) == ["ghost", "peer-b", "local/0"]
        decision = await run_consensus("best_of_n", sources, ASK, ask, n=3, timeout_s=20,
                                       rng=random.Random(1))
    assert decision.completion is not None and decision.completion.text == "Paris"
    assert all(c.ok for c in decision.candidates)
    answered = sorted(c.completion.answered_by for c in decision.candidates)  # type: ignore[union-attr]
    assert answered == ["local/0", "local/0", "peer-b"]
