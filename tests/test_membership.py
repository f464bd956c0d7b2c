"""The membership core under a fake clock: joins, deaths, recoveries, restarts, busy peers, caps."""
from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.membership import table as membership_module
from network.membership.table import Change, ChangeKind, Membership, PeerState, Timings
from network.wire.address import Address
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert
from tests.module_imports import imported_packages

ME, FP, PROTO = "self", "ab12", 1
T = Timings()


def advert(node_id: str = "n1", boot_id: str = "b1", **kw: object) -> PeerAdvert:
    base = {"protocol": PROTO, "api_port": 17615, "fingerprint": FP}
    return PeerAdvert(node_id=node_id, boot_id=boot_id, **{**base, **kw})  # type: ignore[arg-type]


def beat(node_id: str = "n1", boot_id: str = "b1", **kw: object) -> Heartbeat:
    base = {"protocol": PROTO, "api_port": 17615, "swarm": FP}
    return Heartbeat(node_id=node_id, boot_id=boot_id, **{**base, **kw})  # type: ignore[arg-type]


def kinds(changes: list[Change]) -> list[ChangeKind]:
    return [c.kind for c in changes]


def table(**kw: object) -> Membership:
    return Membership(ME, PROTO, FP, **kw)  # type: ignore[arg-type]


# What the peer does with a probe sent at time t: ("ok", latency), ("refused",) or ("silent",).
Behaviour = Callable[[float], tuple]


@dataclass
class ProbeSim:
    """The heartbeat adapter on a fake clock: pipelined probes every interval, ticks every 50 ms."""

    peer: Behaviour
    timings: Timings = T
    m: Membership = field(default_factory=table)
    now: float = 0.0
    states: list[tuple[float, PeerState]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)

    def run(self, until: float) -> None:
        t = self.timings
        self.changes += self.m.discovered(advert(), Address("10.77.0.1", 17615), self.now)
        seq = itertools.count()
        queue: list[tuple[float, int, Callable[[], list[Change]]]] = []
        for k in range(int(until / t.interval_s) + 1):
            sent = self.now + k * t.interval_s
            outcome = self.peer(sent)
            if outcome[0] == "ok" and outcome[1] <= t.request_timeout_s:
                at, event = sent + outcome[1], self._ok
            elif outcome[0] == "ok":
                at, event = sent + t.request_timeout_s, self._failed
            elif outcome[0] == "refused":
                at, event = sent + 0.001, self._failed
            else:
                at, event = sent + t.connect_timeout_s, self._failed
            heapq.heappush(queue, (at, next(seq), event))
        for k in range(int(until / 0.05) + 1):
            heapq.heappush(queue, (self.now + k * 0.05, next(seq), self._tick))
        while queue and queue[0][0] <= until:
            self.now, _, event = heapq.heappop(queue)
            self.changes += event()
            self.states.append((self.now, self.m.get("n1").state))  # type: ignore[union-attr]

    def _ok(self) -> list[Change]:
        return self.m.heartbeat_ok("n1", beat(), self.now)

    def _failed(self) -> list[Change]:
        return self.m.heartbeat_failed("n1", self.now, "connection refused")

    def _tick(self) -> list[Change]:
        return self.m.tick(self.now)

    def first(self, after: float, test: Callable[[PeerState], bool]) -> float:
        return next(t for t, s in self.states if t >= after and test(s))


def test_discovered_peer_joins_on_its_first_answer() -> None:
    m = table()
    assert m.discovered(advert(), Address("10.77.0.1", 17615), 0.0) == []
    assert m.get("n1").state is PeerState.JOINING and m.routable() == ()  # type: ignore[union-attr]
    changes = m.heartbeat_ok("n1", beat(load=0.5), 0.1)
    assert kinds(changes) == [ChangeKind.JOINED]
    assert [p.node_id for p in m.routable()] == ["n1"]
    assert m.get("n1").heartbeat.load == 0.5  # type: ignore[union-attr]
    assert m.heartbeat_ok("n1", beat(), 0.6) == []


