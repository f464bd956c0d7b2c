"""The election driver (network/coordination/driver.py) and the swarm plan, on real loopback nodes.

Whole nodes are built as `main.py --federation` builds them (tests/swarm_nodes.py): real HTTP,
real signatures, real heartbeats; only discovery is manual (no mDNS) and the model is scripted.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from network.coordination.driver import Coordinator, peer_view, sender_of
from network.coordination.election import Ack, Announce, Candidate, Claim, Role, step
from network.coordination.plan import build_plan, choose_consensus
from network.coordination.store import ElectionStore
from network.membership.table import Membership, Peer, PeerState
from network.wire.address import Address
from network.wire.election import PlanMember, SwarmPlan
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert
from tests.swarm_keys import KEY
from tests.swarm_nodes import SwarmNode, make_swarm

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


async def until(predicate: Callable[[], bool], within_s: float, what: str) -> None:
    """Wait for `predicate()` under a deadline (election state has no event to await)."""
    try:
        async with asyncio.timeout(within_s):
            while not predicate():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {within_s}s waiting for {what}") from None


def leaders(nodes: list[SwarmNode]) -> set[str]:
    return {n.name for n in nodes if n.federation.coordinator.role is Role.COORDINATOR}


def agreed(nodes: list[SwarmNode]) -> str | None:
    """The one coordinator every node follows, or None while they disagree."""
    followed = {n.federation.coordinator.state.coordinator for n in nodes}
    lead = leaders(nodes)
    if len(followed) == 1 and len(lead) == 1 and followed == lead:
        return lead.pop()
    return None


@pytest.fixture()
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --- pure parts --------------------------------------------------------------------------------


def _peer(node_id: str, state: PeerState = PeerState.ALIVE, load: float = 0.0,
          score: float = 1.0, term: int = 0, coordinator: str | None = None,
          priority: int | None = 0) -> Peer:
    beat = Heartbeat(node_id=node_id, boot_id="b1", protocol=1, api_port=17615, load=load,
                     bench_score=score, capabilities=("vote",), instances=1, term=term,
                     coordinator=coordinator, priority=priority)
    advert = PeerAdvert(node_id=node_id, boot_id="b1", protocol=1, api_port=17615)
    return Peer(advert, Address("10.0.0.9", 17615), state, 5.0, 4.0, 0, beat, "answering")


def test_peer_view_takes_term_coordinator_and_priority_from_the_heartbeat():
    view = peer_view(_peer("b", term=4, coordinator="b", priority=None, score=7.0))
    assert view is not None
    assert (view.term, view.coordinator, view.candidate) == (4, "b", Candidate("b", None, 7.0))
    assert view.suspect_since is None
    suspect = peer_view(_peer("b", state=PeerState.SUSPECT))
    assert suspect is not None and suspect.suspect_since == 5.0
    for state in (PeerState.DEAD, PeerState.JOINING, PeerState.FOREIGN):
        assert peer_view(_peer("b", state=state)) is None


def test_sender_of_names_the_node_a_message_comes_from():
    me = Candidate("a")
    assert sender_of(Claim(3, me)) == "a"
    assert sender_of(Ack(3, "v", "a", True)) == "v"
    assert sender_of(Announce(3, me)) == "a"


def test_the_plan_prefers_free_fast_members_and_weighs_by_score():
    local = PlanMember(node_id="a", score=10.0, load=0.5, queue_depth=0, instances=2, weight=1.0)
    peers = [_peer("b", load=0.0, score=20.0), _peer("c", load=1.0, score=50.0),
             _peer("d", state=PeerState.SUSPECT), _peer("e", load=0.0, score=5.0)]
    plan = build_plan(7, local, peers, issued_at=123.0)
    assert (plan.term, plan.coordinator) == (7, "a")
    assert [m.node_id for m in plan.members] == ["a", "b", "c", "e"]  # suspect d left out
    assert plan.consensus == ("b", "e", "a")  # c is saturated
    weights = {m.node_id: m.weight for m in plan.members}
    assert weights == {"a": 0.2, "b": 0.4, "c": 1.0, "e": 0.1}


def test_saturated_members_are_used_only_when_nobody_has_room():
    busy = [PlanMember(node_id=i, score=1.0, load=1.0, queue_depth=3, instances=1, weight=1.0)
            for i in ("x", "y")]
    assert choose_consensus(busy) == ("x", "y")


def test_the_election_store_round_trips_and_survives_a_bad_file(tmp_path: Path, caplog):
    store = ElectionStore(tmp_path / "sub" / "election.json")
    assert store.load() == (0, 0, None)
    store.save(5, 6, "node-b")
    assert store.load() == (5, 6, "node-b")
    for bad in ("{", json.dumps({"term": -1, "voted_term": 0, "voted_for": None}),
                json.dumps({"term": 1, "voted_term": 1, "voted_for": "bad id!"}), "[]"):
        store.path.write_text(bad)
        assert store.load() == (0, 0, None)
    assert "election starts from term 0" in caplog.text


# --- whole nodes on loopback -------------------------------------------------------------------


async def test_three_nodes_elect_one_coordinator_and_publish_its_plan(tmp_path, http):
    nodes = make_swarm(tmp_path, ["a", "b", "c"], KEY, scores={"a": 1.0, "b": 3.0, "c": 2.0})
    try:
        for node in nodes.values():
            await node.start()
        all_nodes = list(nodes.values())
        await until(lambda: agreed(all_nodes) is not None, 10.0, "one agreed coordinator")
        assert agreed(all_nodes) == "b"  # the best benchmark score, all priorities equal
        term = nodes["b"].federation.coordinator.state.term
        assert term >= 1

        async with http.get(nodes["b"].url + "/v1/federation/plan") as r:
            assert r.status == 200
            plan = await r.json()
        assert (plan["term"], plan["coordinator"]) == (term, "b")
        assert sorted(m["node_id"] for m in plan["members"]) == ["a", "b", "c"]
        async with http.get(nodes["a"].url + "/v1/federation/plan") as r:
            assert r.status == 503 and (await r.json())["error"]["code"] == "no_plan"

        a = nodes["a"].federation.coordinator
        await until(lambda: a.consensus_members() is not None, 5.0, "a to fetch the plan")
        assert set(a.consensus_members() or ()) == {"a", "b", "c"}

        def c_sees_b_lead() -> bool:
            peer = nodes["c"].federation.membership.get("b")
            return peer is not None and peer.heartbeat is not None and \
                peer.heartbeat.coordinator == "b"

        await until(c_sees_b_lead, 5.0, "b's heartbeat to show it leads")
        async with http.get(nodes["c"].url + "/v1/federation/peers") as r:
            rows = {row["node_id"]: row for row in (await r.json())["data"]}
        assert rows["b"]["coordinator"] is True and rows["c"]["coordinator"] is False
        assert rows["c"]["term"] == term
    finally:
        for node in nodes.values():
            await node.stop()


async def test_priority_wins_and_a_no_coordinator_node_never_leads(tmp_path):
    extra = {"a": {"federation.coordinator_priority": 5},
             "c": {"federation.coordinator": False}}
    nodes = make_swarm(tmp_path, ["a", "b", "c"], KEY, extra=extra,
                       scores={"a": 1.0, "b": 2.0, "c": 9.0})
    try:
        for node in nodes.values():
            await node.start()
        all_nodes = list(nodes.values())
        await until(lambda: agreed(all_nodes) is not None, 10.0, "one agreed coordinator")
        assert agreed(all_nodes) == "a"
        await nodes["a"].stop()
        rest = [nodes["b"], nodes["c"]]
        await until(lambda: agreed(rest) is not None, 10.0, "a new coordinator among b and c")
        assert agreed(rest) == "b"  # c is faster but never takes the role
    finally:
        for node in nodes.values():
            await node.stop()


async def test_a_crashed_coordinator_is_replaced_and_on_return_does_not_displace_it(tmp_path):
    nodes = make_swarm(tmp_path, ["a", "b", "c"], KEY, scores={"a": 5.0, "b": 2.0, "c": 1.0})
    try:
        for node in nodes.values():
            await node.start()
        all_nodes = list(nodes.values())
        await until(lambda: agreed(all_nodes) == "a", 10.0, "a to lead")
        first_term = nodes["a"].federation.coordinator.state.term
        await nodes["a"].stop()
        rest = [nodes["b"], nodes["c"]]
        await until(lambda: agreed(rest) == "b", 5.0, "b to take over")
        second_term = nodes["b"].federation.coordinator.state.term
        assert second_term > first_term

        await nodes["a"].start()  # same node id, new boot; its term was persisted
        assert nodes["a"].federation.coordinator.state.term >= first_term
        await until(lambda: agreed(all_nodes) == "b", 10.0, "a to follow b")
        assert nodes["b"].federation.coordinator.state.term == second_term  # no new election
    finally:
        for node in nodes.values():
            await node.stop()


async def test_a_two_node_swarm_fails_over_and_the_returning_node_follows(tmp_path):
    """Two nodes: the coordinator dies, the survivor leads (alone, so solo: no new term); the
    dead one comes back and follows it, and the survivor's role is confirmed by vote."""
    nodes = make_swarm(tmp_path, ["a", "b"], KEY, scores={"a": 5.0, "b": 1.0})

    def election(name: str) -> Coordinator:
        return nodes[name].federation.coordinator

    try:
        for node in nodes.values():
            await node.start()
        both = list(nodes.values())
        await until(lambda: agreed(both) == "a", 10.0, "a to lead")
        term = election("a").state.term
        await nodes["a"].stop()
        await until(lambda: election("b").role is Role.COORDINATOR, 5.0, "b to take over alone")
        assert election("b").state.solo and election("b").state.term == term  # won nothing
        await nodes["a"].start()  # better ranked, yet it follows the sitting coordinator
        await until(lambda: agreed(both) == "b" and not election("b").state.solo, 10.0,
                    "a to follow b, and b's role confirmed by vote")
        assert election("b").state.term > term and election("a").state.coordinator == "b"
    finally:
        for node in nodes.values():
            await node.stop()


