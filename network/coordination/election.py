"""The coordinator election: a pure state machine over the membership view, messages and `now`.

- Rank: higher priority, then higher score, then the smaller node id. Priority None
  (`--no-coordinator`) never claims, but votes and follows.
- A live peer whose heartbeat names itself coordinator is a leader. Every node follows the best
  leader in view by (term, rank); a coordinator that sees a better one steps down. Nobody claims or
  acks a claim while a leader is in view, so a sitting coordinator is never displaced by a joiner.
- With no leader in view, the node of rank k among live eligible nodes claims `max term + 1` at
  `claim_delay_s + k * rank_step_s` after it lost the leader (and not within `startup_grace_s` of
  booting). Voters ack a claimer whose slot is open in their own view, once per term, and back it
  for `vote_lease_s` against worse claimers; a worse candidate that hears a better one yields.
  Acks from a majority of the claimer's own live view (itself included) make it coordinator.
- A node cannot see its real component, so each side of a partition may elect; on heal the leader
  with the higher (term, rank) keeps the role and the other steps down.
- Terms never decrease; `accept_plan` refuses plans older than the leader a node follows.
"""
from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace


class Role(enum.Enum):
    """What a node is doing in the election."""

    FOLLOWER = "follower"
    CANDIDATE = "candidate"  # claimed `claim_term`, collecting acks
    COORDINATOR = "coordinator"


@dataclass(frozen=True)
class Candidate:
    """A node as ranked for the role; priority None (`--no-coordinator`) is never eligible."""

    node_id: str
    priority: int | None = 0
    score: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.score):
            raise ValueError("Candidate: score must be finite")

    @property
    def eligible(self) -> bool:
        """True when the node may take the role."""
        return self.priority is not None

    @property
    def rank_key(self) -> tuple[int, float, float, str]:
        """Sort key, best first: eligible, higher priority, higher score, smaller node id."""
        if self.priority is None:
            return (1, 0.0, -self.score, self.node_id)
        return (0, -float(self.priority), -self.score, self.node_id)


def better(a: Candidate, b: Candidate) -> bool:
    """True when `a` ranks strictly before `b`."""
    return a.rank_key < b.rank_key


@dataclass(frozen=True)
class ElectionTimings:
    """Election timers in seconds; defaults fit membership's `Timings` (a crash is seen in ~1 s)."""

    startup_grace_s: float = 1.0  # a fresh node neither claims nor votes while its view fills
    claim_delay_s: float = 0.1  # rank 0 claims this long after losing the leader
    rank_step_s: float = 0.3  # each lower rank waits this much longer
    claim_timeout_s: float = 0.2  # a claim without a majority is re-sent this often
    vote_lease_s: float = 0.6  # an ack binds the voter to its claimer (against worse ones) this long
    suspect_grace_s: float = 1.0  # a SUSPECT peer still counts as live this long
    announce_trust_s: float = 1.0  # an announce counts until the announcer's heartbeat confirms it

    def __post_init__(self) -> None:
        if min(vars(self).values()) <= 0 or self.claim_timeout_s >= self.rank_step_s:
            raise ValueError("ElectionTimings: need positive values and claim_timeout_s < rank_step_s")


DEFAULT_TIMINGS = ElectionTimings()


@dataclass(frozen=True)
class PeerView:
    """One ALIVE or SUSPECT peer of the membership table, with its last heartbeat's claims."""

    candidate: Candidate
    term: int = 0  # Heartbeat.term
    coordinator: str | None = None  # Heartbeat.coordinator; its own id means "I lead `term`"
    suspect_since: float | None = None  # None while ALIVE

    @property
    def node_id(self) -> str:
        """The peer's node id."""
        return self.candidate.node_id


@dataclass(frozen=True)
class Claim:
    """"I lead `term` if a majority of my view agrees": sent to every live peer, re-sent on timeout."""

    term: int
    candidate: Candidate


@dataclass(frozen=True)
class Ack:
    """A voter's answer to one claim; a refusal carries the voter's highest term in `seen_term`."""

    term: int
    voter: str
    candidate: str
    granted: bool
    seen_term: int = 0


@dataclass(frozen=True)
class Announce:
    """"I lead `term`": sent by a new coordinator, and again to peers not yet shown following it."""

    term: int
    coordinator: Candidate


Message = Claim | Ack | Announce


