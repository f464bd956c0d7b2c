"""Who beats whom every interval (the ring of `Membership.watchers`/`watched`), how long a peer
nobody here watches may be quiet, and the suspects a heartbeat names: pure, hypothesis-tested."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from network.membership.records import RECENT_DEATH_S, WATCHERS, PeerState, Timings
from network.membership.table import Membership
from network.wire.address import Address
from tests.test_membership import FP, PROTO, advert, beat

T = Timings()
ids = st.sets(st.integers(0, 999), min_size=1, max_size=30).map(
    lambda numbers: [f"n{i}" for i in sorted(numbers)])


def table_of(me: str, everyone: list[str], now: float = 0.0) -> Membership:
    m = Membership(me, PROTO, FP, timings=T)
    for node_id in everyone:
        if node_id != me:
            m.discovered(advert(node_id), Address("10.0.0.1", 1), now)
            m.heartbeat_ok(node_id, beat(node_id), now)
    return m


@settings(deadline=None, max_examples=50)  # no deadline: a loaded CI machine must not fail it
@given(members=ids)
def test_the_ring_is_consistent_when_views_agree(members: list[str]) -> None:
    tables = {me: table_of(me, members) for me in members}
    k = min(WATCHERS, len(members) - 1)
    for me, m in tables.items():
        assert len(m.watchers()) == k and len(m.watched()) == k
        assert me not in m.watchers() | m.watched()
        for other in m.watchers():
            assert me in tables[other].watched()  # whom I beat fast expects me fast
    for member in members:  # every member is watched by k others
        assert sum(member in m.watched() for m in tables.values()) == k


@settings(deadline=None)  # timing-free: a loaded CI machine must not fail it
@given(members=ids, quiet=st.floats(0.0, 5.0))
def test_only_watched_peers_go_suspect_after_a_second_of_silence(members: list[str],
                                                                  quiet: float) -> None:
    me = members[0]
    m = table_of(me, members)
    watched = m.watched()
    m.tick(quiet)
    for peer in m.peers():
        limit = T.suspect_after_s if peer.node_id in watched else T.slow_suspect_s
        if quiet > T.give_up_s:
            assert peer.state is PeerState.DEAD
        else:
            assert (peer.state is PeerState.SUSPECT) == (quiet > limit), (peer, quiet)


@settings(deadline=None)  # timing-free: a loaded CI machine must not fail it
@given(died_ago=st.floats(0.0, 10.0))
def test_suspects_name_suspected_and_just_dead_peers(died_ago: float) -> None:
    m = table_of("me", ["me", "a", "b", "c"])
    m.heartbeat_failed("a", 0.5, "refused")  # suspect
    m.heartbeat_failed("b", 0.5, "refused")
    m.heartbeat_failed("b", 1.0, "refused")  # dead at 1.0
    dead = m.get("b")
    assert dead is not None and dead.state is PeerState.DEAD
    now = 1.0 + died_ago
    expected = ("a", "b") if died_ago < RECENT_DEATH_S else ("a",)
    assert m.suspects(now) == expected
    assert "c" not in m.suspects(now)
