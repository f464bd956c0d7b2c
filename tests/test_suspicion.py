"""A starved prober blames nobody, a timed-out peer dies only once another member suspects it,
and suspicions set off a bounded number of probes: the pure cores, hypothesis-tested."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from network.membership.records import Miss, PeerState, Timings
from network.membership.suspicion import LAG_TOLERANCE_S, LoopLag, ProbeBudget, blame
from network.membership.table import Membership
from network.wire.address import Address
from tests.test_membership import FP, PROTO, advert, beat

T = Timings()


@settings(deadline=None)
@given(elapsed=st.floats(0.0, 10.0), timeout=st.floats(0.01, 5.0), lag=st.floats(0.0, 5.0))
def test_a_timeout_counts_only_when_the_loop_was_on_time(elapsed: float, timeout: float,
                                                         lag: float) -> None:
    late = max(elapsed - timeout, lag)
    assert blame(True, elapsed, timeout, lag) == (late <= LAG_TOLERANCE_S)
    assert blame(False, elapsed, timeout, lag)  # a refusal is the peer's, however late we are


@settings(deadline=None)
@given(samples=st.lists(st.tuples(st.floats(0.0, 100.0), st.floats(-1.0, 2.0)), max_size=40),
       since=st.floats(0.0, 100.0))
def test_loop_lag_reports_the_worst_lateness_since(samples: list[tuple[float, float]],
                                                   since: float) -> None:
    lag = LoopLag()
    samples.sort()
    seen = []
    for ran, late in samples:
        observed = lag.observe(ran - late, ran)
        assert observed >= 0.0 and abs(observed - max(0.0, late)) < 1e-9
        seen.append((ran, observed))
    now = samples[-1][0] if samples else 0.0
    start = max(since, now - 5.0)
    expected = max((late for ran, late in seen if ran >= start), default=0.0)
    assert lag.worst(since, now) == expected


@settings(deadline=None)
@given(asks=st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e"]),
                               st.floats(0.0, 0.3)), max_size=200))
def test_suspicion_probes_are_bounded(asks: list[tuple[str, float]]) -> None:
    budget = ProbeBudget(gap_s=0.5, rate=8.0, burst=4)
    now, allowed = 0.0, []
    for node_id, step in asks:
        now += step
        if budget.allow(node_id, now):
            allowed.append((now, node_id))
    for at, node_id in allowed:  # one per peer per gap
        assert not [t for t, n in allowed if n == node_id and at < t < at + 0.5]
    for at, _ in allowed:  # any window of 1 s holds at most burst + rate * 1 s
        assert len([t for t, _ in allowed if at <= t < at + 1.0]) <= 4 + 8


def members(me: str, others: list[str]) -> Membership:
    m = Membership(me, PROTO, FP, timings=T)
    for node_id in others:
        m.discovered(advert(node_id), Address("10.0.0.1", 1), 0.0)
        m.heartbeat_ok(node_id, beat(node_id), 0.0)
    return m


@settings(deadline=None)
@given(misses=st.integers(1, 6), confirm_at=st.one_of(st.none(), st.floats(0.01, 4.0)))
def test_timeouts_kill_only_once_another_member_suspects_too(misses: int,
                                                             confirm_at: float | None) -> None:
    m = members("me", ["p", "q"])
    now = 0.0
    for _ in range(misses):
        now += 0.5
        if confirm_at is not None and confirm_at <= now:
            m.heartbeat_ok("q", beat("q", suspects=("p",)), confirm_at)
        m.heartbeat_failed("p", now, "no TCP accept in 0.5 s", miss=Miss.TIMED_OUT)
        m.heartbeat_ok("q", beat("q"), now)  # q keeps answering
        m.tick(now)
    p = m.get("p")
    assert p is not None
    deadish = misses >= T.dead_after_misses or now >= T.dead_after_s
    confirmed = confirm_at is not None and confirm_at <= now
    assert (p.state is PeerState.DEAD) == (deadish and confirmed), (p, now)
    assert p.state is not PeerState.ALIVE


def test_a_refusal_kills_without_confirmation() -> None:
    m = members("me", ["p", "q"])
    m.heartbeat_failed("p", 0.5, "HTTP 500")
    assert m.get("p").state is PeerState.SUSPECT  # type: ignore[union-attr]
    m.heartbeat_failed("p", 0.6, "HTTP 500")
    assert m.get("p").state is PeerState.DEAD  # type: ignore[union-attr]


@settings(deadline=None)
@given(quiet=st.floats(0.0, 5.0), misses=st.integers(0, 3))
def test_a_closed_port_kills_at_once(quiet: float, misses: int) -> None:
    m = members("me", ["p", "q"])
    for k in range(misses):
        m.heartbeat_failed("p", quiet * k / 4, "no TCP accept in 0.5 s", miss=Miss.TIMED_OUT)
    m.heartbeat_failed("p", quiet, "connect failed (Connection refused)", miss=Miss.CLOSED)
    assert m.get("p").state is PeerState.DEAD  # type: ignore[union-attr]


def test_timeouts_kill_alone_when_nobody_else_can_be_asked() -> None:
    m = members("me", ["p"])
    m.heartbeat_failed("p", 0.5, "no TCP accept in 0.5 s", miss=Miss.TIMED_OUT)
    m.heartbeat_failed("p", 1.0, "no TCP accept in 0.5 s", miss=Miss.TIMED_OUT)
    assert m.get("p").state is PeerState.DEAD  # type: ignore[union-attr]


def test_an_unconfirmed_suspect_still_dies_after_giving_up() -> None:
    m = members("me", ["p", "q"])
    m.heartbeat_failed("p", 0.5, "no TCP accept in 0.5 s", miss=Miss.TIMED_OUT)
    m.heartbeat_ok("q", beat("q"), T.give_up_s + 0.5)
    m.tick(T.give_up_s + 0.5)
    assert m.get("p").state is PeerState.DEAD  # type: ignore[union-attr]


@settings(deadline=None)
@given(gap=st.floats(0.4, 0.7), named_at=st.one_of(st.none(), st.floats(-3.0, -0.1)))
def test_an_unconfirmed_suspect_probed_back_to_back_dies_after_giving_up(
        gap: float, named_at: float | None) -> None:
    """A cut-off peer that no other member names (one that holds it dead since before its last
    answer names it no more): its probes time out one after another, so one is out at every tick
    and silence alone never kills it; the failed probe that ends past `give_up_s` of silence does
    (it waited 30 s, `hung_s`, before)."""
    m = members("me", ["p", "q"])
    if named_at is not None:
        m.heartbeat_ok("q", beat("q", suspects=("p",)), named_at)  # before p last answered (0)
    now = 0.0
    while now <= T.give_up_s:
        now += gap
        m.heartbeat_ok("q", beat("q"), now)  # q answers, naming nobody
        m.tick(now, probing=frozenset({"p"}))  # the next probe of p is already out
        state = m.get("p").state  # type: ignore[union-attr]
        assert state is not PeerState.DEAD, now
        m.heartbeat_failed("p", now, "no TCP accept in 0.5 s", miss=Miss.TIMED_OUT)
        state = m.get("p").state  # type: ignore[union-attr]
        assert (state is PeerState.DEAD) == (now > T.give_up_s), now


def test_a_suspicion_older_than_the_last_answer_confirms_nothing() -> None:
    m = members("me", ["p", "q"])
    m.heartbeat_ok("q", beat("q", suspects=("p",)), 0.2)
    m.heartbeat_ok("p", beat("p"), 0.3)  # p answered us after q named it
    m.heartbeat_failed("p", 0.8, "no answer in 5.0 s", miss=Miss.TIMED_OUT)
    m.heartbeat_failed("p", 1.4, "no answer in 5.0 s", miss=Miss.TIMED_OUT)
    assert m.get("p").state is PeerState.SUSPECT  # type: ignore[union-attr]


@settings(deadline=None)
@given(misses=st.integers(1, 12), gap=st.floats(0.1, 4.0), confirmed=st.booleans())
def test_a_busy_peer_is_suspect_until_hung_never_dead_before(misses: int, gap: float,
                                                             confirmed: bool) -> None:
    """Probes its host accepted but that got no answer: out of routing, never dead (however many,
    whoever else suspects it) until `hung_s` of silence."""
    m = members("me", ["p", "q"])
    now = 0.0
    for _ in range(misses):
        now += gap
        m.heartbeat_ok("q", beat("q", suspects=("p",) if confirmed else ()), now)
        m.heartbeat_failed("p", now, "no answer in 5.0 s (busy?)", miss=Miss.BUSY)
        m.tick(now)
    p = m.get("p")
    assert p is not None and p.busy
    assert (p.state is PeerState.DEAD) == (now >= T.hung_s), (p, now)
    assert p.state is not PeerState.ALIVE
    m.heartbeat_ok("p", beat("p"), now + 0.1)  # an answer in time: a member again at once
    assert m.get("p").state is PeerState.ALIVE and not m.get("p").busy  # type: ignore[union-attr]


@settings(deadline=None)
@given(quiet=st.floats(0.0, 40.0))
def test_silence_does_not_kill_while_a_probe_is_out(quiet: float) -> None:
    """A peer with a probe in flight is judged by that probe (it ends within the request
    timeout), not by silence; only `hung_s` of it kills."""
    m = members("me", ["p", "q"])
    m.heartbeat_ok("q", beat("q"), quiet)
    m.tick(quiet, probing=frozenset({"p"}))
    assert (m.get("p").state is PeerState.DEAD) == (quiet > T.hung_s)  # type: ignore[union-attr]
    assert (m.get("p").state is PeerState.ALIVE) == (quiet <= T.suspect_after_s)  # type: ignore[union-attr]


@settings(deadline=None)
@given(stalls=st.lists(st.tuples(st.floats(0.0, 20.0), st.floats(0.0, 8.0)), max_size=6),
       now=st.floats(0.0, 30.0))
def test_our_own_stalls_are_nobodys_silence(stalls: list[tuple[float, float]], now: float) -> None:
    """While this node's loop stalled, beats waited unread: a peer's silence is the time since
    its last answer less those stalls, and only that silence makes it suspect or dead."""
    m = members("me", ["p"])
    last = 1.0
    m.heartbeat_ok("p", beat("p"), last)
    deaf = [0.0] * 3001  # the stalled time, per 10 ms step (overlapping stalls count once)
    for start, length in stalls:
        m.deaf(start, start + length)
    for k in range(len(deaf)):
        at = k / 100
        deaf[k] = any(start <= at < start + length for start, length in stalls)
    heard = sum(1 for k in range(len(deaf)) if last <= k / 100 < now and not deaf[k]) / 100
    m.tick(now)
    state = m.get("p").state  # type: ignore[union-attr]
    if heard > T.give_up_s + 0.05:
        assert state is PeerState.DEAD
    elif heard < T.give_up_s - 0.05:
        assert state is not PeerState.DEAD
    if heard < T.suspect_after_s - 0.05 and now >= last:  # p is watched: it is our only peer
        assert state is PeerState.ALIVE