@dataclass(frozen=True)
class Send:
    """One message to send; `to` None means every live peer of the sender's view."""

    to: str | None
    message: Message


@dataclass(frozen=True)
class ElectionState:
    """One node's election state; `term` only grows and `voted_for` binds within `voted_term`."""

    me: Candidate
    started: float
    role: Role = Role.FOLLOWER
    term: int = 0  # highest term known (our own when leading): advertised in heartbeats
    coordinator: str | None = None  # the leader followed (our own id when leading)
    leader_term: int = 0  # the term that leader leads: plans older than this are stale
    voted_term: int = 0  # highest term we acked a claim in (our own claims included)
    voted_for: str | None = None
    backing: str | None = None  # the claimer we acked or yielded to: we do not compete with it
    backing_at: float = -math.inf  # when it last claimed to us
    claim_term: int = 0
    acks: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()  # voters that cannot ack `claim_term` any more
    sent_at: float = -math.inf  # last Claim (candidate) or Announce (coordinator) sent
    blocked_term: int = 0  # highest term a refusal showed as taken
    absent_since: float | None = None  # when we last lost sight of any leader
    announced: Candidate | None = None  # the leader an Announce named, trusted until confirmed
    announced_until: float = -math.inf


@dataclass(frozen=True)
class Decision:
    """The outcome of one call: the new state, what to send, and when to call `step` again."""

    state: ElectionState
    sends: tuple[Send, ...] = ()
    wake_at: float | None = None


def boot(me: Candidate, now: float, term: int = 0, voted_term: int = 0,
         voted_for: str | None = None) -> ElectionState:
    """A fresh follower; pass the persisted term and vote to keep them across a restart."""
    return ElectionState(me=me, started=now, term=term, voted_term=voted_term, voted_for=voted_for)


def accept_plan(state: ElectionState, plan_term: int) -> bool:
    """True unless the plan's term is older than the coordinator this node follows (stale)."""
    return plan_term >= state.leader_term


def step(state: ElectionState, view: Iterable[PeerView], now: float,
         timings: ElectionTimings = DEFAULT_TIMINGS) -> Decision:
    """Re-decide after a view change or a timer: follow, step down, claim, retry or win."""
    live = _live(state, view, now, timings)
    new, sends = _settle(state, live, now, timings)
    return Decision(new, tuple(sends), _wake(new, live, now, timings))


def receive(state: ElectionState, view: Iterable[PeerView], message: Message, now: float,
            timings: ElectionTimings = DEFAULT_TIMINGS) -> Decision:
    """Handle one Claim, Ack or Announce from a peer, then re-decide as `step` does."""
    live = _live(state, view, now, timings)
    me = state.me.node_id
    sends: list[Send] = []
    if isinstance(message, Claim) and message.candidate.node_id != me:
        x = message.candidate
        granted = _grant(state, live, message, now, timings)
        if granted:
            state = replace(state, voted_term=message.term, voted_for=x.node_id)
        elif state.role is Role.CANDIDATE and message.term >= state.claim_term:  # it voted for itself
            state = replace(state, blocked_term=max(state.blocked_term, message.term),
                            refused=state.refused | {x.node_id})
        if granted or (x.eligible and better(x, state.me)):  # back it: stop competing
            held = _backing(state, live, now, timings)
            if held is None or held.node_id == x.node_id or better(x, held):
                state = replace(state, backing=x.node_id, backing_at=now, acks=frozenset(),
                                role=Role.FOLLOWER if state.role is Role.CANDIDATE else state.role)
        seen = max(state.term, state.voted_term)
        sends.append(Send(x.node_id, Ack(message.term, me, x.node_id, granted, seen)))
    elif (isinstance(message, Ack) and message.candidate == me and state.role is Role.CANDIDATE
          and message.term == state.claim_term):
        if message.granted:
            state = replace(state, acks=state.acks | {message.voter})
        elif message.seen_term >= state.claim_term:
            state = replace(state, blocked_term=max(state.blocked_term, message.seen_term),
                            refused=state.refused | {message.voter})
    elif isinstance(message, Announce) and _takes(state, live, message):
        state = replace(state, role=Role.FOLLOWER, term=message.term, leader_term=message.term,
                        coordinator=message.coordinator.node_id, announced=message.coordinator,
                        announced_until=now + timings.announce_trust_s, absent_since=None,
                        acks=frozenset())
    new, more = _settle(state, live, now, timings)
    return Decision(new, tuple(sends + more), _wake(new, live, now, timings))