@settings(max_examples=40, deadline=None)
@given(kill_at=st.floats(0.0, 2.0), mode=st.sampled_from(["refused", "silent"]))
def test_a_killed_or_cut_peer_leaves_routing_fast_and_comes_back(kill_at: float, mode: str) -> None:
    heal_at = kill_at + 3.0
    sim = ProbeSim(lambda t: ("ok", 0.002) if t < 1.0 + kill_at or t >= 1.0 + heal_at else (mode,))
    sim.run(until=1.0 + heal_at + 2.0)
    down, up = 1.0 + kill_at, 1.0 + heal_at
    out = sim.first(down, lambda s: s is not PeerState.ALIVE) - down
    dead = sim.first(down, lambda s: s is PeerState.DEAD) - down
    back = sim.first(up, lambda s: s is PeerState.ALIVE) - up
    assert out <= 1.0 and dead <= 1.5, (out, dead)
    assert back <= T.interval_s + 0.01
    assert ChangeKind.LEFT in kinds(sim.changes) and ChangeKind.RECOVERED in kinds(sim.changes)


@settings(max_examples=30, deadline=None)
@given(latencies=st.lists(st.floats(0.0, T.request_timeout_s * 0.99), min_size=1, max_size=50))
def test_a_busy_peer_that_answers_within_the_request_timeout_is_never_dead(
        latencies: list[float]) -> None:
    sim = ProbeSim(lambda t: ("ok", latencies[int(t / T.interval_s) % len(latencies)]))
    sim.run(until=40.0)
    assert all(s is not PeerState.DEAD for _, s in sim.states)
    assert ChangeKind.LEFT not in kinds(sim.changes)


def test_a_dead_peer_that_answers_is_alive_again_immediately() -> None:
    m = table()
    m.discovered(advert(), Address("a", 1), 0.0)
    m.heartbeat_ok("n1", beat(), 0.0)
    assert kinds(m.heartbeat_failed("n1", 0.5)) == [ChangeKind.SUSPECTED]
    assert kinds(m.heartbeat_failed("n1", 1.0)) == [ChangeKind.LEFT]
    assert m.heartbeat_failed("n1", 1.5) == [] and m.get("n1").misses == 3  # type: ignore[union-attr]
    changes = m.heartbeat_ok("n1", beat(), 9.0)
    assert kinds(changes) == [ChangeKind.RECOVERED] and changes[0].previous is PeerState.DEAD
    assert m.get("n1").misses == 0 and m.routable()  # type: ignore[union-attr]


def test_silence_makes_suspect_and_silence_plus_a_miss_makes_dead() -> None:
    m = table()
    m.discovered(advert(), Address("a", 1), 0.0)
    m.heartbeat_ok("n1", beat(), 0.0)
    assert m.tick(T.suspect_after_s) == []
    assert kinds(m.tick(T.suspect_after_s + 0.01)) == [ChangeKind.SUSPECTED]
    assert m.tick(T.give_up_s) == []  # slow answers may still be on their way
    assert kinds(m.tick(T.give_up_s + 0.01)) == [ChangeKind.LEFT]
    m.heartbeat_ok("n1", beat(), 20.0)
    m.heartbeat_failed("n1", 20.5)
    assert kinds(m.tick(20.0 + T.dead_after_s)) == [ChangeKind.LEFT]


def test_a_peer_that_never_answers_is_unreachable() -> None:
    m = table()
    m.discovered(advert(), Address("a", 1), 0.0)
    assert m.heartbeat_failed("n1", 0.1, "connection refused") == []
    assert m.get("n1").state is PeerState.JOINING  # type: ignore[union-attr]
    changes = m.heartbeat_failed("n1", 0.6, "connection refused")
    assert kinds(changes) == [ChangeKind.UNREACHABLE] and "refused" in changes[0].reason
    assert kinds(m.heartbeat_ok("n1", beat(), 5.0)) == [ChangeKind.JOINED]


def test_a_new_boot_id_is_a_restart_from_mdns_or_from_the_heartbeat() -> None:
    m = table()
    m.discovered(advert(), Address("a", 1), 0.0)
    m.heartbeat_ok("n1", beat(), 0.0)
    changes = m.discovered(advert(boot_id="b2"), Address("a", 1), 1.0)
    assert kinds(changes) == [ChangeKind.RESTARTED] and "b1 -> b2" in changes[0].reason
    assert m.get("n1").state is PeerState.JOINING and not m.routable()  # type: ignore[union-attr]
    assert kinds(m.heartbeat_ok("n1", beat(boot_id="b2"), 1.1)) == [ChangeKind.JOINED]
    changes = m.heartbeat_ok("n1", beat(boot_id="b3"), 2.0)
    assert kinds(changes) == [ChangeKind.RESTARTED, ChangeKind.JOINED]
    assert m.get("n1").advert.boot_id == "b3"  # type: ignore[union-attr]
    assert m.discovered(advert(boot_id="b3", model_id="new"), Address("b", 1), 3.0) == []
    assert m.get("n1").address == Address("b", 1) and m.routable()  # type: ignore[union-attr]