async def test_with_api_keys_nodes_still_elect_and_read_the_plan_by_signature(tmp_path, http):
    keyed = {"api.keys": ["sk-test"]}
    nodes = make_swarm(tmp_path, ["a", "b", "c"], KEY, extra=dict.fromkeys("abc", keyed),
                       scores={"a": 3.0, "b": 2.0, "c": 1.0})
    try:
        for node in nodes.values():
            await node.start()
        all_nodes = list(nodes.values())
        await until(lambda: agreed(all_nodes) == "a", 10.0, "a to lead")
        b = nodes["b"].federation.coordinator
        await until(lambda: b.consensus_members() is not None, 5.0,
                    "b to read a's plan with a signed GET (no API key)")
        async with http.get(nodes["a"].url + "/v1/federation/plan") as r:
            assert r.status == 401  # an unsigned reader needs the API key
        async with http.get(nodes["a"].url + "/v1/federation/plan",
                            headers={"Authorization": "Bearer sk-test"}) as r:
            assert r.status == 200 and (await r.json())["coordinator"] == "a"
        # consensus through b draws on the peers a's plan picks
        body = {"messages": [{"role": "user", "content": "Capital of France?"}], "max_tokens": 8,
                "swarm": {"strategy": "weighted_vote", "n": 3}}
        async with http.post(nodes["b"].url + "/v1/chat/completions", json=body,
                             headers={"Authorization": "Bearer sk-test"}) as r:
            reply = await r.json()
            assert r.status == 200, reply
        assert {c["source"].split("/")[0] for c in reply["swarm"]["candidates"]} >= {"a", "c"}
    finally:
        for node in nodes.values():
            await node.stop()