def _live(state: ElectionState, view: Iterable[PeerView], now: float,
          t: ElectionTimings) -> dict[str, PeerView]:
    """Peers that count: ALIVE, or SUSPECT for less than the grace; never ourselves."""
    return {p.node_id: p for p in view if p.node_id != state.me.node_id
            and (p.suspect_since is None or now - p.suspect_since < t.suspect_grace_s)}


def _leader_key(entry: tuple[int, Candidate]) -> tuple[int, tuple[int, float, float, str]]:
    """Sort key for (term, leader), best first: higher term, then better rank."""
    return (-entry[0], entry[1].rank_key)


def _leaders(state: ElectionState, live: dict[str, PeerView], now: float) -> list[tuple[int, Candidate]]:
    """Every leader in view as (term, candidate): heartbeats, ourselves, a fresh announce."""
    found = [(p.term, p.candidate) for p in live.values() if p.coordinator == p.node_id]
    if state.role is Role.COORDINATOR:
        found.append((state.term, state.me))
    a = state.announced
    if a is not None and now < state.announced_until and a.node_id in live:
        seen = live[a.node_id]
        if seen.coordinator == a.node_id or seen.term < state.leader_term:  # not contradicted yet
            found.append((state.leader_term, a))
    return found


def _settle(s: ElectionState, live: dict[str, PeerView], now: float,
            t: ElectionTimings) -> tuple[ElectionState, list[Send]]:
    """Follow the best leader in view (stepping down if need be), or claim, retry, or win."""
    me = s.me.node_id
    leaders = _leaders(s, live, now)
    if leaders:
        term, lead = min(leaders, key=_leader_key)
        if lead.node_id == me:
            if _lagging(s, live) and now >= s.sent_at + t.claim_timeout_s:  # announce lost?
                return replace(s, sent_at=now), [Send(i, Announce(s.term, s.me)) for i in _lagging(s, live)]
            return s, []
        kept = s.announced if s.announced is not None and s.announced.node_id == lead.node_id else None
        return replace(s, role=Role.FOLLOWER, term=max(s.term, term), coordinator=lead.node_id,
                       leader_term=term, absent_since=None, acks=frozenset(), announced=kept), []
    s = replace(s, coordinator=None, announced=None,
                absent_since=now if s.absent_since is None else s.absent_since)
    if not _may_claim(s, live, now, t):
        return (replace(s, role=Role.FOLLOWER, acks=frozenset()) if s.role is Role.CANDIDATE
                else s), []
    sends: list[Send] = []
    if (s.role is not Role.CANDIDATE or now >= s.sent_at + t.claim_timeout_s
            or _hopeless(s, live)):  # a claim that cannot win moves to a free term at once
        if not (s.role is Role.CANDIDATE and _majority(s, live)):
            s, sends = _claim(s, live, now)
    if _majority(s, live):
        won = replace(s, role=Role.COORDINATOR, term=s.claim_term, leader_term=s.claim_term,
                      coordinator=me, acks=frozenset(), absent_since=None, sent_at=now)
        return won, [Send(None, Announce(won.term, s.me))]
    return s, sends


def _lagging(s: ElectionState, live: dict[str, PeerView]) -> list[str]:
    """Live peers whose heartbeat does not yet show them following us in our term."""
    return sorted(i for i, p in live.items() if p.coordinator != s.me.node_id or p.term < s.term)


def _hopeless(s: ElectionState, live: dict[str, PeerView]) -> bool:
    """True when refusals leave our claim no majority in this term."""
    voters = set(live) | {s.me.node_id}
    return s.role is Role.CANDIDATE and 2 * len(voters - s.refused) <= len(voters)


def _majority(s: ElectionState, live: dict[str, PeerView]) -> bool:
    """True when acks (ours included) are a majority of our live view."""
    voters = set(live) | {s.me.node_id}
    return s.role is Role.CANDIDATE and 2 * len((s.acks & voters) | {s.me.node_id}) > len(voters)