def test_foreign_peers_are_listed_with_a_reason_and_never_routed() -> None:
    m = table()
    changes = m.discovered(advert("n2", fingerprint="ffff"), Address("a", 1), 0.0)
    assert kinds(changes) == [ChangeKind.FOREIGN] and "another swarm" in changes[0].reason
    assert m.heartbeat_ok("n2", beat("n2", swarm="ffff"), 0.1) == []
    assert m.discovered(advert("n2", fingerprint="ffff"), Address("a", 1), 0.2) == []
    assert kinds(m.discovered(advert("n2", protocol=2, fingerprint="ffff"), Address("a", 1), 0.3)) == [
        ChangeKind.FOREIGN]
    assert m.discovered(advert("n2"), Address("a", 1), 0.4) == []  # key rotated into our swarm
    assert m.get("n2").state is PeerState.JOINING  # type: ignore[union-attr]
    changes = m.heartbeat_ok("n2", beat("n2", protocol=7), 0.5)
    assert kinds(changes) == [ChangeKind.FOREIGN] and "protocol 7" in changes[0].reason
    assert m.routable() == () and m.tick(100.0) == []


def test_own_id_and_impostors() -> None:
    m = table(self_boot_id="me1")
    assert m.discovered(advert(ME, "me1"), Address("a", 1), 0.0) == []
    assert kinds(m.discovered(advert(ME, "other"), Address("b", 1), 0.0)) == [ChangeKind.IGNORED]
    assert len(m) == 0
    m.discovered(advert(), Address("a", 1), 0.0)
    changes = m.heartbeat_ok("n1", beat("n9"), 0.1)
    assert changes == [] and m.get("n1").reason == "answered as 'n9'"  # type: ignore[union-attr]


def test_goodbye_forgets_the_peer() -> None:
    m = table()
    m.discovered(advert(), Address("a", 1), 0.0)
    m.heartbeat_ok("n1", beat(), 0.0)
    assert kinds(m.removed("n1")) == [ChangeKind.LEFT] and len(m) == 0
    m.discovered(advert("n2"), Address("a", 1), 0.0)
    assert kinds(m.removed("n2")) == [ChangeKind.FORGOTTEN]
    assert m.removed("n3") == []


def test_the_table_is_capped_and_only_dead_or_foreign_records_make_room() -> None:
    m = table(max_peers=3)
    for i in range(3):
        m.discovered(advert(f"n{i}"), Address("a", 1), 0.0)
        m.heartbeat_ok(f"n{i}", beat(f"n{i}"), 0.0)
    changes = m.discovered(advert("n9"), Address("a", 1), 1.0)
    assert kinds(changes) == [ChangeKind.IGNORED] and "full (3" in changes[0].reason
    m.heartbeat_failed("n1", 2.0)
    m.heartbeat_failed("n1", 2.5)
    assert m.get("n1").state is PeerState.DEAD  # type: ignore[union-attr]
    changes = m.discovered(advert("n9"), Address("a", 1), 3.0)
    assert kinds(changes) == [ChangeKind.FORGOTTEN] and changes[0].node_id == "n1"
    assert sorted(p.node_id for p in m.peers()) == ["n0", "n2", "n9"]


events = st.one_of(
    st.tuples(st.just("discovered"), st.sampled_from(["n1", "n2", "n3", "n4"]),
              st.sampled_from(["b1", "b2"]), st.sampled_from([FP, "ffff"])),
    st.tuples(st.just("ok"), st.sampled_from(["n1", "n2", "n3", "n4"]),
              st.sampled_from(["b1", "b2"])),
    st.tuples(st.just("failed"), st.sampled_from(["n1", "n2", "n3", "n4"])),
    st.tuples(st.just("removed"), st.sampled_from(["n1", "n2", "n3", "n4"])),
    st.tuples(st.just("tick")))


def _replay(script: list[tuple[float, tuple]]) -> tuple[Membership, list[Change]]:
    m, out, now = table(max_peers=3), [], 0.0
    for dt, ev in script:
        now += dt
        if ev[0] == "discovered":
            out += m.discovered(advert(ev[1], ev[2], fingerprint=ev[3]), Address("a", 1), now)
        elif ev[0] == "ok":
            out += m.heartbeat_ok(ev[1], beat(ev[1], ev[2]), now)
        elif ev[0] == "failed":
            out += m.heartbeat_failed(ev[1], now)
        elif ev[0] == "removed":
            out += m.removed(ev[1])
        else:
            out += m.tick(now)
    return m, out


