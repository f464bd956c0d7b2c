"""The peer table: a pure state machine fed by discovery, heartbeat and clock events."""
from __future__ import annotations

from dataclasses import replace

from network.membership.records import Change, ChangeKind, Miss, Peer, PeerState, Timings
from network.membership.roster import MAX_PEERS, Roster
from network.wire.address import Address
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert

__all__ = ["MAX_PEERS", "Change", "ChangeKind", "Membership", "Peer", "PeerState", "Timings"]


class Membership(Roster):
    """The peer table. Every method takes `now` explicitly and returns the changes it caused.

    mDNS (or a static peer's first heartbeat, via `PeerAdvert.from_heartbeat`) calls `discovered`;
    heartbeats for peers not discovered first are ignored. Silence alone never kills a peer before
    `Timings.give_up_s`: a busy peer whose answers arrive within the request timeout stays out of
    DEAD, while a refused or unconnectable probe (a crash or a cut link) kills within about 1 s.
    A peer answering with the swarm key whose id `approved` refuses is PENDING instead of ALIVE.
    """

    def discovered(self, advert: PeerAdvert, address: Address, now: float) -> list[Change]:
        """mDNS Added or Updated (or a static peer seen): track, reclassify, or detect a restart."""
        node_id = advert.node_id
        if node_id == self._self_id:
            if self._self_boot_id and advert.boot_id != self._self_boot_id:
                return [Change(ChangeKind.IGNORED, node_id, "another node claims our id", None)]
            return []
        ok, why = self._compatible(advert)
        old = self._peers.get(node_id)
        changes: list[Change] = []
        if old is None:
            if len(self._peers) >= self.max_peers and not self._evict(changes):
                reason = f"peer table full ({self.max_peers} peers)"
                return [Change(ChangeKind.IGNORED, node_id, reason, None)]
            peer = self._fresh(advert, address, now)
        elif not ok or (old.refused and advert.boot_id == old.advert.boot_id
                        and advert.fingerprint == old.advert.fingerprint):
            # A refused boot stays foreign, unless it now advertises another key (it joined).
            peer = replace(old, advert=advert, address=address)
        elif old.state is PeerState.FOREIGN or advert.boot_id != old.advert.boot_id:
            peer = self._fresh(advert, address, now)
            if old.state is not PeerState.FOREIGN:
                reason = f"boot {old.advert.boot_id} -> {advert.boot_id}"
                changes.append(Change(ChangeKind.RESTARTED, node_id, reason, peer, old.state))
        else:
            peer = replace(old, advert=advert, address=address)
        if not ok and (peer.state is not PeerState.FOREIGN or peer.reason != why):
            peer = replace(peer, state=PeerState.FOREIGN, since=now, reason=why)
            changes.append(Change(ChangeKind.FOREIGN, node_id, why, peer,
                                  old.state if old else None))
        self._peers[node_id] = peer
        return changes

    def heartbeat_ok(self, node_id: str, heartbeat: Heartbeat, now: float) -> list[Change]:
        """An answer arrived (however late): the peer is alive (or pending approval) now, even if
        it was dead."""
        peer = self._peers.get(node_id)
        if peer is None or peer.state is PeerState.FOREIGN:
            return []
        if heartbeat.node_id != node_id:
            return self.heartbeat_failed(node_id, now, f"answered as {heartbeat.node_id!r}")
        if heartbeat.suspects:
            self._note_suspects(node_id, heartbeat.suspects, now)
        last = peer.heartbeat  # the common case, every beat: nothing changes but the time
        if (peer.state is PeerState.ALIVE and last is not None
                and heartbeat.boot_id == peer.advert.boot_id
                and (heartbeat.protocol, heartbeat.swarm) == (last.protocol, last.swarm)
                and heartbeat.swarm in self._accepted and self._approved(node_id)):
            self._peers[node_id] = replace(peer, last_ok=now, misses=0, heartbeat=heartbeat,
                                           doubtful=False, busy=False)
            return []
        claimed = replace(peer.advert, protocol=heartbeat.protocol, fingerprint=heartbeat.swarm)
        ok, why = self._compatible(claimed)
        if not ok:
            self._peers[node_id] = replace(peer, state=PeerState.FOREIGN, since=now, reason=why,
                                           heartbeat=heartbeat)
            return [Change(ChangeKind.FOREIGN, node_id, why, self._peers[node_id], peer.state)]
        changes: list[Change] = []
        if heartbeat.boot_id != peer.advert.boot_id:
            reason = f"boot {peer.advert.boot_id} -> {heartbeat.boot_id}"
            previous = peer.state
            peer = self._fresh(replace(peer.advert, boot_id=heartbeat.boot_id), peer.address, now)
            changes.append(Change(ChangeKind.RESTARTED, node_id, reason, peer, previous))
        answered = replace(peer, last_ok=now, misses=0, heartbeat=heartbeat, doubtful=False,
                           busy=False, met=now if peer.met is None else peer.met)
        return changes + self._admit(answered, peer, now)

    def reconsider(self, node_id: str, now: float) -> list[Change]:
        """Apply a changed approval at once: a PENDING peer now approved becomes ALIVE (SUSPECT if
        its last probe failed), an ALIVE or SUSPECT one no longer approved PENDING; others wait
        for their next heartbeat."""
        peer = self._peers.get(node_id)
        if peer is None or peer.state not in (PeerState.PENDING, PeerState.ALIVE,
                                              PeerState.SUSPECT):
            return []
        approved = self._approved(node_id)
        if (peer.state is PeerState.PENDING) != approved:
            return []  # nothing changes for it
        if approved and peer.misses:  # its last probe failed: a member, not routed until it answers
            new = replace(peer, state=PeerState.SUSPECT, since=now, reason="approved; last probe "
                          "failed")
            self._peers[node_id] = new
            return [Change(ChangeKind.JOINED, node_id, new.reason, new, peer.state)]
        return self._admit(peer, peer, now)

    def heartbeat_failed(self, node_id: str, now: float, reason: str = "no answer",
                         miss: Miss = Miss.FAILED) -> list[Change]:
        """A probe failed (`miss`). A peer whose misses are all timeouts dies only once another
        member suspects it too (or nobody else is there to ask), or after `Timings.give_up_s` of
        silence; one whose host refused the connection (nothing listens) dies at once; one whose
        host accepted the probe but that did not answer (busy) is only suspect, until
        `Timings.hung_s` of silence."""
        peer = self._peers.get(node_id)
        if peer is None or peer.state is PeerState.FOREIGN:
            return []
        doubtful = miss in (Miss.TIMED_OUT, Miss.BUSY) and (peer.doubtful or not peer.misses)
        peer = replace(peer, misses=peer.misses + 1, doubtful=doubtful, busy=miss is Miss.BUSY)
        silence = self._silence(peer, now)
        if peer.state is PeerState.DEAD:
            self._peers[node_id] = replace(peer, reason=reason)
            return []
        t = self.timings
        missed = (peer.misses >= t.dead_after_misses or silence >= t.dead_after_s) and not peer.busy
        # `tick` leaves a peer with a probe out to that probe's outcome: past `give_up_s` of
        # silence, an unaccepted probe ends it as silence would (a suspect is probed back to
        # back, so some probe is nearly always out).
        if (miss is Miss.CLOSED or (peer.busy and silence >= t.hung_s)
                or (not peer.busy and silence > t.give_up_s)
                or (missed and self._settled(peer))):  # busy: alive, only slow
            return self._die(peer, now, f"{reason} ({peer.misses} missed, quiet {silence:.2f} s)")
        if peer.state is PeerState.ALIVE:
            return self._set(peer, PeerState.SUSPECT, now, reason, ChangeKind.SUSPECTED)
        self._peers[node_id] = replace(peer, reason=reason)
        return []

    def refused(self, advert: PeerAdvert, address: Address, now: float,
                reason: str) -> list[Change]:
        """Its heartbeat failed the swarm-key check: track it as FOREIGN with `reason` until it
        comes back with a new boot id (a restart, perhaps with the right key) or advertises
        another key (it joined a swarm by approval)."""
        node_id = advert.node_id
        if node_id == self._self_id:
            return []
        old = self._peers.get(node_id)
        changes: list[Change] = []
        if old is None:
            if len(self._peers) >= self.max_peers and not self._evict(changes):
                return [Change(ChangeKind.IGNORED, node_id,
                               f"peer table full ({self.max_peers} peers)", None)]
            old = self._fresh(advert, address, now)
            previous = None
        elif old.state is PeerState.FOREIGN and old.refused and old.reason == reason:
            if old.advert != advert or old.address != address:  # e.g. it now takes join requests
                self._peers[node_id] = replace(old, advert=advert, address=address)
            return []
        else:
            previous = old.state
        peer = replace(old, advert=advert, address=address, state=PeerState.FOREIGN, since=now,
                       reason=reason, refused=True)
        self._peers[node_id] = peer
        return [*changes, Change(ChangeKind.FOREIGN, node_id, reason, peer, previous)]

    def rekey(self, fingerprint: str, also_accepted: frozenset[str], now: float) -> list[Change]:
        """This node now holds another swarm key (it joined a swarm): every FOREIGN peer is
        looked at afresh (JOINING, probed again), and the rest are judged by their next
        heartbeat against the new key."""
        self._fingerprint = fingerprint
        self._accepted = also_accepted | {fingerprint}
        for node_id, old in list(self._peers.items()):
            if old.state is PeerState.FOREIGN:
                fresh = self._fresh(old.advert, old.address, now)
                self._peers[node_id] = replace(fresh, reason="our swarm key changed")
        return []  # the heartbeats that follow report who joins

    def removed(self, node_id: str) -> list[Change]:
        """mDNS goodbye (graceful shutdown): forget the peer at once."""
        peer = self._peers.pop(node_id, None)
        self._named.pop(node_id, None)
        if peer is None:
            return []
        was_member = peer.state in (PeerState.ALIVE, PeerState.SUSPECT)
        kind = ChangeKind.LEFT if was_member else ChangeKind.FORGOTTEN
        gone = replace(peer, state=PeerState.DEAD, reason="said goodbye")
        return [Change(kind, node_id, "said goodbye", gone, peer.state)]

    def tick(self, now: float, probing: frozenset[str] = frozenset()) -> list[Change]:
        """Apply silence: quiet alive peers become suspect (a peer this node does not watch may
        be quiet `slow_suspect_s`); missed-and-quiet ones dead. Silence alone kills only after
        `give_up_s`, and not while an accepted probe of the peer is out (`probing`: its outcome
        decides) or its last probe found it busy (then after `hung_s`)."""
        t = self.timings
        changes: list[Change] = []
        watched = self.watched()
        for node_id in sorted(self._peers):
            peer = self._peers[node_id]
            if peer.state in (PeerState.DEAD, PeerState.FOREIGN):
                continue
            silence = self._silence(peer, now)
            limit = t.suspect_after_s if node_id in watched else t.slow_suspect_s
            wait = t.hung_s if peer.busy or node_id in probing else t.give_up_s
            if silence > wait or (peer.misses and not peer.busy and silence >= t.dead_after_s
                                  and self._settled(peer)):
                changes += self._die(peer, now, f"quiet {silence:.2f} s, {peer.misses} missed")
            elif peer.state is PeerState.ALIVE and silence > limit:
                changes += self._set(peer, PeerState.SUSPECT, now, f"quiet {silence:.2f} s",
                                     ChangeKind.SUSPECTED)
        return changes