class _PlanPeer:
    """A fake election client whose coordinator serves a fixed plan."""

    def __init__(self, plan: SwarmPlan) -> None:
        self.served = plan

    async def election(self, *_args: object) -> list[object]:
        return []

    async def plan(self, *_args: object) -> SwarmPlan:
        return self.served


async def test_a_follower_refuses_a_plan_older_than_the_term_it_follows(caplog):
    caplog.set_level(logging.INFO, logger="network.coordination.following")
    membership = Membership("a", 1, "")
    advert = PeerAdvert(node_id="b", boot_id="b1", protocol=1, api_port=17615)
    membership.discovered(advert, Address("127.0.0.1", 17615), 0.0)
    membership.heartbeat_ok("b", Heartbeat(node_id="b", boot_id="b1", protocol=1,
                                           api_port=17615, capabilities=("vote",), term=5,
                                           coordinator="b"), 0.0)
    now = [10.0]
    stale = SwarmPlan(term=4, coordinator="b", consensus=("b",),
                      members=(PlanMember(node_id="b"),))
    client = _PlanPeer(stale)
    local = PlanMember(node_id="a")
    coordinator = Coordinator(Candidate("a"), membership, client, lambda: local,
                              clock=lambda: now[0])
    coordinator._apply(step(coordinator.state, coordinator.view(), now[0]))
    assert (coordinator.state.coordinator, coordinator.state.leader_term) == ("b", 5)

    await coordinator.follower.fetch("b")
    assert coordinator.consensus_members() is None  # stale: own view instead
    assert "refused a plan of b for term 4" in caplog.text

    client.served = SwarmPlan(term=5, coordinator="b", consensus=("b",),
                              members=(PlanMember(node_id="b"),))
    await coordinator.follower.fetch("b")
    assert coordinator.consensus_members() == ["b"]
    now[0] += 10.0  # not refreshed for longer than plan_max_age_s: own view again
    assert coordinator.consensus_members() is None


