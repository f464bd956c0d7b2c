"""The coordinator election: a pure state machine over the membership view, messages and `now`.

- Rank: higher priority, then higher score, then the smaller node id. Priority None
  (`--no-coordinator`) never claims, but votes and follows.
- A live peer whose heartbeat names itself coordinator is a leader. Every node follows the best
  leader in view: one that others may follow before a `solo` one, then by (term, rank); a
  coordinator that sees a better one steps down. Nobody claims or acks a claim while a leader is in
  view, so a sitting coordinator is never displaced by a joiner.
- Alone (no live peer), a node whose turn comes leads only itself (`solo`): at the term it has,
  with no claim and no new term. A solo role counts for nothing against a leader others follow, so
  a member that was cut off (a closed lid, a Wi-Fi blip) follows the sitting coordinator when it
  returns. Once a peer follows a solo leader, it claims a real term with its followers' votes (a
  joiner votes only after its start-up grace, once it has seen the whole swarm).
- With no leader in view, the node of rank k among live eligible nodes claims `max term + 1` at
  `claim_delay_s + k * rank_step_s` after it lost the leader (and not within `startup_grace_s` of
  booting or `rest`). Voters ack a claimer whose slot is open in their own view, once per term, and
  back it for `vote_lease_s` against worse claimers; a worse candidate that hears a better one
  yields. Acks from a majority of the claimer's own live view (itself included) make it
  coordinator.
- `rest` re-enters the start-up grace: after the machine slept or its own network was down, a node
  neither claims nor votes until its view is current again.
- A node cannot see its real component, so each side of a partition may elect; on heal the leader
  with the higher (term, rank) keeps the role and the other steps down.
- Terms never decrease; `accept_plan` refuses plans older than the leader a node follows.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

from network.coordination.records import (
    DEFAULT_TIMINGS,
    Ack,
    Announce,
    Candidate,
    Claim,
    Decision,
    ElectionState,
    ElectionTimings,
    Message,
    PeerView,
    Role,
    Send,
    better,
)
from network.coordination.turns import (
    backing,
    grants,
    lagging,
    leader_key,
    leaders_in_view,
    live_peers,
    look,
    may_claim,
    slot,
    takes,
)

__all__ = ["DEFAULT_TIMINGS", "Ack", "Announce", "Candidate", "Claim", "Decision", "ElectionState",
           "ElectionTimings", "Message", "PeerView", "Role", "Send", "accept_plan", "better", "boot",
           "receive", "rest", "step"]


def boot(me: Candidate, now: float, term: int = 0, voted_term: int = 0,
         voted_for: str | None = None) -> ElectionState:
    """A fresh follower; pass the persisted term and vote to keep them across a restart."""
    return ElectionState(me=me, started=now, term=term, voted_term=voted_term, voted_for=voted_for)


def accept_plan(state: ElectionState, plan_term: int) -> bool:
    """True unless the plan's term is older than the coordinator this node follows (stale)."""
    return plan_term >= state.leader_term


def rest(state: ElectionState, now: float) -> ElectionState:
    """Re-enter the start-up grace (the machine slept, or its own network was down): no claim and
    no vote until the view is current again; a solo role or a claim in progress is dropped, a real
    role kept until a heartbeat shows a better leader."""
    s = replace(state, started=now, backing=None, acks=frozenset(), refused=frozenset(),
                absent_since=None)
    if s.role is Role.CANDIDATE or s.solo:
        s = replace(s, role=Role.FOLLOWER, solo=False,
                    coordinator=None if s.solo else s.coordinator)
    return s


def step(state: ElectionState, view: Iterable[PeerView], now: float,
         timings: ElectionTimings = DEFAULT_TIMINGS) -> Decision:
    """Re-decide after a view change or a timer: follow, step down, claim, retry or win."""
    live = live_peers(state, view, now, timings)
    new, sends = _settle(look(state, live, now, timings), live, now, timings)
    return Decision(new, tuple(sends), _wake(new, live, now, timings))


