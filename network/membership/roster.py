"""The peer table's storage and its queries: who is tracked, who is routable, the beat ring.

`Roster` holds the records and the pure helpers that change one record; `Membership`
(network/membership/table.py) adds the events that move peers between states. No I/O, no clock:
every method that needs the time takes `now`.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace

from network.membership.records import (
    RECENT_DEATH_S,
    WATCHERS,
    Change,
    ChangeKind,
    Peer,
    PeerState,
    Timings,
)
from network.wire.address import Address
from network.wire.fields import MAX_SUSPECTS
from network.wire.txt import PeerAdvert, compatible

MAX_PEERS = 256
MAX_DEAF = 64  # stalls of this node's own loop remembered (older ones no longer overlap silence)


class Roster:
    """The records of the peer table, keyed by node id (see `Membership`)."""

    def __init__(self, self_id: str, protocol: int, fingerprint: str, *, self_boot_id: str = "",
                 timings: Timings | None = None, max_peers: int = MAX_PEERS,
                 also_accepted: frozenset[str] = frozenset(),
                 approved: Callable[[str], bool] | None = None) -> None:
        self._self_id = self_id
        self._self_boot_id = self_boot_id
        self._protocol = protocol
        self._fingerprint = fingerprint
        self._accepted = also_accepted | {fingerprint}  # previous swarm keys during a rotation
        self.timings = timings or Timings()
        self.max_peers = max_peers
        self._approved = approved or _everyone
        self._peers: dict[str, Peer] = {}
        self._named: dict[str, float] = {}  # peer -> last time another member named it suspect
        self._deaf: deque[tuple[float, float]] = deque(maxlen=MAX_DEAF)  # our loop's stalls
        self._deaf_until = float("-inf")  # the end of the latest of them

    def deaf(self, start: float, end: float) -> None:
        """This node's own event loop stalled from `start` to `end` (a starved process: its timers
        ran that late): beats that came meanwhile were not read yet, so that time is no peer's
        silence (`_silence`)."""
        if end > start:
            self._deaf.append((start, end))
            self._deaf_until = max(self._deaf_until, end)

    def _silence(self, peer: Peer, now: float) -> float:
        """How long `peer` has been quiet as far as this node could hear: the time since its last
        answer, less the stalls of our own loop since then."""
        ref = self._reference(peer)
        if self._deaf_until <= ref:  # the common case: no stall since
            return max(0.0, now - ref)
        stalled, covered = 0.0, ref
        for start, end in sorted(self._deaf):  # stalls may overlap: count each moment once
            start, end = max(start, covered), min(end, now)
            if end > start:
                stalled, covered = stalled + end - start, end
        return max(0.0, now - ref - stalled)

    def __len__(self) -> int:
        return len(self._peers)

    def get(self, node_id: str) -> Peer | None:
        """The record for `node_id`, if tracked."""
        return self._peers.get(node_id)

    def peers(self) -> tuple[Peer, ...]:
        """Every tracked peer, sorted by node id."""
        return tuple(self._peers[k] for k in sorted(self._peers))

    def routable(self) -> tuple[Peer, ...]:
        """Alive, compatible peers, sorted by node id."""
        return tuple(p for p in self.peers() if p.state is PeerState.ALIVE)

    def _ring(self) -> tuple[list[str], int]:
        """Members (and this node) in node-id order, and this node's place in it."""
        ids = sorted({self._self_id, *(p.node_id for p in self._peers.values()
                                       if p.state not in (PeerState.DEAD, PeerState.FOREIGN))})
        return ids, ids.index(self._self_id)

    def watchers(self) -> frozenset[str]:
        """The members this node beats every interval: the next `WATCHERS` in node-id order,
        who expect it (every other member gets a beat every `SLOW_ROUNDS` intervals)."""
        ids, me = self._ring()
        k = min(WATCHERS, len(ids) - 1)
        return frozenset(ids[(me + j) % len(ids)] for j in range(1, k + 1))

    def watched(self) -> frozenset[str]:
        """The members whose beats this node expects every interval: the previous `WATCHERS`."""
        ids, me = self._ring()
        k = min(WATCHERS, len(ids) - 1)
        return frozenset(ids[(me - j) % len(ids)] for j in range(1, k + 1))

    def beat_addresses(self, everyone: bool) -> list[Address]:
        """Where this round's beats go: the members watching this node, or (`everyone`) every
        tracked peer that is not foreign."""
        peers = self.peers()
        if everyone:
            return [p.address for p in peers if p.state is not PeerState.FOREIGN]
        watchers = self.watchers()
        return [p.address for p in peers if p.node_id in watchers]

    def suspects(self, now: float) -> tuple[str, ...]:
        """Peers this node suspects, or saw die in the last `RECENT_DEATH_S` (at most
        `MAX_SUSPECTS`): its heartbeat names them, so the peers that do not watch them check."""
        ids = [p.node_id for p in self.peers() if p.state is PeerState.SUSPECT or (
            p.state is PeerState.DEAD and p.last_ok is not None and now - p.since < RECENT_DEATH_S)]
        return tuple(ids[:MAX_SUSPECTS])

    def _note_suspects(self, sender: str, suspects: tuple[str, ...], now: float) -> None:
        """`sender`'s heartbeat names `suspects`: each, if tracked, counts as suspected by
        another member now (the confirmation a doubtful death waits for)."""
        for node_id in suspects:
            if node_id != sender and node_id in self._peers:
                self._named[node_id] = now

    def _settled(self, peer: Peer) -> bool:
        """Whether `peer`'s misses may kill it: a refusal may; timeouts only once another member
        named it suspect since it last answered us, or when no other member is there to ask."""
        if not peer.doubtful or peer.last_ok is None:
            return True
        if not any(p.state is PeerState.ALIVE and p.node_id != peer.node_id
                   for p in self._peers.values()):
            return True
        return self._named.get(peer.node_id, float("-inf")) > self._reference(peer)

    def _compatible(self, advert: PeerAdvert) -> tuple[bool, str]:
        """`compatible()` where any accepted fingerprint (current or previous key) counts."""
        ours = advert.fingerprint if advert.fingerprint in self._accepted else self._fingerprint
        return compatible(advert, self._protocol, ours)

    @staticmethod
    def _fresh(advert: PeerAdvert, address: Address, now: float) -> Peer:
        return Peer(advert=advert, address=address, state=PeerState.JOINING, since=now,
                    last_ok=None, misses=0, heartbeat=None, reason="discovered")

    @staticmethod
    def _reference(peer: Peer) -> float:
        return peer.since if peer.last_ok is None else peer.last_ok

    def _admit(self, answered: Peer, before: Peer, now: float) -> list[Change]:
        """ALIVE (or PENDING when not approved) for a peer that has just answered; `before` is
        its record beforehand, to name the change."""
        node_id = answered.node_id
        if not self._approved(node_id):
            reason = (f"waiting for approval: run `python main.py peers approve {node_id}` "
                      "on this machine")
            since = before.since if before.state is PeerState.PENDING else now
            new = replace(answered, state=PeerState.PENDING, since=since, reason=reason)
            self._peers[node_id] = new
            if before.state is PeerState.PENDING:
                return []
            return [Change(ChangeKind.PENDING, node_id, reason, new, before.state)]
        kind = (ChangeKind.JOINED if before.last_ok is None or before.state is PeerState.PENDING
                else ChangeKind.RECOVERED if before.state is not PeerState.ALIVE else None)
        since = before.since if before.state is PeerState.ALIVE else now
        new = replace(answered, state=PeerState.ALIVE, since=since, reason="answering")
        self._peers[node_id] = new
        return [] if kind is None else [Change(kind, node_id, "answering", new, before.state)]

    def _set(self, peer: Peer, state: PeerState, now: float, reason: str,
             kind: ChangeKind) -> list[Change]:
        new = replace(peer, state=state, since=now, reason=reason)
        self._peers[peer.node_id] = new
        return [Change(kind, peer.node_id, reason, new, peer.state)]

    def _die(self, peer: Peer, now: float, reason: str) -> list[Change]:
        kind = ChangeKind.UNREACHABLE if peer.last_ok is None else ChangeKind.LEFT
        return self._set(peer, PeerState.DEAD, now, reason, kind)

    def _evict(self, changes: list[Change]) -> bool:
        """Drop the longest-dead or foreign record to make room; False when every peer is live."""
        spare = [p for p in self._peers.values() if p.state in (PeerState.DEAD, PeerState.FOREIGN)]
        if not spare:
            return False
        victim = min(spare, key=lambda p: (p.since, p.node_id))
        del self._peers[victim.node_id]
        self._named.pop(victim.node_id, None)
        changes.append(Change(ChangeKind.FORGOTTEN, victim.node_id, "evicted to make room",
                              victim, victim.state))
        return True


def _everyone(_node_id: str) -> bool:
    return True