@settings(max_examples=150, deadline=None)
@given(script=st.lists(st.tuples(st.floats(0.0, 3.0), events), max_size=40))
def test_any_event_sequence_keeps_the_invariants(script: list[tuple[float, tuple]]) -> None:
    m, out = _replay(script)
    assert _replay(script)[1] == out  # deterministic
    assert len(m) <= 3
    assert m.routable() == tuple(p for p in m.peers() if p.state is PeerState.ALIVE)
    for peer in m.peers():
        assert (peer.state is PeerState.FOREIGN) == (peer.advert.fingerprint != FP)
        if peer.state is PeerState.ALIVE:
            assert peer.misses == 0 and peer.last_ok is not None


def test_timings_are_validated() -> None:
    with pytest.raises(ValueError):
        Timings(interval_s=2.0)
    with pytest.raises(ValueError):
        Timings(connect_timeout_s=9.0)
    with pytest.raises(ValueError):
        Timings(dead_after_misses=0)
    assert replace(T, interval_s=0.25).give_up_s == T.request_timeout_s + 0.5


def test_the_core_is_pure() -> None:
    imported = imported_packages(membership_module)
    assert not imported & {"asyncio", "time", "socket", "random", "threading"}


def test_a_previous_swarm_key_is_still_accepted_during_a_rotation() -> None:
    m = table(also_accepted=frozenset({"0ld"}))
    assert m.discovered(advert("n2", fingerprint="0ld"), Address("a", 1), 0.0) == []
    assert kinds(m.heartbeat_ok("n2", beat("n2", swarm="0ld"), 0.1)) == [ChangeKind.JOINED]
    changes = m.discovered(advert("n3", fingerprint="ffff"), Address("b", 1), 0.2)
    assert kinds(changes) == [ChangeKind.FOREIGN] and [p.node_id for p in m.routable()] == ["n2"]


def test_a_refused_heartbeat_keeps_the_peer_foreign_until_it_restarts() -> None:
    m = table()
    m.discovered(advert("n2"), Address("a", 1), 0.0)
    m.heartbeat_ok("n2", beat("n2"), 0.1)
    changes = m.refused(advert("n2"), Address("a", 1), 0.2, "another swarm key (fingerprint x)")
    assert kinds(changes) == [ChangeKind.FOREIGN] and changes[0].previous is PeerState.ALIVE
    assert m.refused(advert("n2"), Address("a", 1), 0.3, "another swarm key (fingerprint x)") == []
    assert m.discovered(advert("n2"), Address("a", 1), 0.4) == []  # same boot: still refused
    assert m.heartbeat_ok("n2", beat("n2"), 0.5) == [] and m.routable() == ()
    assert m.get("n2").reason == "another swarm key (fingerprint x)"  # type: ignore[union-attr]
    assert m.discovered(advert("n2", "b2"), Address("a", 1), 0.6) == []  # restarted: probed again
    assert kinds(m.heartbeat_ok("n2", beat("n2", "b2"), 0.7)) == [ChangeKind.JOINED]
    assert m.refused(advert(ME), Address("z", 1), 0.8, "x") == []  # never our own id


def test_refused_strangers_respect_the_table_cap() -> None:
    m = table(max_peers=1)
    m.discovered(advert("n1"), Address("a", 1), 0.0)
    m.heartbeat_ok("n1", beat("n1"), 0.1)
    assert kinds(m.refused(advert("n9"), Address("z", 1), 0.2, "no swarm key")) == [ChangeKind.IGNORED]
    assert [p.node_id for p in m.peers()] == ["n1"]


# --- approval (--approve-peers) -----------------------------------------------------------------

