"""The election core: unit rules, then hypothesis schedules on the simulated LAN (tests/election_sim.py)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from hypothesis import assume, example, given, note, settings
from hypothesis import strategies as st

from network.coordination import election as election_module
from network.coordination import records as records_module
from network.coordination import turns as turns_module
from network.coordination import wake as wake_module
from network.coordination.election import (
    Ack,
    Announce,
    Candidate,
    Claim,
    Decision,
    ElectionState,
    ElectionTimings,
    PeerView,
    Role,
    Send,
    accept_plan,
    better,
    boot,
    receive,
    rest,
    step,
)
from tests.election_sim import Fault, Sim, SimConfig
from tests.module_imports import imported_packages

T = ElectionTimings()
LATE = 10.0  # well past every startup grace
BOUND_S = 2.0  # every component settles this soon after the last change, on a LAN
STRESS_BOUND_S = 3.0  # ... and this soon with 10 % message loss or 100 ms one-way latency
STATS: dict[str, int] = {"schedules": 0, "gaps": 0, "joins": 0, "heals": 0, "isolations": 0}
WORST_S: dict[tuple[str, str], float] = {}  # (network, change kind) -> worst settle time
SLEEPS = (0.3, 1.5, 4.0, 60.0, 3600.0)  # a blink, a Wi-Fi blip, a closed lid


def cand(node_id: str, priority: int | None = 0, score: float = 0.0) -> Candidate:
    return Candidate(node_id, priority, score)


def peer(c: Candidate, term: int = 0, coordinator: str | None = None,
         suspect_since: float | None = None, solo: bool = False) -> PeerView:
    return PeerView(c, term, coordinator, suspect_since, solo)


def leading(c: Candidate, term: int) -> PeerView:
    return PeerView(c, term, c.node_id)


def granted(decision: Decision) -> bool:
    """Whether the first message `decision` sends is a granted Ack."""
    message = decision.sends[0].message
    assert isinstance(message, Ack)
    return message.granted


def role_of(sim: Sim, index: int) -> Role | None:
    """The role of node `index` of `sim` (None while it is down)."""
    state = sim.states[index]
    return state.role if state is not None else None


def settled_node(c: Candidate) -> ElectionState:
    return boot(c, 0.0)


# -- order ---------------------------------------------------------------------------------------
def test_order_is_priority_then_score_then_smaller_id() -> None:
    ranked = sorted([cand("b", 0, 9.0), cand("a", 1, 0.0), cand("c", 0, 9.0), cand("z", None, 99.0),
                     cand("d", 0, 1.0)], key=lambda c: c.rank_key)
    assert [c.node_id for c in ranked] == ["a", "b", "c", "d", "z"]
    assert better(cand("a", 1), cand("b", 0, 100.0)) and not better(cand("z", None, 9), cand("y", 0))
    assert not better(cand("a"), cand("a"))
    with pytest.raises(ValueError):
        Candidate("x", 0, float("nan"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, 0, 1, 2]), st.integers(0, 3)), min_size=1,
                max_size=8), st.randoms(use_true_random=False))
def test_order_is_total_and_permutation_invariant(specs: list, rng) -> None:
    cands = [cand(f"n{i}", p, float(s)) for i, (p, s) in enumerate(specs)]
    shuffled = list(cands)
    rng.shuffle(shuffled)
    assert sorted(cands, key=lambda c: c.rank_key) == sorted(shuffled, key=lambda c: c.rank_key)
    for a in cands:
        for b in cands:
            assert (a == b) or (better(a, b) != better(b, a))


# -- single-node rules ---------------------------------------------------------------------------
def test_lone_node_leads_itself_after_the_startup_grace_without_a_new_term() -> None:
    s = boot(cand("a"), 0.0, term=3)
    d = step(s, (), 0.5)
    assert d.state.role is Role.FOLLOWER and d.wake_at == pytest.approx(T.startup_grace_s)
    assert d.wake_at is not None
    d = step(d.state, (), d.wake_at)
    assert d.state.lone and d.wake_at == pytest.approx(T.startup_grace_s + T.claim_delay_s)
    assert d.wake_at is not None
    d = step(d.state, (), d.wake_at)
    assert (d.state.role, d.state.solo, d.state.term, d.state.coordinator) == (Role.COORDINATOR, True, 3, "a")
    assert d.sends == () and d.state.voted_term == 0  # no claim, no vote, no new term


def test_a_joiner_follows_a_solo_leader_which_then_wins_a_real_term_by_its_vote() -> None:
    a, j = cand("a", 0, 1.0), cand("j", 5, 9.0)  # the joiner ranks better
    lead = step(step(boot(a, 0.0, term=3), (), 0.5).state, (), 1.2).state
    assert lead.solo and lead.term == 3
    joiner = step(boot(j, 10.0), (peer(a, 3, "a", solo=True),), 10.1).state
    assert (joiner.role, joiner.coordinator, joiner.leader_term) == (Role.FOLLOWER, "a", 3)
    d = step(lead, (peer(j, 3, "a"),), 10.2)  # a peer again: look around for a grace first
    assert d.state.solo and d.sends == () and d.wake_at == pytest.approx(10.2 + T.startup_grace_s)
    assert d.wake_at is not None
    d = step(d.state, (peer(j, 3, "a"),), d.wake_at)  # it follows us: claim a real term
    assert d.state.role is Role.COORDINATOR and d.state.solo and d.sends == (Send(None, Claim(4, a)),)
    view = (peer(a, 3, "a", solo=True),)
    early = receive(joiner, view, Claim(4, a), 10.3)  # in its start-up grace: no vote yet
    assert early.sends == (Send("a", Ack(4, "j", "a", False, 3)),)
    ack = receive(joiner, view, Claim(4, a), 11.25)
    assert ack.sends == (Send("a", Ack(4, "j", "a", True, 4)),)
    won = receive(d.state, (peer(j, 3, "a"),), ack.sends[0].message, 11.3)
    assert (won.state.role, won.state.solo, won.state.term) == (Role.COORDINATOR, False, 4)
    assert Send(None, Announce(4, a)) in won.sends


def test_a_member_that_was_alone_follows_the_sitting_coordinator_when_it_returns() -> None:
    c, b, f = cand("c", 0, 1.0), cand("b", 0, 0.5), cand("f", 9, 9.0)  # f ranks best of all
    f_state = step(settled_node(f), (leading(c, 4), peer(b, 4, "c")), LATE).state
    alone = step(step(f_state, (), LATE + 2).state, (), LATE + 3).state  # cut: everyone gone
    assert (alone.role, alone.solo, alone.term) == (Role.COORDINATOR, True, 4)
    back = step(alone, (leading(c, 4), peer(b, 4, "c")), LATE + 6)  # healed
    assert (back.state.role, back.state.coordinator, back.state.term) == (Role.FOLLOWER, "c", 4)
    sitting = replace(settled_node(c), role=Role.COORDINATOR, term=4, leader_term=4, coordinator="c")
    kept = step(sitting, (peer(f, 4, "f", solo=True), peer(b, 4, "c")), LATE + 6)
    assert kept.state.role is Role.COORDINATOR and kept.state.term == 4
    assert kept.sends == (Send("f", Announce(4, c)),)
    voter = step(settled_node(b), (leading(c, 4), peer(f, 4, "f", solo=True)), LATE + 6).state
    assert voter.coordinator == "c"
    assert not granted(receive(voter, (leading(c, 4), peer(f, 4, "f", solo=True)), Claim(5, f),
                               LATE + 6))


def test_rest_re_enters_the_start_up_grace() -> None:
    c = cand("c")
    solo = step(step(boot(cand("a"), 0.0), (), 0.5).state, (), 1.2).state
    rested = rest(solo, 50.0)
    assert (rested.role, rested.solo, rested.coordinator, rested.started) == (
        Role.FOLLOWER, False, None, 50.0)
    assert step(rested, (), 50.5).state.role is Role.FOLLOWER  # no claim within the grace
    voter = rest(step(settled_node(cand("v")), (peer(c),), LATE).state, LATE)
    assert not granted(receive(voter, (peer(c),), Claim(1, c), LATE + 0.5))
    lead = replace(settled_node(c), role=Role.COORDINATOR, term=2, leader_term=2, coordinator="c")
    assert rest(lead, LATE) == replace(lead, started=LATE)  # a real role waits for heartbeats


def test_no_coordinator_node_follows_but_never_claims() -> None:
    s = boot(cand("a", None, 100.0), 0.0)
    for now in (1.0, 2.0, 5.0):
        s = step(s, (), now).state
        assert s.role is Role.FOLLOWER
    d = step(s, (leading(cand("b"), 4),), 6.0)
    assert d.state.coordinator == "b" and d.state.term == 4


def test_better_joiner_follows_the_sitting_coordinator() -> None:
    sitting = leading(cand("slow", 0, 1.0), 3)
    joiner = boot(cand("fast", 5, 99.0), 0.0)
    for now in (0.0, 0.5, 1.5, 3.0):
        d = step(joiner, (sitting,), now)
        joiner = d.state
        assert joiner.role is Role.FOLLOWER and not any(isinstance(x.message, Claim) for x in d.sends)
    assert joiner.coordinator == "slow" and joiner.term == 3
    voter = step(settled_node(cand("v")), (sitting, peer(cand("fast", 5, 99.0))), LATE).state
    d = receive(voter, (sitting, peer(cand("fast", 5, 99.0))), Claim(4, cand("fast", 5, 99.0)), LATE)
    assert d.sends == (Send("fast", Ack(4, "v", "fast", False, 3)),) and d.state.voted_term == 0


def test_coordinator_keeps_the_role_when_a_better_node_appears() -> None:
    me = replace(boot(cand("c", 0, 1.0), 0.0), role=Role.COORDINATOR, term=2, coordinator="c")
    d = step(me, (peer(cand("better", 9, 9.0), 0),), LATE)
    assert d.state.role is Role.COORDINATOR and d.state.term == 2
    assert d.sends == (Send("better", Announce(2, me.me)),)  # it has not shown it follows yet
    again = step(d.state, (peer(cand("better", 9, 9.0), 2, "c"),), LATE + 0.01)
    assert again.state.role is Role.COORDINATOR and again.sends == ()


def test_coordinator_steps_down_on_a_higher_term_or_a_better_tie() -> None:
    me = replace(boot(cand("c", 0, 5.0), 0.0), role=Role.COORDINATOR, term=3, coordinator="c")
    higher = step(me, (leading(cand("weak", 0, 0.0), 4),), LATE).state
    assert (higher.role, higher.term, higher.coordinator) == (Role.FOLLOWER, 4, "weak")
    tie = step(me, (leading(cand("strong", 1, 0.0), 3),), LATE).state
    assert (tie.role, tie.coordinator) == (Role.FOLLOWER, "strong")
    kept = step(me, (leading(cand("weak", 0, 0.0), 3), leading(cand("old", 0, 9.0), 2)), LATE).state
    assert kept.role is Role.COORDINATOR and kept.term == 3
    by_announce = receive(me, (peer(cand("weak")),), Announce(4, cand("weak")), LATE).state
    assert (by_announce.role, by_announce.term, by_announce.coordinator) == (Role.FOLLOWER, 4, "weak")


def test_follower_with_a_higher_term_keeps_it_and_accepts_its_leaders_plans() -> None:
    restarted = boot(cand("f"), 0.0, term=7)  # kept term 7 across a restart; the swarm is at 3
    d = step(restarted, (leading(cand("c"), 3),), 0.5)
    assert (d.state.term, d.state.coordinator, d.state.leader_term) == (7, "c", 3)
    assert accept_plan(d.state, 3) and not accept_plan(d.state, 2)
    me = replace(boot(cand("c"), 0.0), role=Role.COORDINATOR, term=3, leader_term=3, coordinator="c")
    lead = step(me, (peer(cand("f"), 7, "c"),), LATE)  # no term race: a healed peer may carry one too
    assert lead.state.role is Role.COORDINATOR and lead.state.term == 3 and lead.sends == ()


def test_stale_plans_are_refused() -> None:
    s = replace(boot(cand("a"), 0.0), term=5, coordinator="b", leader_term=5)
    assert accept_plan(s, 5) and accept_plan(s, 6) and not accept_plan(s, 4)
    s = step(s, (leading(cand("b"), 5),), LATE).state
    assert accept_plan(s, 5) and not accept_plan(s, 4)


def test_terms_never_decrease_on_lower_announces() -> None:
    s = replace(boot(cand("a"), 0.0), term=5, coordinator="b")
    d = receive(s, (leading(cand("b"), 5),), Announce(3, cand("z", 9)), LATE)
    assert d.state.term == 5 and d.state.coordinator == "b"


# -- claims and acks -----------------------------------------------------------------------------
def test_one_ack_per_term_and_only_for_the_best_in_view() -> None:
    best, other = cand("best", 1), cand("other", 0)
    view = (peer(best), peer(other))
    voter = step(settled_node(cand("v")), view, LATE).state
    d = receive(voter, view, Claim(1, best), LATE)
    assert d.sends == (Send("best", Ack(1, "v", "best", True, 1)),)
    voter = d.state
    again = receive(voter, view, Claim(1, best), LATE + 0.1)
    assert granted(again)
    refused = receive(voter, view, Claim(1, other), LATE + 0.1)
    assert not granted(refused)
    early = receive(step(settled_node(cand("w")), view, LATE).state, view, Claim(1, other), LATE)
    assert not granted(early)  # rank 1: not its turn yet
    late = LATE + T.claim_delay_s + T.rank_step_s
    assert granted(receive(early.state, view, Claim(1, other), late))


def test_claimer_wins_with_a_majority_of_its_view_and_retries_on_timeout() -> None:
    a, b, c = cand("a", 1), cand("b"), cand("c")
    view = (peer(b), peer(c))
    s = step(settled_node(a), view, LATE).state  # lost the leader just now
    d = step(s, view, LATE + T.claim_delay_s)
    assert d.state.role is Role.CANDIDATE and d.sends == (Send(None, Claim(1, a)),)
    assert d.wake_at == pytest.approx(LATE + T.claim_delay_s + T.claim_timeout_s)
    assert d.wake_at is not None
    retry = step(d.state, view, d.wake_at)
    assert retry.sends == (Send(None, Claim(1, a)),)
    won = receive(retry.state, view, Ack(1, "b", "a", True, 1), d.wake_at + 0.01)
    assert won.state.role is Role.COORDINATOR and won.state.term == 1
    assert Send(None, Announce(1, a)) in won.sends


@settings(deadline=None)
@given(met_ago=st.floats(0.0, 3.0))
def test_a_just_restarted_best_node_is_not_waited_for(met_ago: float) -> None:
    """The best node booted so recently that it is still in its start-up grace when the first
    slot opens: nobody waits its turn; the next best claims then, and voters grant it then."""
    best, nxt, voter = cand("a"), cand("b"), cand("c")
    lost = LATE
    fresh = PeerView(best, met=lost - met_ago)
    b = step(settled_node(nxt), (fresh, peer(voter)), lost).state  # lost the leader just now
    c = step(settled_node(voter), (fresh, peer(nxt)), lost).state
    opens = lost + T.claim_delay_s
    ready = lost - met_ago + T.startup_grace_s  # when the best one may claim
    assume(abs(ready - opens) > 1e-9)
    skipped = ready > opens  # still starting when the first slot opens
    claim = step(b, (fresh, peer(voter)), opens)
    assert (claim.state.role is Role.CANDIDATE) == skipped
    assert granted(receive(c, (fresh, peer(nxt)), Claim(1, nxt), opens)) == skipped
    if not skipped:  # the best one is settled: the next best's turn is one step later
        later = opens + T.rank_step_s
        assert step(b, (fresh, peer(voter)), later).state.role is Role.CANDIDATE


def test_a_new_coordinator_re_announces_to_laggards_ever_more_slowly() -> None:
    """Peers whose heartbeats do not show them following yet get the announce again after 0.1,
    0.2, 0.4, 0.8 s, then every `reannounce_max_s`: not ten times a second to every one of 49."""
    a, b, c = cand("a", 1), cand("b"), cand("c")
    view = (peer(b), peer(c))
    s = step(step(settled_node(a), view, LATE).state, view, LATE + T.claim_delay_s).state
    won = receive(s, view, Ack(1, "b", "a", True, 1), LATE + 0.2)
    assert won.state.role is Role.COORDINATOR and won.state.won_at == LATE + 0.2
    state, at, resent = won.state, LATE + 0.2, []
    while at < LATE + 5.0:
        d = step(state, view, at)  # nobody's heartbeat follows it yet
        if d.sends:
            assert {x.to for x in d.sends} == {"b", "c"}
            resent.append(round(at - (LATE + 0.2), 3))
        assert d.wake_at is not None and d.wake_at > at
        state, at = d.state, d.wake_at
    assert resent[:5] == [0.1, 0.2, 0.4, 0.8, 1.6]
    gaps = [round(y - x, 3) for x, y in zip(resent, resent[1:], strict=False)]
    assert max(gaps) == T.reannounce_max_s and len(resent) <= 8
    followed = (peer(b, 1, "a"), peer(c, 1, "a"))
    assert step(state, followed, at + 10).sends == ()  # all follow: silence


def test_refusal_that_shows_a_taken_term_makes_the_retry_claim_higher() -> None:
    a = cand("a", 1)
    view = (peer(cand("b")), peer(cand("c")))
    s = step(step(settled_node(a), view, LATE).state, view, LATE + 1).state
    assert s.claim_term == 1
    s = receive(s, view, Ack(1, "b", "a", False, 1), LATE + 1.05).state
    s = receive(s, view, Ack(1, "c", "a", True, 1), LATE + 1.05).state
    assert s.role is Role.COORDINATOR
    s2 = step(step(settled_node(a), view, LATE).state, view, LATE + 1).state
    s2 = receive(s2, view, Ack(1, "b", "a", False, 4), LATE + 1.05).state
    assert s2.claim_term == 1 and s2.refused == {"b"}  # c may still ack term 1
    d = receive(s2, view, Ack(1, "c", "a", False, 1), LATE + 1.06)
    assert d.sends == (Send(None, Claim(5, a)),) and d.state.refused == frozenset()
    rival = receive(s2, view, Claim(1, cand("c")), LATE + 1.06)  # c voted for itself in term 1
    assert Send(None, Claim(5, a)) in rival.sends


def test_a_claim_refused_while_a_leader_was_in_view_still_marks_its_term_taken() -> None:
    a, c, lead = cand("a", 1), cand("c"), cand("l")
    s = step(settled_node(a), (leading(lead, 1), peer(c, 1, "l")), LATE).state
    d = receive(s, (leading(lead, 1), peer(c, 1, "l")), Claim(2, c), LATE + 0.1)
    assert not granted(d)  # a still follows l, and c voted for itself in term 2
    view = (peer(c, 1, None),)  # l is gone: a's turn comes
    s = step(d.state, view, LATE + 0.2).state
    claim = step(s, view, LATE + 0.2 + T.claim_delay_s)
    assert claim.sends == (Send(None, Claim(3, a)),)  # not term 2, which c can never ack


def test_worse_candidate_yields_to_a_better_claim() -> None:
    a, b = cand("a", 1), cand("b", 0)
    view = (peer(a), peer(cand("c")))
    s = step(step(settled_node(b), view, LATE).state, view, LATE + 2).state
    assert s.role is Role.CANDIDATE and s.claim_term == 1
    d = receive(s, view, Claim(1, a), LATE + 2.01)
    assert d.state.role is Role.FOLLOWER and d.state.backing == "a"
    assert d.sends == (Send("a", Ack(1, "b", "a", False, 1)),)  # voted for itself in term 1
    assert step(d.state, view, LATE + 2.3).sends == ()  # does not compete while a claims
    assert granted(receive(d.state, view, Claim(2, a), LATE + 2.2))


def test_suspect_coordinator_counts_until_the_grace_runs_out() -> None:
    lead = cand("l")
    s = step(settled_node(cand("a")), (leading(lead, 2),), LATE).state
    view = (PeerView(lead, 2, "l", LATE),)
    d = step(s, view, LATE + 0.5)
    assert d.state.coordinator == "l" and d.wake_at == pytest.approx(LATE + T.suspect_grace_s)
    assert step(d.state, view, LATE + T.suspect_grace_s).state.coordinator is None


def test_announce_is_trusted_until_the_heartbeat_contradicts_it() -> None:
    lead = cand("l")
    s = step(settled_node(cand("a")), (peer(lead),), LATE).state
    d = receive(s, (peer(lead),), Announce(1, lead), LATE)
    assert d.state.coordinator == "l" and d.state.term == 1
    assert step(d.state, (peer(lead),), LATE + 0.5).state.coordinator == "l"
    assert step(d.state, (peer(lead, 1, None),), LATE + 0.5).state.coordinator is None
    assert step(d.state, (peer(lead),), LATE + T.announce_trust_s).state.coordinator is None


def test_core_imports_no_clock_io_or_randomness() -> None:
    for module in (election_module, turns_module, records_module, wake_module):
        imported = imported_packages(module)
        assert not imported & {"asyncio", "time", "socket", "random", "threading"}, module


# -- simulated schedules -------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    """Nodes, network and faults for one simulated run."""

    candidates: tuple[Candidate, ...]
    config: SimConfig
    late: frozenset[int]
    faults: tuple[Fault, ...]
    seed: int

    @property
    def network(self) -> str:
        """"lan" (at most 2 % loss, 30 ms latency) or "stress" (10 % loss or 100 ms)."""
        return "lan" if self.config.loss <= 0.02 and self.config.latency[1] <= 0.03 else "stress"

    @property
    def bound(self) -> float:
        """How soon after a change every component must have settled."""
        return BOUND_S if self.network == "lan" else STRESS_BOUND_S


def networks() -> st.SearchStrategy[SimConfig]:
    """LAN-like and stressed networks: message and heartbeat loss, one-way latency."""
    return st.builds(lambda loss, hi: SimConfig(loss=loss, latency=(0.001, hi)),
                     st.sampled_from([0.0, 0.0, 0.02, 0.1]), st.sampled_from([0.005, 0.03, 0.1]))


@st.composite
def scenarios(draw: st.DrawFn, max_faults: int = 6, kinds: tuple[str, ...] = (
        "crash", "restart", "partition", "heal", "sleep")) -> Scenario:
    """One to seven ranked nodes, some starting late, then up to `max_faults` changes."""
    n = draw(st.integers(1, 7))
    cands = tuple(cand(f"n{i}", draw(st.sampled_from([None, 0, 0, 1, 2])), float(draw(st.integers(0, 3))))
                  for i in range(n))
    config = draw(networks())
    late = frozenset(draw(st.sets(st.integers(0, n - 1), max_size=n - 1)))
    now, faults = 0.0, []
    for i in sorted(late):  # late starters join a running swarm
        now += draw(st.sampled_from([0.2, 1.5, 3.5]))
        faults.append(Fault(now, "restart", i, remember=False))
    for _ in range(draw(st.integers(0, max_faults))):
        now += draw(st.sampled_from([0.0, 0.1, 0.4, 1.0, 3.5, 3.5]))
        kind = draw(st.sampled_from(kinds))
        node = draw(st.integers(0, n - 1))
        if kind == "partition":
            groups = tuple(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
            faults.append(Fault(now, "partition", groups=groups))
        elif kind == "heal":
            faults.append(Fault(now, "partition", groups=(0,) * n))
        elif kind == "sleep":
            faults.append(Fault(now, "sleep", node, duration=draw(st.sampled_from(SLEEPS))))
        else:
            faults.append(Fault(now, kind, node, remember=draw(st.booleans())))
    return Scenario(cands, config, late, tuple(faults), draw(st.integers(0, 2**32 - 1)))


@dataclass
class Checker:
    """Watches a run: settle time after every quiet gap, and sitting coordinators across joins."""

    scenario: Scenario
    changes: list[float] = field(default_factory=lambda: [0.0])  # the start is the first change
    settled: bool = False
    settled_since: float = 0.0  # start of the current settled stretch
    watched: list[tuple[int, float]] = field(default_factory=list)  # (sitting coordinator, until)

    def __call__(self, sim: Sim) -> None:
        ok = sim.settled()
        if ok and not self.settled:
            self.settled_since = sim.now
        self.settled = ok
        for lead, until in self.watched:
            if sim.now < until:
                assert role_of(sim, lead) is Role.COORDINATOR, f"joiner displaced n{lead} at {sim.now}"
        if not ok:
            after = [c for c in self.changes if c <= sim.now]
            assert not after or sim.now - after[-1] <= self.scenario.bound, f"unsettled at {sim.now:.3f}"


def label(fault: Fault | None, before: ElectionState | None) -> str:
    """What a change is, for the report: start, failover, heal, join or other."""
    if fault is None:
        return "start"
    if fault.kind == "crash" and before is not None and before.role is Role.COORDINATOR:
        return "failover"
    if fault.kind == "partition":
        return "heal" if len(set(fault.groups)) == 1 else "partition"
    return "join" if fault.kind == "restart" else fault.kind


def best_leader(sim: Sim) -> int | None:
    """The running coordinator that wins a heal: one leading by vote before a solo one, then the
    highest (term, rank), if any."""
    leads = sim.coordinators([i for comp in sim.components() for i in comp])
    keys = {i: (sim.states[i].solo, -sim.states[i].term, sim.candidates[i].rank_key)  # type: ignore[union-attr]
            for i in leads}
    return min(keys, key=keys.__getitem__) if keys else None


def changes_of(faults: tuple[Fault, ...]) -> list[Fault]:
    """The faults in time order, each sleep followed (at its end) by a "wake": both are changes
    the swarm must settle after (the simulation wakes the sleeper by itself)."""
    wakes = [Fault(f.at + f.duration, "wake", f.node) for f in faults if f.kind == "sleep"]
    return sorted([*faults, *wakes], key=lambda f: f.at)


def run_scenario(sc: Scenario, tail: float = 4.0) -> Checker:
    """Run one scenario gap by gap; assert settling within its bound and record the times taken."""
    events = changes_of(sc.faults)
    times = [0.0] + [f.at for f in events]
    checker = Checker(sc, changes=sorted(set(times)))  # a wake happens inside the simulation
    sim = Sim(sc.candidates, sc.seed, sc.config, down_at_start=sc.late, on_event=checker)
    checker.settled = sim.settled()
    ends = times[1:] + [times[-1] + tail]
    for k, (start, end) in enumerate(zip(times, ends, strict=True)):
        fault = events[k - 1] if k else None
        kind, heir = "start", None
        if fault is not None:
            sim.run([], start)
            before, was_settled = sim.states[fault.node], sim.settled()
            stable = was_settled and start - times[k - 1] > sc.bound
            kind = label(fault, before)
            if kind == "heal" and len(sim.components()) < 2:
                kind = "no-op"
            if kind == "heal" and stable:  # the best sitting leader keeps the role: no new election
                heir = best_leader(sim)
            if fault.kind != "wake":
                sim.apply(fault)
            checker.settled, checker.settled_since = sim.settled(), start
            if kind == "join" and stable and (before is None or before.role is not Role.COORDINATOR):
                comp = next(c for c in sim.components() if fault.node in c)
                leads = [i for i in sim.coordinators(comp) if i != fault.node]
                if leads:
                    checker.watched.append((leads[0], end))
                    STATS["joins"] += 1
        sim.run([], end - 1e-6)  # just before the next change (a wake runs inside the simulation)
        if end - start > sc.bound:
            assert checker.settled, f"gap {start:.2f}-{end:.2f} ended unsettled"
            if heir is not None:
                assert sim.coordinators(sim.components()[0]) == [heir], "heal: a new election"
                STATS["heals"] += 1
            took = checker.settled_since - start
            STATS["gaps"] += 1
            key = (sc.network, kind)
            WORST_S[key] = max(WORST_S.get(key, 0.0), took)
    STATS["schedules"] += 1
    return checker


@pytest.fixture(scope="module", autouse=True)
def report():
    """Print what the schedule properties covered (visible with `pytest -s`)."""
    yield
    worst = ", ".join(f"{net} {kind} {v:.3f} s" for (net, kind), v in sorted(WORST_S.items()))
    print(f"\nelection sim: {STATS}; worst settle after a change: {worst}")


# Found by hypothesis: n3 (rank 1) lost the cut-off coordinator first and claimed term 2; n2 (rank
# 0) refused it, still seeing the old leader, then claimed term 2 itself, which n3 had voted itself
# in, and waited for a refusal; two lost messages (2 % loss) then pushed the settle past the bound.
CUT_OFF_COORDINATOR = Scenario(
    (cand("n0", None), cand("n1"), cand("n2"), cand("n3")), SimConfig(loss=0.02, latency=(0.001, 0.005)),
    frozenset(), (Fault(3.5, "partition", groups=(1, 2, 0, 0)), *[Fault(7.0, "crash", 0, remember=False)] * 3,
                  Fault(7.0, "partition", groups=(0, 0, 0, 0))), 5582)


@settings(max_examples=1500, deadline=None)
@given(scenarios())
@example(CUT_OFF_COORDINATOR)
def test_schedules_settle_within_the_bound_and_keep_terms(sc: Scenario) -> None:
    """Any faults: terms never go back (checked on every decision), and within the bound after the
    last change every component has exactly one coordinator that all its nodes follow."""
    note(repr(sc))
    run_scenario(sc)


@settings(max_examples=300, deadline=None)
@given(scenarios(max_faults=3, kinds=("crash", "restart")))
def test_joiners_never_displace_a_sitting_coordinator(sc: Scenario) -> None:
    """A node that starts or restarts next to a settled coordinator never takes its role."""
    note(repr(sc))
    run_scenario(sc)


@st.composite
def heal_scenarios(draw: st.DrawFn) -> Scenario:
    """Two to seven nodes cut into two or three groups, left to settle, healed; up to three rounds."""
    n = draw(st.integers(2, 7))
    cands = tuple(cand(f"n{i}", draw(st.sampled_from([None, 0, 1])), float(draw(st.integers(0, 2))))
                  for i in range(n))
    now, faults = 0.0, []
    for _ in range(draw(st.integers(1, 3))):
        groups = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n).filter(lambda g: len(set(g)) > 1))
        now += 3.5
        faults.append(Fault(now, "partition", groups=tuple(groups)))
        now += draw(st.sampled_from([0.4, 3.5]))
        faults.append(Fault(now, "partition", groups=(0,) * n))
    return Scenario(cands, draw(networks()), frozenset(), tuple(faults), draw(st.integers(0, 2**32 - 1)))


@settings(max_examples=250, deadline=None)
@given(heal_scenarios())
def test_heals_keep_the_best_sitting_coordinator(sc: Scenario) -> None:
    """On heal the sitting coordinator with the highest (term, rank) keeps the role; no election."""
    note(repr(sc))
    run_scenario(sc)


def test_best_candidate_wins_a_clean_start() -> None:
    cands = (cand("n0", 0, 3.0), cand("n1", 1, 0.0), cand("n2", None, 9.0), cand("n3", 0, 3.0))
    for seed in range(50):
        sim = Sim(cands, seed)
        sim.run([], 3.0)
        assert [i for i in range(4) if role_of(sim, i) is Role.COORDINATOR] == [1]


def test_partition_elects_on_each_side_and_heal_keeps_one() -> None:
    cands = tuple(cand(f"n{i}", 0, float(i)) for i in range(5))
    for seed in range(30):
        sim = Sim(cands, seed)
        sim.run([Fault(3.0, "partition", groups=(0, 0, 1, 1, 1))], 6.0)
        assert sorted(i for i in range(5) if role_of(sim, i) is Role.COORDINATOR) == [1, 4]
        sim.run([Fault(6.0, "partition", groups=(0,) * 5)], 8.0)
        assert sim.settled()
        assert sim.coordinators(list(range(5))) == [1]  # the side that elected has the higher term


def settle_time(sim: Sim, fault: Fault, horizon: float = 4.0) -> float:
    """Apply `fault` at its time and return how long until the swarm settled for good."""
    since = {"t": fault.at}

    def watch(s: Sim) -> None:
        if not s.settled():
            since["t"] = s.now

    sim.run([], fault.at)
    sim.on_event = watch
    sim.apply(fault)
    sim.run([], fault.at + horizon)
    assert sim.settled()
    return since["t"] - fault.at


def test_failover_and_heal_times_on_a_lan() -> None:
    """Crash the coordinator of 5 nodes, or cut it off and heal: both settle within BOUND_S."""
    cands = tuple(cand(f"n{i}", 0, float(i)) for i in range(5))
    failover, heal = [], []
    for seed in range(100):
        sim = Sim(cands, seed, SimConfig(loss=0.02))
        failover.append(settle_time(sim, Fault(3.0, "crash", 4)))
        sim = Sim(cands, seed, SimConfig(loss=0.02))
        settle_time(sim, Fault(3.0, "partition", groups=(0, 0, 0, 0, 1)))
        # Usually n3, the best of the majority; n2 when it saw the cut a rank step (0.3 s) before
        # n3 did (cut detection varies by 0.5 s): either way, exactly one
        majority = sim.coordinators([0, 1, 2, 3])
        assert majority in ([3], [2]) and sim.coordinators([4]) == [4], majority
        heal.append(settle_time(sim, Fault(7.0, "partition", groups=(0,) * 5)))
        assert sim.coordinators(list(range(5))) == majority  # the higher term wins; n4 stepped down
    for name, times in (("crash-to-coordinator", failover), ("heal-to-one", heal)):
        times.sort()
        print(f"\n{name}: p50 {times[50]:.3f} s, p95 {times[95]:.3f} s, max {times[-1]:.3f} s")
        assert times[-1] <= BOUND_S


@dataclass(frozen=True)
class Isolation:
    """A settled swarm, then rounds of one member (not the coordinator) cut off alone, asleep, or
    cut off and restarted, for a while; each round: (pick, how, seconds, remember)."""

    candidates: tuple[Candidate, ...]
    config: SimConfig
    rounds: tuple[tuple[int, str, float, bool], ...]
    seed: int


@st.composite
def isolations(draw: st.DrawFn) -> Isolation:
    n = draw(st.integers(2, 7))
    specs = draw(st.lists(st.tuples(st.sampled_from([None, 0, 0, 1, 2]), st.integers(0, 3)),
                          min_size=n, max_size=n).filter(lambda ps: any(p is not None for p, _ in ps)))
    rounds = tuple((draw(st.integers(0, 6)), draw(st.sampled_from(["cut", "sleep", "restart"])),
                    draw(st.sampled_from([0.2, 1.0, 2.5, 4.0, 30.0, 600.0, 7200.0])),
                    draw(st.booleans())) for _ in range(draw(st.integers(1, 3))))
    cands = tuple(cand(f"n{i}", p, float(sc)) for i, (p, sc) in enumerate(specs))
    return Isolation(cands, draw(networks()), rounds, draw(st.integers(0, 2**32 - 1)))


def isolate(sim: Sim, x: int, how: str, seconds: float, remember: bool) -> float:
    """Take member x away as `how` says, for `seconds`; returns when it is back."""
    n = len(sim.candidates)
    if how == "sleep":
        sim.apply(Fault(sim.now, "sleep", x, duration=seconds))
        sim.run([], sim.now + seconds)
        return sim.now
    alone = tuple(1 if i == x else 0 for i in range(n))
    sim.apply(Fault(sim.now, "partition", groups=alone))
    sim.run([], sim.now + seconds / 2)
    if how == "restart":  # restarted while cut off: comes back a fresh process
        sim.apply(Fault(sim.now, "restart", x, remember=remember))
    sim.run([], sim.now + seconds / 2)
    sim.apply(Fault(sim.now, "partition", groups=(0,) * n))
    return sim.now


@settings(max_examples=400, deadline=None)
@given(isolations())
def test_a_member_isolated_for_any_time_never_takes_the_role_on_its_return(sc: Isolation) -> None:
    """However long one member is cut off, asleep or restarted apart (it may rank best of all),
    the sitting coordinator keeps the role and its term, the rest follow it throughout, and the
    member follows it again within the bound of its return."""
    note(repr(sc))
    sim = Sim(sc.candidates, sc.seed, sc.config)
    sim.run([], 4.0)
    bound = STRESS_BOUND_S if sc.config.loss > 0.02 or sc.config.latency[1] > 0.03 else BOUND_S
    for pick, how, seconds, remember in sc.rounds:
        assert sim.settled(), "not settled before the round"
        (lead,) = sim.coordinators(list(range(len(sc.candidates))))
        term = sim.states[lead].term  # type: ignore[union-attr]
        others = [i for i in range(len(sc.candidates)) if i != lead]
        x = others[pick % len(others)]
        leader_id = sc.candidates[lead].node_id

        def held(s: Sim, lead: int = lead, x: int = x, term: int = term,
                 leader_id: str = leader_id) -> None:
            state = s.states[lead]
            assert state is not None and state.role is Role.COORDINATOR and not state.solo
            assert state.term == term, f"the coordinator's term moved at {s.now:.2f}"
            for i, other in enumerate(s.states):
                if i not in (lead, x):
                    assert other is not None and other.coordinator == leader_id, f"n{i} left"
                elif i == x and other is not None and other.role is Role.COORDINATOR:
                    assert other.solo, f"n{x} took the role at {s.now:.2f}"

        sim.on_event = held
        back = isolate(sim, x, how, seconds, remember)
        sim.run([], back + bound + 1.0)
        sim.on_event = None
        assert sim.settled() and sim.coordinators(list(range(len(sc.candidates)))) == [lead]
        assert sim.states[x].coordinator == leader_id  # type: ignore[union-attr]
        STATS["isolations"] += 1
