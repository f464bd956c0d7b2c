"""The one source chooser (network/coordination/chooser.py): pure, so tested with hypothesis over
plain records, plus the same decisions over real instances and peers."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.coordination.chooser import fallback, fill, honour_plan, id_key, route, spread
from network.federation.sources import RemoteSource, SwarmSources
from network.wire.address import Address
from swarm.engine.pool import Instance, InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.engine.source import Ranked
from swarm.errors import PoolBusyError

HERE = "here"


@dataclass(frozen=True)
class Offer:
    """A `Ranked` record: what the chooser reads of a source, nothing more."""

    source_id: str
    busy: float = 0.0
    score: float = 0.0
    node: str = ""  # its machine; its own id when empty (a peer)
    room: int | None = None

    @property
    def node_id(self) -> str:
        return self.node or self.source_id

    def load(self) -> float:
        return self.busy

    def capacity(self) -> int | None:
        return self.room


def local(index: int, busy: float = 0.0, score: float = 0.0, slots: int = 5) -> Offer:
    return Offer(f"local/{index}", busy, score, HERE, max(slots - int(busy), 0))


def ids(chosen: list) -> list[str]:
    return [s.source_id for s in chosen]


peers = st.lists(st.builds(Offer, source_id=st.text("abcdef0123", min_size=1, max_size=6),
                           busy=st.sampled_from([0.0, 0.5, 1.0, 1.5, 3.0]),
                           score=st.sampled_from([0.0, 10.0, 50.0, 100.0])),
                 max_size=6, unique_by=lambda r: r.source_id)
locals_ = st.lists(st.integers(0, 3), max_size=5).map(
    lambda actives: [local(i, a) for i, a in enumerate(actives)])


def test_offers_are_ranked():
    assert isinstance(Offer("a"), Ranked) and isinstance(local(0), Ranked)


def test_ids_compare_their_digits_as_numbers():
    assert sorted(["local/10", "local/2", "local/1", "peer-b"], key=id_key) == [
        "local/1", "local/2", "local/10", "peer-b"]


# --- spread: consensus candidates ---------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(locals_, peers, st.integers(0, 15), st.randoms(use_true_random=False))
def test_spread_is_deterministic_whatever_the_input_order(mine, theirs, n, rng):
    chosen = ids(spread([*mine, *theirs], n))
    shuffled = [*mine, *theirs]
    rng.shuffle(shuffled)
    assert ids(spread(shuffled, n)) == chosen
    assert len(chosen) == (n if mine or theirs else 0)


@settings(max_examples=200, deadline=None)
@given(locals_, peers, st.integers(0, 15))
def test_every_source_is_used_once_before_any_twice(mine, theirs, n):
    everyone = {s.source_id for s in [*mine, *theirs]}
    chosen = ids(spread([*mine, *theirs], n))
    if everyone and n >= len(everyone):
        assert set(chosen[:len(everyone)]) == everyone
        assert all(chosen[i] == chosen[i % len(everyone)] for i in range(n))
    else:
        assert len(set(chosen)) == len(chosen)


@settings(max_examples=200, deadline=None)
@given(locals_, peers)
def test_least_busy_first_and_fast_first_among_equals(mine, theirs):
    chosen = spread([*mine, *theirs], len(mine) + len(theirs))
    busyness = [s.load() for s in chosen]
    assert busyness == sorted(busyness)
    remote = [s for s in chosen if s.node_id != HERE]
    for first, second in zip(remote, remote[1:], strict=False):
        if first.load() == second.load():
            assert (-first.score, id_key(first.node_id)) < (-second.score, id_key(second.node_id))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5), st.lists(st.sampled_from([0.0, 10.0, 50.0, 100.0]), max_size=6),
       st.sampled_from([0.0, 20.0, 80.0]))
def test_idle_sources_spread_over_machines_fastest_first(count, scores, score):
    mine = [local(i, score=score) for i in range(count)]
    theirs = [Offer(f"peer-{i}", score=s) for i, s in enumerate(scores)]
    chosen = spread([*mine, *theirs], count + len(theirs))
    first_round = chosen[:1 + len(theirs)]  # one source of every machine
    assert sum(s.node_id == HERE for s in first_round) == 1
    speeds = [s.score for s in first_round]
    assert speeds == sorted(speeds, reverse=True)
    assert ids(chosen[1 + len(theirs):]) == [f"local/{i}" for i in range(1, count)]


def test_spread_example():
    sources = [local(0, score=50.0), local(1, score=50.0), local(2, 1, 50.0),
               Offer("slow", score=10.0), Offer("fast", score=90.0),
               Offer("busy", 1.0, 99.0)]
    assert ids(spread(sources, 7)) == [
        "fast", "local/0", "slow", "local/1", "busy", "local/2", "fast"]
    assert spread([], 3) == []


# --- fill: one node's instances -----------------------------------------------------------------

def test_fill_places_each_as_if_the_ones_before_it_ran():
    assert ids(fill([local(0), local(1)], 3)) == ["local/0", "local/1", "local/0"]
    assert ids(fill([local(0, 2), local(1)], 3)) == ["local/1", "local/1", "local/0"]
    assert ids(fill([local(i) for i in (10, 2, 1)], 3)) == ["local/1", "local/2", "local/10"]


def test_fill_refuses_the_whole_request_unless_every_placement_fits():
    with pytest.raises(PoolBusyError) as busy:
        fill([local(0, 1, slots=2), local(1, 2, slots=2)], 2)
    assert busy.value.retry_after_s == 1
    with pytest.raises(PoolBusyError) as busy:
        fill([local(0, 2, slots=2)], 3)
    assert busy.value.retry_after_s == 1
    with pytest.raises(PoolBusyError):
        fill([], 1)
    # A source that does not say its capacity is never full.
    assert ids(fill([local(0, 1, slots=2), Offer("peer")], 3)) == ["peer", "local/0", "peer"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=5), st.integers(1, 12))
def test_fill_never_overfills_and_balances(actives, n):
    sources = [local(i, a, slots=4) for i, a in enumerate(actives)]
    room = sum(s.capacity() or 0 for s in sources)
    if n > room:
        with pytest.raises(PoolBusyError):
            fill(sources, n)
        return
    chosen = ids(fill(sources, n))
    after = [s.load() + chosen.count(s.source_id) for s in sources]
    assert len(chosen) == n and all(a <= 4 for a in after)
    # Each placement went to the least busy source with room: none ends more than one above
    # the least busy source of all.
    assert all(a <= min(after) + 1 for s, a in zip(sources, after, strict=True)
               if s.source_id in chosen)


# --- route: a whole request -----------------------------------------------------------------------

def test_route_prefers_a_local_idle_instance_then_the_least_busy_peer():
    assert route([local(0, 0)], [Offer("b", 0)]) is None
    assert route([local(0, 1)], []) is None
    assert route([local(0, 1)], [Offer("b", 1)]) is None
    assert route([local(0, 2)], [Offer("b", 1), Offer("c", 0)]).node_id == "c"
    assert route([local(0, 1)], [Offer("b", 0, 5.0), Offer("c", 0, 9.0)]).node_id == "c"
    assert route([local(0, 1), local(1, 0)], [Offer("b", 0)]) is None  # one is idle here
    # Requests already forwarded and still running count: a burst spreads over peers.
    assert route([local(0, 1)], [Offer("b", 0), Offer("c", 0)], {"b": 1}).node_id == "c"
    assert route([local(0, 1)], [Offer("b", 0), Offer("c", 0)], {"b": 1, "c": 1}) is None


@settings(max_examples=200, deadline=None)
@given(locals_.filter(bool), peers, st.randoms(use_true_random=False))
def test_route_is_deterministic_and_only_forwards_to_a_less_busy_peer(mine, theirs, rng):
    target = route(mine, theirs)
    shuffled = theirs[:]
    rng.shuffle(shuffled)
    assert route(mine, shuffled) == target
    if target is not None:
        assert target.load() < min(s.load() for s in mine)
        assert all(target.load() <= t.load() for t in theirs)


# --- the coordinator's plan, for route and consensus alike -------------------------------------

def test_the_plan_picks_the_peers_and_never_drops_this_nodes_instances():
    sources = [local(0), Offer("b"), Offer("c"), Offer("d")]
    assert ids(honour_plan(sources, None, HERE)) == ["local/0", "b", "c", "d"]
    assert ids(honour_plan(sources, ["d", "a", "b", "zz"], HERE)) == ["local/0", "b", "d"]
    assert ids(honour_plan(sources, [], HERE)) == ["local/0"]


def test_route_and_consensus_both_honour_the_plan():
    pool = InstancePool([ScriptedBackend()], queue_depth=2, node_id=HERE)
    pool.instances[0].active = 1  # busy: route mode would forward to an idle peer
    idle = [RemoteSource(n, Address("10.0.0.9", 1), voter=None, score=s)
            for n, s in (("left-out", 90.0), ("picked", 10.0))]
    plan: list[str] | None = ["picked"]
    sources = SwarmSources(pool, lambda: idle, lambda: plan)
    assert ids(sources.remote()) == ["picked"]
    assert route(sources.local(), sources.remote()).node_id == "picked"
    assert "left-out" not in ids(spread(sources(), 6))
    plan = None  # no coordinator plan: every live peer, the fastest first
    assert route(sources.local(), sources.remote()).node_id == "left-out"
    assert ids(spread(sources(), 3)) == ["left-out", "picked", "local/0"]


# --- fallback: retrying a failed peer's candidate -----------------------------------------------

def test_fallback_takes_a_local_instance_with_room_else_another_peer():
    peers_ = [Offer("dead", score=99.0), Offer("slow", 1.0), Offer("fast", 0.0, 50.0)]
    assert fallback([local(0, 4, slots=5)], peers_, "dead").source_id == "local/0"
    assert fallback([local(0, 5, slots=5)], peers_, "dead").source_id == "fast"
    assert fallback([local(0, 5, slots=5)], peers_[:1], "dead") is None


def test_real_instances_are_ranked_by_their_queues():
    pool = InstancePool([ScriptedBackend(), ScriptedBackend()], queue_depth=1, node_id=HERE,
                        score=7.0)
    first, second = pool.instances
    first.active = 2
    assert isinstance(first, Instance) and (first.load(), first.capacity()) == (2.0, 0)
    assert (second.node_id, second.score, second.capacity()) == (HERE, 7.0, 2)
    assert fill(pool.instances, 2) == [second, second]
    with pytest.raises(PoolBusyError):
        fill(pool.instances, 3)
    pool.close()