def test_an_unapproved_peer_with_the_key_is_pending_and_never_routed() -> None:
    approved: set[str] = set()
    m = table(approved=approved.__contains__)
    m.discovered(advert("n1"), Address("a", 1), 0.0)
    changes = m.heartbeat_ok("n1", beat("n1"), 0.1)
    assert kinds(changes) == [ChangeKind.PENDING] and changes[0].previous is PeerState.JOINING
    peer = m.get("n1")
    assert peer is not None and peer.state is PeerState.PENDING and not peer.routable
    assert "python main.py peers approve n1" in peer.reason
    assert m.routable() == ()
    assert m.heartbeat_ok("n1", beat("n1"), 0.5) == []  # still pending: no new change
    assert m.tick(0.5 + T.suspect_after_s + 0.1) == []  # a quiet pending peer is not "suspect"
    approved.add("n1")
    changes = m.reconsider("n1", 1.7)
    assert kinds(changes) == [ChangeKind.JOINED] and changes[0].previous is PeerState.PENDING
    assert [p.node_id for p in m.routable()] == ["n1"]  # at once, not on the next heartbeat
    approved.discard("n1")
    assert kinds(m.reconsider("n1", 1.8)) == [ChangeKind.PENDING] and m.routable() == ()
    assert m.reconsider("n1", 1.9) == [] and m.reconsider("n9", 1.9) == []


def test_a_pending_peer_that_goes_quiet_dies_and_returns_pending() -> None:
    m = table(approved=lambda _id: False)
    m.discovered(advert("n1"), Address("a", 1), 0.0)
    m.heartbeat_ok("n1", beat("n1"), 0.1)
    assert kinds(m.heartbeat_failed("n1", 0.2, "refused")) == []  # one miss: still pending
    assert m.get("n1").state is PeerState.PENDING  # type: ignore[union-attr]
    assert kinds(m.heartbeat_failed("n1", 0.3, "refused")) == [ChangeKind.LEFT]
    assert kinds(m.heartbeat_ok("n1", beat("n1"), 0.4)) == [ChangeKind.PENDING]
    assert kinds(m.heartbeat_ok("n1", beat("n1", "b2"), 0.5)) == [ChangeKind.RESTARTED,
                                                                   ChangeKind.PENDING]
    assert kinds(m.removed("n1")) == [ChangeKind.FORGOTTEN]  # never was a member


approval_events = st.one_of(events, st.tuples(st.just("approve"), st.sampled_from(["n1", "n2"])),
                            st.tuples(st.just("revoke"), st.sampled_from(["n1", "n2"])))


@settings(max_examples=150, deadline=None)
@given(script=st.lists(st.tuples(st.floats(0.0, 3.0), approval_events), max_size=40))
def test_only_approved_peers_are_ever_routable(script: list[tuple[float, tuple]]) -> None:
    approved: set[str] = set()
    m, now = table(max_peers=3, approved=approved.__contains__), 0.0
    for dt, ev in script:
        now += dt
        if ev[0] in ("approve", "revoke"):
            (approved.add if ev[0] == "approve" else approved.discard)(ev[1])
            m.reconsider(ev[1], now)
        else:
            _replay_one(m, ev, now)
        for peer in m.peers():
            if peer.state in (PeerState.ALIVE, PeerState.SUSPECT):
                assert peer.node_id in approved, peer
            if peer.state is PeerState.PENDING:
                assert peer.node_id not in approved and peer.last_ok is not None
            if peer.state is PeerState.ALIVE:
                assert peer.misses == 0 and peer.last_ok is not None


def _replay_one(m: Membership, ev: tuple, now: float) -> None:
    if ev[0] == "discovered":
        m.discovered(advert(ev[1], ev[2], fingerprint=ev[3]), Address("a", 1), now)
    elif ev[0] == "ok":
        m.heartbeat_ok(ev[1], beat(ev[1], ev[2]), now)
    elif ev[0] == "failed":
        m.heartbeat_failed(ev[1], now)
    elif ev[0] == "removed":
        m.removed(ev[1])
    else:
        m.tick(now)


def test_approving_a_pending_peer_that_just_missed_a_probe_makes_it_suspect() -> None:
    approved: set[str] = set()
    m = table(approved=approved.__contains__)
    m.discovered(advert("n1"), Address("a", 1), 0.0)
    m.heartbeat_ok("n1", beat("n1"), 0.1)
    m.heartbeat_failed("n1", 0.2, "refused")
    approved.add("n1")
    changes = m.reconsider("n1", 0.3)
    assert kinds(changes) == [ChangeKind.JOINED] and changes[0].peer.state is PeerState.SUSPECT  # type: ignore[union-attr]
    assert m.routable() == ()
    assert kinds(m.heartbeat_ok("n1", beat("n1"), 0.4)) == [ChangeKind.RECOVERED]
    assert [p.node_id for p in m.routable()] == ["n1"]
