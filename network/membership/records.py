"""The peer table's records: a peer's state, the snapshot of one peer, a change, the timings.

Frozen values and enums only, shared by the table (network/membership/table.py), the heartbeat prober
and the renderers; no I/O, no clock.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from network.wire.address import Address
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert


class PeerState(enum.Enum):
    """Where a peer stands; only ALIVE peers are routed to."""

    JOINING = "joining"  # discovered (or restarted), no heartbeat answered yet
    ALIVE = "alive"
    SUSPECT = "suspect"  # missed a probe or went quiet: out of routing, not yet dead
    DEAD = "dead"  # missed enough probes; still probed, so a return is seen at once
    FOREIGN = "foreign"  # another protocol version or swarm key: never probed, never used
    PENDING = "pending"  # holds the swarm key and answers, but its node id is not approved yet


class ChangeKind(enum.Enum):
    """What a change record reports, for the join and leave lines in the log."""

    JOINED = "joined"  # first answer since discovery or restart
    SUSPECTED = "suspected"
    RECOVERED = "recovered"  # answered again after SUSPECT or DEAD
    LEFT = "left"  # was answering, now dead or said goodbye
    UNREACHABLE = "unreachable"  # discovered but never answered
    RESTARTED = "restarted"  # new boot id
    FOREIGN = "foreign"
    IGNORED = "ignored"  # not tracked: table full, or it claims our node id
    FORGOTTEN = "forgotten"  # a dead or foreign record dropped (goodbye, or evicted for room)
    PENDING = "pending"  # answers with the swarm key, waits for approval (--approve-peers)


class Miss(enum.Enum):
    """How a probe failed, which decides what its miss may do to the peer."""

    FAILED = "failed"  # a bad answer, a reset: counts as a miss
    TIMED_OUT = "timed out"  # no TCP accept in time: death waits for another's suspicion
    BUSY = "busy"  # accepted, but no answer in time: the process lives; suspect, not dead (hung_s)
    CLOSED = "closed"  # its host refused the connection: nothing listens, the process is gone


WATCHERS = 3  # each node beats every interval to the next WATCHERS members in node-id order
SLOW_ROUNDS = 6  # and to every other member every SLOW_ROUNDS intervals, or when its beat changed
RECENT_DEATH_S = 3.0  # a death a heartbeat still names among its suspects


@dataclass(frozen=True)
class Timings:
    """Heartbeat timing shared by the probing adapter and this core (defaults: out in < 1 s)."""

    interval_s: float = 0.5  # one probe per peer this often
    connect_timeout_s: float = 0.5  # no TCP accept this fast is a miss (a busy host still accepts)
    request_timeout_s: float = 5.0  # an accepted probe answering within this counts, however slow
    suspect_after_s: float = 1.0  # silence that takes an alive peer out of routing
    dead_after_misses: int = 2  # consecutive failed probes that make a peer dead
    dead_after_s: float = 1.0  # or one failed probe with this much silence since the last answer
    hung_s: float = 30.0  # a peer whose host accepts but that answers nothing this long is dead

    def __post_init__(self) -> None:
        if not 0 < self.interval_s <= self.suspect_after_s:
            raise ValueError("Timings: need 0 < interval_s <= suspect_after_s")
        if not 0 < self.connect_timeout_s <= self.request_timeout_s:
            raise ValueError("Timings: need 0 < connect_timeout_s <= request_timeout_s")
        if self.dead_after_misses < 1 or self.dead_after_s <= 0:
            raise ValueError("Timings: need dead_after_misses >= 1 and dead_after_s > 0")
        if self.hung_s <= self.give_up_s:
            raise ValueError("Timings: need hung_s > request_timeout_s + 2 * interval_s")

    @property
    def quiet_s(self) -> float:
        """Silence in a watched peer's beats (sent every interval) after which it is probed."""
        return 1.2 * self.interval_s

    @property
    def slow_quiet_s(self) -> float:
        """Silence in another peer's beats (every `SLOW_ROUNDS` intervals) before a probe."""
        return (SLOW_ROUNDS + 0.2) * self.interval_s

    @property
    def slow_suspect_s(self) -> float:
        """Silence that takes an alive peer this node does not watch out of routing."""
        return self.suspect_after_s + (SLOW_ROUNDS - 1) * self.interval_s

    @property
    def give_up_s(self) -> float:
        """Silence that no slow-but-answering peer can cause: dead even without a reported miss."""
        return self.request_timeout_s + 2 * self.interval_s


@dataclass(frozen=True)
class Peer:
    """One tracked peer as of its last event (a snapshot: safe to hand to renderers)."""

    advert: PeerAdvert
    address: Address  # where the adapter probes it (the API port its advert names)
    state: PeerState
    since: float  # when it entered `state`
    last_ok: float | None  # last answered heartbeat of this boot
    misses: int  # consecutive failed probes
    heartbeat: Heartbeat | None
    reason: str  # why it is in `state`, for `main.py peers`
    refused: bool = False  # FOREIGN because its heartbeat failed the swarm-key check
    doubtful: bool = False  # every miss since its last answer was a timeout (not a refusal)
    busy: bool = False  # its last miss was an accepted probe left unanswered: alive but slow
    met: float | None = None  # when this boot of it first answered us

    @property
    def node_id(self) -> str:
        """The peer's node id."""
        return self.advert.node_id

    @property
    def routable(self) -> bool:
        """True when requests may go to this peer."""
        return self.state is PeerState.ALIVE

    @property
    def endpoint(self) -> Address:
        """Where to reach its API: the probed host, on the port its last heartbeat names."""
        port = self.heartbeat.api_port if self.heartbeat is not None else 0
        return Address(self.address.host, port or self.address.port)


@dataclass(frozen=True)
class Change:
    """A state change worth a log line; `peer` is the record after it (None if never tracked)."""

    kind: ChangeKind
    node_id: str
    reason: str
    peer: Peer | None
    previous: PeerState | None = None
