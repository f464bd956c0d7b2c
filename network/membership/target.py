"""One address the monitor probes, and what a probe's outcome does to the peer table.

The outcome functions take the table, the target and `now`, and return the table's changes; they
also learn a manual (static) target's node id from its first answer.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace

from network.membership.probe import PortClosed, ProbeFailed, ProbeRefused, ProbeTimedOut
from network.membership.records import Miss
from network.membership.table import Change, Membership, Peer, PeerState
from network.wire.address import Address
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert

log = logging.getLogger(__name__)


@dataclass
class Target:
    """One address we probe; a static target learns its node id from the first answer."""

    address: Address
    node_id: str | None
    static: bool = False
    mdns: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    failure: str = ""  # last failure while the node id is still unknown
    unreachable: bool = False  # the last probe found this node's own network down
    resting: bool = False  # not probing: its peer's beats keep coming (the tick wakes it)
    check: bool = False  # probe it once even though it beats: another peer suspects it
    probing_since: float | None = None  # when the probe that is out went (the loop's clock)

    def accepted_probe(self, now: float, connect_timeout_s: float) -> bool:
        """True when a probe is out past the connect timeout: the peer's host accepted it (the
        process lives, perhaps busy), so silence alone does not kill the peer meanwhile; its
        outcome decides. A probe still connecting does not hold off a death."""
        return self.probing_since is not None and now - self.probing_since > connect_timeout_s


def answered(m: Membership, target: Target, heartbeat: Heartbeat, now: float,
             me: str) -> list[Change]:
    """A probe of `target` got `heartbeat`: learn a static target's node id, (re)discover a peer
    that moves here or shows a new boot, and count the answer for the peer it comes from."""
    node_id = heartbeat.node_id
    changes: list[Change] = []
    if target.node_id != node_id:
        if not target.static:  # an mDNS address now answers as someone else
            if target.node_id is None:
                return []
            return m.heartbeat_failed(target.node_id, now, f"answered as {node_id!r}")
        if target.node_id is not None:
            changes += failed(m, target, f"address now answers as {node_id!r}", now)
        log.info("%s answers as node %s", target.address, node_id)
        target.node_id, target.failure = node_id, ""
    if node_id == me:
        return changes
    peer = m.get(node_id)
    if peer is None and not target.static:
        return changes
    address = target.address
    if peer is None or (peer.address != address and peer.state is not PeerState.ALIVE) or (
            target.static and peer.address == address and _advert_stale(peer, heartbeat)):
        hardware = peer.advert.hardware if peer else ""
        changes += m.discovered(PeerAdvert.from_heartbeat(heartbeat, hardware), address, now)
        peer = m.get(node_id)
    if peer is not None and peer.address == address:
        changes += m.heartbeat_ok(node_id, heartbeat, now)
    return changes


def refused(m: Membership, target: Target, refusal: ProbeRefused, now: float,
            me: str) -> list[Change]:
    """Mark the peer at this address foreign, unless the unauthenticated answer claims a member
    that answers elsewhere (then it is only a failed probe of this address)."""
    claimed = refusal.heartbeat
    node_id = target.node_id or (claimed.node_id if claimed else None)
    reason = str(refusal)
    peer = m.get(node_id) if node_id else None
    address = target.address
    if node_id is None or node_id == me or (peer is not None and peer.address != address) or (
            peer is None and claimed is None):
        return failed(m, target, reason, now)
    if target.node_id is None:
        log.info("%s answers as node %s, %s", target.address, node_id, reason)
        target.node_id, target.failure = node_id, ""
    if peer is not None:
        advert = peer.advert if claimed is None else replace(peer.advert,
                                                              pairing=claimed.pairing)
    else:
        advert = replace(PeerAdvert.from_heartbeat(claimed),  # type: ignore[arg-type]
                         node_id=node_id)
    return m.refused(advert, address, now, reason)


def failed(m: Membership, target: Target, reason: str, now: float,
           miss: Miss = Miss.FAILED) -> list[Change]:
    """A probe of `target` failed: a miss for the peer the table holds at this address."""
    peer = m.get(target.node_id) if target.node_id else None
    if peer is not None and peer.address == target.address:
        return m.heartbeat_failed(peer.node_id, now, reason, miss)
    if target.static and target.node_id is None and reason != target.failure:
        log.info("manual peer %s: %s", target.address, reason)
        target.failure = reason
    return []


def _advert_stale(peer: Peer, heartbeat: Heartbeat) -> bool:
    """True when a manual peer's heartbeat shows a new boot, protocol or swarm (re-discover it)."""
    a = peer.advert
    return (a.boot_id, a.protocol, a.fingerprint) != (heartbeat.boot_id, heartbeat.protocol,
                                                      heartbeat.swarm)


def miss_of(failure: ProbeFailed) -> Miss:
    """What a failed probe may do to its peer: a refused connection (nothing listens) kills, an
    accepted one left unanswered is a busy process, no accept waits for another's suspicion."""
    if isinstance(failure, PortClosed):
        return Miss.CLOSED
    if isinstance(failure, ProbeTimedOut):
        return Miss.BUSY if failure.accepted else Miss.TIMED_OUT
    return Miss.FAILED


def suspected(m: Membership, target: Target) -> bool:
    """True when a miss left the peer at `target` suspect or joining (confirm soon)."""
    peer = m.get(target.node_id) if target.node_id else None
    return peer is not None and peer.state in (PeerState.SUSPECT, PeerState.JOINING)
