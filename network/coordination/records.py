"""The election's records: frozen values only (no I/O, no clock), shared by the pure core
(`election.py`), its driver, the wire forms (network/wire/election.py) and the simulation."""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass


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

    startup_grace_s: float = 1.0  # a fresh (or woken) node neither claims nor votes meanwhile
    claim_delay_s: float = 0.1  # rank 0 claims this long after losing the leader
    rank_step_s: float = 0.3  # each lower rank waits this much longer
    claim_timeout_s: float = 0.1  # a claim without a majority is re-sent this often
    vote_lease_s: float = 0.6  # an ack binds the voter to its claimer (against worse ones) this long
    suspect_grace_s: float = 1.0  # a SUSPECT peer still counts as live this long
    announce_trust_s: float = 1.0  # an announce counts until the announcer's heartbeat confirms it
    reannounce_max_s: float = 1.0  # a new coordinator re-sends its announce to the peers whose
    # heartbeats do not show them following it yet after claim_timeout_s, then ever more slowly
    # (each gap as long as the time since it won), at most this far apart: at 50 nodes, a re-send
    # to every such peer every 0.1 s was a storm of signed POSTs that starved its own loop

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
    solo: bool = False  # Heartbeat.solo: it leads only itself (a role taken with nobody in view)
    met: float | None = None  # when this boot of it first answered us (None: long ago, unknown)

    @property
    def node_id(self) -> str:
        """The peer's node id."""
        return self.candidate.node_id

    @property
    def leads(self) -> bool:
        """True when its heartbeat names itself the coordinator."""
        return self.coordinator == self.candidate.node_id


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
    """One node's election state; `term` only grows and `voted_for` binds within `voted_term`.

    `solo` marks a role held alone: taken when no peer was in view, at the term the node already
    had (no claim, no vote). It counts for nothing against a leader others follow, and becomes a
    real role (a new term, won by vote) only once a peer follows it."""

    me: Candidate
    started: float  # start of the start-up grace (boot, or waking from sleep)
    role: Role = Role.FOLLOWER
    term: int = 0  # highest term known (our own when leading): advertised in heartbeats
    coordinator: str | None = None  # the leader followed (our own id when leading)
    leader_term: int = 0  # the term that leader leads: plans older than this are stale
    solo: bool = False  # COORDINATOR of itself only (see above)
    lone: bool = False  # no peer in view since the grace ended: the next one seen restarts it
    voted_term: int = 0  # highest term we acked a claim in (our own claims included)
    voted_for: str | None = None
    backing: str | None = None  # the claimer we acked or yielded to: we do not compete with it
    backing_at: float = -math.inf  # when it last claimed to us
    claim_term: int = 0
    acks: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()  # voters that cannot ack `claim_term` any more
    sent_at: float = -math.inf  # last Claim (candidate) or Announce (coordinator) sent
    won_at: float = -math.inf  # when it last won its term (its announces are re-sent from there)
    blocked_term: int = 0  # highest term a claim or a refusal showed as taken
    absent_since: float | None = None  # when we last lost sight of any leader
    announced: Candidate | None = None  # the leader an Announce named, trusted until confirmed
    announced_until: float = -math.inf


@dataclass(frozen=True)
class Decision:
    """The outcome of one call: the new state, what to send, and when to call `step` again."""

    state: ElectionState
    sends: tuple[Send, ...] = ()
    wake_at: float | None = None
