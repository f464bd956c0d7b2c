"""Whose turn it is in the election: who counts as live and who leads in a node's view, when each
node may claim, and whom a voter acks. Pure functions of the state, the view and `now`, used by the
state machine in `election.py` (see its docstring for the rules)."""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

from network.coordination.records import (
    Announce,
    Candidate,
    Claim,
    ElectionState,
    ElectionTimings,
    PeerView,
    Role,
    better,
)

Leader = tuple[bool, int, Candidate]  # (solo, term, leader): one leader in view


def live_peers(state: ElectionState, view: Iterable[PeerView], now: float,
               t: ElectionTimings) -> dict[str, PeerView]:
    """Peers that count: ALIVE, or SUSPECT for less than the grace; never ourselves."""
    return {p.node_id: p for p in view if p.node_id != state.me.node_id
            and (p.suspect_since is None or now - p.suspect_since < t.suspect_grace_s)}


def look(s: ElectionState, live: dict[str, PeerView], now: float, t: ElectionTimings) -> ElectionState:
    """Note being alone after the grace; back among peers, restart the grace: a node that was cut
    off sees the whole swarm (and the coordinator it follows) before it votes or claims."""
    if not live and not s.lone and now >= s.started + t.startup_grace_s:
        return replace(s, lone=True)
    if live and s.lone:
        return replace(s, lone=False, started=now)
    return s


def leader_key(entry: Leader) -> tuple[bool, int, tuple[int, float, float, str]]:
    """Sort key for a leader in view, best first: not solo, higher term, better rank."""
    return (entry[0], -entry[1], entry[2].rank_key)


def leaders_in_view(state: ElectionState, live: dict[str, PeerView], now: float) -> list[Leader]:
    """Every leader in view as (solo, term, candidate): heartbeats, ourselves, a fresh announce."""
    found = [(p.solo, p.term, p.candidate) for p in live.values() if p.leads]
    if state.role is Role.COORDINATOR:
        found.append((state.solo, state.term, state.me))
    a = state.announced
    if a is not None and now < state.announced_until and a.node_id in live:
        seen = live[a.node_id]
        if seen.coordinator == a.node_id or seen.term < state.leader_term:  # not contradicted yet
            found.append((False, state.leader_term, a))
    return found


def lagging(s: ElectionState, live: dict[str, PeerView]) -> list[str]:
    """Live peers whose heartbeat does not yet show them following us in our term."""
    return sorted(i for i, p in live.items() if p.coordinator != s.me.node_id or p.term < s.term)


def rank(s: ElectionState, live: dict[str, PeerView], who: Candidate, t: ElectionTimings) -> int:
    """How many live eligible nodes (ourselves included) rank before `who`. A peer that booted
    so recently that it is still in its start-up grace when the first slot opens (it first
    answered less than `startup_grace_s` before) cannot claim then, so it is not waited for."""
    opens = _first_slot(s, t)
    others = [p.candidate for p in live.values()
              if p.met is None or p.met + t.startup_grace_s <= opens] + [s.me]
    return sum(1 for c in others if c.eligible and c.node_id != who.node_id and better(c, who))


def slot(s: ElectionState, live: dict[str, PeerView], who: Candidate, t: ElectionTimings) -> float:
    """When `who` may claim in our view: its rank's turn after we lost the leader."""
    return _first_slot(s, t) + rank(s, live, who, t) * t.rank_step_s


def _first_slot(s: ElectionState, t: ElectionTimings) -> float:
    """When the best-ranked node may claim in our view: `claim_delay_s` after we lost the leader
    (and our start-up grace is over); never while a leader is in view."""
    absent = s.absent_since if s.absent_since is not None else math.inf
    return max(absent, s.started + t.startup_grace_s) + t.claim_delay_s


def backing(s: ElectionState, live: dict[str, PeerView], now: float,
             t: ElectionTimings) -> Candidate | None:
    """The live claimer we back, while its last claim is within the vote lease."""
    if s.backing is not None and s.backing in live and now < s.backing_at + t.vote_lease_s:
        return live[s.backing].candidate
    return None


def may_claim(s: ElectionState, live: dict[str, PeerView], now: float, t: ElectionTimings) -> bool:
    """True when we may claim now: eligible, settled in, backing nobody, and our slot is open."""
    if not s.me.eligible or now < s.started + t.startup_grace_s or backing(s, live, now, t):
        return False
    return s.role is Role.CANDIDATE or now >= slot(s, live, s.me, t)


def grants(s: ElectionState, live: dict[str, PeerView], claim: Claim, now: float,
           t: ElectionTimings) -> bool:
    """Ack when: settled in, no leader in view (but the solo one we follow, promoting itself), a
    new term, our one vote in it, the claimer's turn."""
    x = claim.candidate
    if not x.eligible or now < s.started + t.startup_grace_s:
        return False
    leaders = leaders_in_view(s, live, now)
    promoting = (bool(leaders) and s.coordinator == x.node_id
                 and all(solo for solo, _term, _lead in leaders))
    if leaders and not promoting:
        return False
    if claim.term <= s.term or claim.term < s.voted_term:
        return False
    if s.role is Role.CANDIDATE and better(s.me, x):  # still trying, and the better one
        return False
    if claim.term == s.voted_term and s.voted_for not in (None, x.node_id):
        return False
    held = backing(s, live, now, t)
    if held is not None and better(held, x):
        return False
    if promoting or rank(s, live, x, t) == 0:
        return True
    absent = s.absent_since if s.absent_since is not None else now
    return now >= slot(replace(s, absent_since=absent), live, x, t)


def takes(s: ElectionState, live: dict[str, PeerView], a: Announce) -> bool:
    """True when an Announce names a live leader better by (term, rank) than the one we follow
    (any such leader beats our own solo role)."""
    lead = a.coordinator
    if lead.node_id not in live or a.term < s.term:  # not in our view yet: its heartbeat will tell
        return False
    if a.term > s.term or s.solo or s.coordinator in (None, lead.node_id):
        return True
    current = (s.me if s.coordinator == s.me.node_id else live[s.coordinator].candidate
               if s.coordinator in live else s.announced)
    return current is None or better(lead, current)