def _claim(s: ElectionState, live: dict[str, PeerView], now: float) -> tuple[ElectionState, list[Send]]:
    """Claim (or re-claim) the next free term; a retry keeps its term and acks while it can win."""
    me = s.me.node_id
    floor = max([s.term, s.voted_term if s.voted_for != me else 0] + [p.term for p in live.values()])
    if s.role is Role.CANDIDATE and s.claim_term > floor and not s.refused:  # only losses: re-send
        term, acks, refused = s.claim_term, s.acks, s.refused
    else:
        term = max(floor, s.blocked_term) + 1
        term, acks, refused = max(term, s.voted_term if s.voted_for == me else 0), frozenset(), frozenset()
    s = replace(s, role=Role.CANDIDATE, claim_term=term, acks=acks, refused=refused, sent_at=now,
                voted_term=term, voted_for=me)
    return s, [Send(None, Claim(term, s.me))]


def _rank(s: ElectionState, live: dict[str, PeerView], who: Candidate) -> int:
    """How many live eligible nodes (ourselves included) rank before `who`."""
    others = [p.candidate for p in live.values()] + [s.me]
    return sum(1 for c in others if c.eligible and c.node_id != who.node_id and better(c, who))


def _slot(s: ElectionState, live: dict[str, PeerView], who: Candidate, t: ElectionTimings) -> float:
    """When `who` may claim in our view: its rank's turn after we lost the leader."""
    absent = s.absent_since if s.absent_since is not None else math.inf
    start = max(absent, s.started + t.startup_grace_s)
    return start + t.claim_delay_s + _rank(s, live, who) * t.rank_step_s


def _backing(s: ElectionState, live: dict[str, PeerView], now: float,
             t: ElectionTimings) -> Candidate | None:
    """The live claimer we back, while its last claim is within the vote lease."""
    if s.backing in live and now < s.backing_at + t.vote_lease_s:
        return live[s.backing].candidate
    return None


def _may_claim(s: ElectionState, live: dict[str, PeerView], now: float, t: ElectionTimings) -> bool:
    """True when we may claim now: eligible, settled in, backing nobody, and our slot is open."""
    if not s.me.eligible or now < s.started + t.startup_grace_s or _backing(s, live, now, t):
        return False
    return s.role is Role.CANDIDATE or now >= _slot(s, live, s.me, t)


def _grant(s: ElectionState, live: dict[str, PeerView], claim: Claim, now: float,
           t: ElectionTimings) -> bool:
    """Ack when: settled in, no leader in view, a new term, our one vote in it, the claimer's turn."""
    x = claim.candidate
    if not x.eligible or now < s.started + t.startup_grace_s or _leaders(s, live, now):
        return False
    if claim.term <= s.term or claim.term < s.voted_term:
        return False
    if s.role is Role.CANDIDATE and better(s.me, x):  # still trying, and the better one
        return False
    if claim.term == s.voted_term and s.voted_for not in (None, x.node_id):
        return False
    held = _backing(s, live, now, t)
    if held is not None and better(held, x):
        return False
    if _rank(s, live, x) == 0:
        return True
    absent = s.absent_since if s.absent_since is not None else now
    return now >= _slot(replace(s, absent_since=absent), live, x, t)


def _takes(s: ElectionState, live: dict[str, PeerView], a: Announce) -> bool:
    """True when an Announce names a live leader better by (term, rank) than the one we follow."""
    lead = a.coordinator
    if lead.node_id not in live or a.term < s.term:  # not in our view yet: its heartbeat will tell
        return False
    if a.term > s.term or s.coordinator in (None, lead.node_id):
        return True
    current = (s.me if s.coordinator == s.me.node_id else live[s.coordinator].candidate
               if s.coordinator in live else s.announced)
    return current is None or better(lead, current)


def _wake(s: ElectionState, live: dict[str, PeerView], now: float, t: ElectionTimings) -> float | None:
    """The earliest time a decision could change with no new input (timers only)."""
    times = [s.announced_until, s.backing_at + t.vote_lease_s]
    times += [p.suspect_since + t.suspect_grace_s for p in live.values() if p.suspect_since is not None]
    if s.role is Role.CANDIDATE or (s.role is Role.COORDINATOR and _lagging(s, live)):
        times.append(s.sent_at + t.claim_timeout_s)
    elif s.role is Role.FOLLOWER and s.coordinator is None and s.me.eligible:
        times.append(_slot(s, live, s.me, t))
    future = [x for x in times if now < x < math.inf]
    return min(future) if future else None