def receive(state: ElectionState, view: Iterable[PeerView], message: Message, now: float,
            timings: ElectionTimings = DEFAULT_TIMINGS) -> Decision:
    """Handle one Claim, Ack or Announce from a peer, then re-decide as `step` does."""
    live = live_peers(state, view, now, timings)
    state = look(state, live, now, timings)
    me = state.me.node_id
    sends: list[Send] = []
    if isinstance(message, Claim) and message.candidate.node_id != me:
        x = message.candidate
        granted = grants(state, live, message, now, timings)
        # The claimer voted for itself in that term: a claim of ours there could never win its
        # vote, so our next claim skips it (not waiting for a refusal that may be lost).
        state = replace(state, blocked_term=max(state.blocked_term, message.term))
        if granted:
            state = replace(state, voted_term=message.term, voted_for=x.node_id)
        elif _claiming(state) and message.term >= state.claim_term:
            state = replace(state, refused=state.refused | {x.node_id})
        if granted or (x.eligible and better(x, state.me)):  # back it: stop competing
            held = backing(state, live, now, timings)
            if held is None or held.node_id == x.node_id or better(x, held):
                state = replace(state, backing=x.node_id, backing_at=now, acks=frozenset(),
                                role=Role.FOLLOWER if state.role is Role.CANDIDATE else state.role)
        seen = max(state.term, state.voted_term)
        sends.append(Send(x.node_id, Ack(message.term, me, x.node_id, granted, seen)))
    elif (isinstance(message, Ack) and message.candidate == me and _claiming(state)
          and message.term == state.claim_term):
        if message.granted:
            state = replace(state, acks=state.acks | {message.voter})
        elif message.seen_term >= state.claim_term:
            state = replace(state, blocked_term=max(state.blocked_term, message.seen_term),
                            refused=state.refused | {message.voter})
    elif isinstance(message, Announce) and takes(state, live, message):
        state = replace(state, role=Role.FOLLOWER, solo=False, term=message.term,
                        leader_term=message.term, coordinator=message.coordinator.node_id,
                        announced=message.coordinator,
                        announced_until=now + timings.announce_trust_s, absent_since=None,
                        acks=frozenset())
    new, more = _settle(state, live, now, timings)
    return Decision(new, tuple(sends + more), _wake(new, live, now, timings))










def _settle(s: ElectionState, live: dict[str, PeerView], now: float,
            t: ElectionTimings) -> tuple[ElectionState, list[Send]]:
    """Follow the best leader in view (stepping down if need be), lead alone, or claim, retry or
    win."""
    me = s.me.node_id
    leaders = leaders_in_view(s, live, now)
    if leaders:
        _solo, term, lead = min(leaders, key=leader_key)
        if lead.node_id == me:
            if s.solo:
                return _promote(s, live, now, t)
            if lagging(s, live) and now >= _reannounce_at(s, t):  # announce lost?
                return replace(s, sent_at=now), [Send(i, Announce(s.term, s.me)) for i in lagging(s, live)]
            return s, []
        kept = s.announced if s.announced is not None and s.announced.node_id == lead.node_id else None
        return replace(s, role=Role.FOLLOWER, solo=False, term=max(s.term, term),
                       coordinator=lead.node_id, leader_term=term, absent_since=None,
                       acks=frozenset(), announced=kept), []
    s = replace(s, coordinator=None, announced=None,
                absent_since=now if s.absent_since is None else s.absent_since)
    if not may_claim(s, live, now, t):
        return (replace(s, role=Role.FOLLOWER, acks=frozenset()) if s.role is Role.CANDIDATE
                else s), []
    if not live:  # nobody in view: lead ourselves only, at the term we have; claim nothing
        return replace(s, role=Role.COORDINATOR, solo=True, coordinator=me, leader_term=s.term,
                       claim_term=0, acks=frozenset(), refused=frozenset(), absent_since=None,
                       sent_at=-math.inf), []
    sends: list[Send] = []
    if (s.role is not Role.CANDIDATE or now >= s.sent_at + t.claim_timeout_s
            or _hopeless(s, live)):  # a claim that cannot win moves to a free term at once
        if not (s.role is Role.CANDIDATE and _majority(s, live)):
            s, sends = _claim(s, live, now, Role.CANDIDATE)
    if _majority(s, live):
        won = replace(s, role=Role.COORDINATOR, term=s.claim_term, leader_term=s.claim_term,
                      coordinator=me, acks=frozenset(), absent_since=None, sent_at=now,
                      won_at=now)
        return won, [Send(None, Announce(won.term, s.me))]
    return s, sends