class _CountingPlanPeer(_PlanPeer):
    def __init__(self, plan: SwarmPlan) -> None:
        super().__init__(plan)
        self.fetched = 0

    async def plan(self, *_args: object) -> SwarmPlan:
        self.fetched += 1
        return self.served


async def test_a_follower_fetches_the_plan_only_when_the_leaders_heartbeat_names_a_new_one():
    membership = Membership("a", 1, "")
    membership.discovered(PeerAdvert(node_id="b", boot_id="b1", protocol=1, api_port=17615),
                          Address("127.0.0.1", 17615), 0.0)
    plan = SwarmPlan(term=5, coordinator="b", consensus=("b",), members=(PlanMember(node_id="b"),))

    def beat(revision: str, at: float) -> None:
        membership.heartbeat_ok("b", Heartbeat(node_id="b", boot_id="b1", protocol=1,
                                               api_port=17615, capabilities=("vote",), term=5,
                                               coordinator="b", plan=revision), at)

    beat(plan.revision, 0.0)
    now = [10.0]
    client = _CountingPlanPeer(plan)
    coordinator = Coordinator(Candidate("a"), membership, client, lambda: PlanMember(node_id="a"),
                              clock=lambda: now[0], plan_every_s=0.01)
    coordinator._apply(step(coordinator.state, coordinator.view(), now[0]))
    assert coordinator.state.coordinator == "b"
    await coordinator.follower.fetch("b")
    assert client.fetched == 1 and coordinator.follower.current("b")
    now[0] += 10.0
    beat(plan.revision, now[0])  # the same revision, heard again: nothing to fetch
    assert coordinator.follower.current("b")
    client.served = SwarmPlan(term=5, coordinator="b", consensus=("b", "c"),
                              members=(PlanMember(node_id="b"), PlanMember(node_id="c")))
    assert client.served.revision != plan.revision
    beat(client.served.revision, now[0])  # the leader's plan changed: fetch it
    assert not coordinator.follower.current("b")
    await coordinator.follower.fetch("b")
    assert client.fetched == 2 and coordinator.consensus_members() == ["b", "c"]