def _promote(s: ElectionState, live: dict[str, PeerView], now: float,
             t: ElectionTimings) -> tuple[ElectionState, list[Send]]:
    """A solo leader that a live peer follows claims a real term (keeping the role meanwhile),
    and wins it with acks from a majority of its live view."""
    if not any(p.coordinator == s.me.node_id for p in live.values()):
        return s, []
    if now < s.started + t.startup_grace_s:  # just back among peers: look around first
        return s, []
    if _majority(s, live):
        won = replace(s, solo=False, term=s.claim_term, leader_term=s.claim_term,
                      acks=frozenset(), refused=frozenset(), sent_at=now, won_at=now)
        return won, [Send(None, Announce(won.term, s.me))]
    if not _claiming(s) or now >= s.sent_at + t.claim_timeout_s or _hopeless(s, live):
        return _claim(s, live, now, Role.COORDINATOR)
    return s, []


def _reannounce_at(s: ElectionState, t: ElectionTimings) -> float:
    """When a coordinator re-sends its announce to lagging peers: `claim_timeout_s` after it won,
    then after gaps as long as the time since it won (0.1, 0.2, 0.4 s ...), at most
    `reannounce_max_s`."""
    since_won = s.sent_at - s.won_at if math.isfinite(s.won_at) and math.isfinite(s.sent_at) else 0.0
    return s.sent_at + min(max(since_won, t.claim_timeout_s), t.reannounce_max_s)


def _claiming(s: ElectionState) -> bool:
    """True while a claim of ours is open: as a candidate, or as a solo leader promoting itself."""
    return s.role is Role.CANDIDATE or (s.solo and s.claim_term > s.term)




def _hopeless(s: ElectionState, live: dict[str, PeerView]) -> bool:
    """True when refusals leave our claim no majority in this term."""
    voters = set(live) | {s.me.node_id}
    return _claiming(s) and 2 * len(voters - s.refused) <= len(voters)


def _majority(s: ElectionState, live: dict[str, PeerView]) -> bool:
    """True when acks (ours included) are a majority of our live view."""
    voters = set(live) | {s.me.node_id}
    return _claiming(s) and 2 * len((s.acks & voters) | {s.me.node_id}) > len(voters)


def _claim(s: ElectionState, live: dict[str, PeerView], now: float,
           role: Role) -> tuple[ElectionState, list[Send]]:
    """Claim (or re-claim) the next free term; a retry keeps its term and acks while it can win."""
    me = s.me.node_id
    floor = max([s.term, s.voted_term if s.voted_for != me else 0] + [p.term for p in live.values()])
    if _claiming(s) and s.claim_term > floor and not s.refused:  # only losses: re-send
        term, acks, refused = s.claim_term, s.acks, s.refused
    else:
        term = max(floor, s.blocked_term) + 1
        term, acks, refused = max(term, s.voted_term if s.voted_for == me else 0), frozenset(), frozenset()
    s = replace(s, role=role, claim_term=term, acks=acks, refused=refused, sent_at=now,
                voted_term=term, voted_for=me)
    return s, [Send(None, Claim(term, s.me))]














def _wake(s: ElectionState, live: dict[str, PeerView], now: float, t: ElectionTimings) -> float | None:
    """The earliest time a decision could change with no new input (timers only)."""
    times = [s.announced_until, s.backing_at + t.vote_lease_s]
    times += [p.suspect_since + t.suspect_grace_s for p in live.values() if p.suspect_since is not None]
    if _claiming(s):
        times.append(s.sent_at + t.claim_timeout_s)
    elif s.role is Role.COORDINATOR and not s.solo and lagging(s, live):
        times.append(_reannounce_at(s, t))
    elif s.role is Role.FOLLOWER and s.coordinator is None and s.me.eligible:
        times.append(slot(s, live, s.me, t))
    if (not live and not s.lone) or (s.solo and any(p.coordinator == s.me.node_id
                                                    for p in live.values())):
        times.append(s.started + t.startup_grace_s)  # `_look` marks it lone / `_promote` claims
    future = [x for x in times if now < x < math.inf]
    return min(future) if future else None
