"""The heartbeat adapter: keeps `Membership` current from beats and, where they fail, probes.

A peer that pushes its heartbeat datagrams (network/membership/beacon.py) is not probed at all
while they keep coming; a peer not met yet, a dead one, one that never beats and one whose beats
stopped for `Timings.quiet_s` is probed over HTTP (network/membership/probe.py) every interval,
signed over a fresh nonce. A peer whose answer is unsigned or signed with another key becomes
FOREIGN (never a member, never a candidate) with the reason shown by `main.py peers`.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from network.discovery.events import DiscoveryEvent
from network.membership.address_book import MAX_ADDRESSES, AddressBook
from network.membership.ledger import BeatLedger
from network.membership.probe import (
    HealthProbe,
    NetworkUnreachable,
    ProbeFailed,
    ProbeRefused,
    ProbeTimedOut,
)
from network.membership.suspicion import LAG_TOLERANCE_S, LoopLag, ProbeBudget, blame
from network.membership.table import Change, ChangeKind, Membership, Peer, PeerState, Timings
from network.membership.target import Target, answered, failed, miss_of, refused, suspected
from network.tasks import stop_tasks
from network.trust.identity import NodeIdentity
from network.trust.signing import MAX_SKEW_S
from network.trust.swarm_key import KeyRing
from network.wire.beat import Beat
from network.wire.messages import Heartbeat

__all__ = ["MAX_ADDRESSES", "NetworkUnreachable", "PeerMonitor", "ProbeFailed", "ProbeRefused"]

log = logging.getLogger(__name__)

JITTER = 0.1  # probe intervals vary by +-10 % so peers do not probe in lockstep
CONFIRM = 0.25  # after a miss that left a peer suspect, probe again this fraction of the interval
TICKS_PER_INTERVAL = 4  # how often per interval stopped beats are noticed (watched: at once)
QUIET_SLACK_S = 0.005  # a watched peer's quiet timer fires this long after `Timings.quiet_s`
SUSPECT_PROBES = 4  # probes other members' suspicions may set off per interval (and at once)


class PeerMonitor:
    """Keeps `membership` current from beats (`on_beat`) and by probing each known address
    every `timings.interval_s` while its peer does not beat.

    Successes and failures count against a peer only on the address the table holds for it; a
    peer that is not alive there moves to any other known address of it that answers. Dead peers
    keep being probed, so a restart or a healed link is seen on the next probe.
    """

    def __init__(self, membership: Membership, identity: NodeIdentity, timings: Timings, *,
                 keys: KeyRing, on_change: Callable[[Change], None],
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None,
                 session: Callable[[], aiohttp.ClientSession],
                 on_network_down: Callable[[], None] | None = None) -> None:
        if timings != membership.timings:
            raise ValueError("PeerMonitor and its Membership must use the same Timings")
        self._membership = membership
        self._identity = identity
        self._wall_clock = wall_clock
        self._timings = timings
        self._on_change = on_change
        self._on_network_down = on_network_down  # every member's last probe: network unreachable
        self._clock = clock
        self._rng = rng or random.Random()
        self._shared_session = session  # the node's one peer session (FederationClient.session)
        self._session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._watched = frozenset[str]()  # the members we watch, as of the last slow tick
        self._quiet_timers: dict[str, asyncio.TimerHandle] = {}  # watched id -> its quiet check
        self.probe = HealthProbe(identity.node_id, keys, timings, lambda: self._session,
                                 wall_clock=wall_clock)
        self.ledger = BeatLedger(MAX_SKEW_S, membership.max_peers)
        self.book = AddressBook(membership, self.ledger, self._emit)
        self._targets = self.book.targets  # every probed address, by address
        self.beat_targets = membership.beat_addresses  # where the beacon's rounds go
        self.snapshot = membership.peers  # every tracked peer, sorted by node id
        self.lag = LoopLag()  # how late this process's timers run (a starved loop)
        self._budget = ProbeBudget(gap_s=timings.interval_s, rate=SUSPECT_PROBES / timings.interval_s,
                                   burst=SUSPECT_PROBES)

    def reconsider(self, node_id: str) -> Peer | None:
        """Apply a changed approval of `node_id` now (changes reported as usual); its record."""
        self._emit(self._membership.reconsider(node_id, self._clock()))
        return self._membership.get(node_id)

    def rekey(self, keys: KeyRing) -> None:
        """Probe with `keys` from now on (this node joined a swarm): every foreign peer is
        probed again at once, members of the new swarm become members within a probe."""
        self.probe.keys = keys
        self._emit(self._membership.rekey(keys.fingerprint, keys.accepted, self._clock()))
        for target in self._targets.values():
            target.check = True  # judged against the new key now, beats or not
            target.wake.set()

    def unanswered(self) -> dict[str, str]:
        """Manual addresses that never answered, with the last reason (for `main.py peers`)."""
        return self.book.unanswered()

    async def start(self) -> None:
        """Take the node's peer session and start probing every address known so far. Its
        connections are not kept alive: each probe connects afresh, so a vanished peer fails at
        connect, never on a stale kept-alive socket."""
        if self._session is not None:
            raise RuntimeError("PeerMonitor already started")
        self._session = self._shared_session()
        self.book.spawn = self._spawn
        self._ticker = asyncio.create_task(self._tick(), name="membership-tick")
        for target in self._targets.values():
            self._spawn(target)

    async def close(self) -> None:
        """Stop every prober."""
        await stop_tasks(*(t.task for t in self._targets.values()), self._ticker,
                         *self.book.retired)
        for target in self._targets.values():
            target.task = None
        self._ticker = None
        for timer in self._quiet_timers.values():
            timer.cancel()
        self._quiet_timers.clear()
        self.book.spawn = None
        self._session = None  # the session is its owner's (the peer client) to close

    def on_discovery(self, event: DiscoveryEvent) -> None:
        """Apply one discovery event (mDNS or manual); a new or updated peer is probed at once."""
        self.book.on_discovery(event, self._clock())

    def add_address(self, host: str, port: int) -> None:
        """Probe a manual peer address; its first heartbeat tells us who it is."""
        self.book.add_address(host, port)

    def remove_address(self, host: str, port: int) -> None:
        """Stop probing a manual address; a peer known only through it is forgotten."""
        self.book.remove_address(host, port)

    def _spawn(self, target: Target) -> None:
        target.task = asyncio.create_task(self._probe_loop(target), name=f"probe {target.address}")

    async def _probe_loop(self, target: Target) -> None:
        interval = self._timings.interval_s
        loop = asyncio.get_running_loop()
        while True:
            target.wake.clear()
            if not target.check and self._beating(target):
                target.resting = True
                await target.wake.wait()  # a discovery event, or the tick: its beats stopped
                target.resting = False
                continue
            started = loop.time()
            target.check = False
            confirm = await self._probe_once(target)
            if target.node_id == self._identity.node_id:
                log.info("manual peer %s is this node; not probing it", target.address)
                return
            delay = interval * (CONFIRM if confirm else 1) * self._rng.uniform(1 - JITTER, 1 + JITTER)
            try:
                async with asyncio.timeout_at(started + delay):
                    await target.wake.wait()
            except TimeoutError:
                pass

    async def _probe_once(self, target: Target) -> bool:
        """Probe once; True when a miss left the peer suspect (confirm soon, not a full interval)."""
        peer = self._membership.get(target.node_id) if target.node_id else None
        if peer is not None and peer.state is PeerState.FOREIGN and not target.static:
            return False  # foreign peers are never probed; a new advert (Found) can change that
        me = self._identity.node_id
        loop = asyncio.get_running_loop()
        started = loop.time()
        target.probing_since = started
        try:
            heartbeat = await self.probe(target.address)
        except ProbeRefused as exc:
            self._emit(refused(self._membership, target, exc, self._clock(), me))
            return False
        except ProbeFailed as exc:
            now = loop.time()
            if isinstance(exc, ProbeTimedOut) and not blame(True, now - started, exc.timeout_s,
                                                            self.lag.worst(started, now)):
                log.debug("probe of %s discarded: %s while this node's loop ran late",
                          target.address, exc)
                return False  # not the peer's fault; probe again in an interval, not sooner
            target.unreachable = isinstance(exc, NetworkUnreachable)
            self._emit(failed(self._membership, target, str(exc), self._clock(), miss_of(exc)))
            if target.unreachable:
                self._check_network()
            return suspected(self._membership, target)
        finally:
            target.probing_since = None
        target.unreachable = False
        self._emit(answered(self._membership, target, heartbeat, self._clock(), me))
        return False

    def _check_network(self) -> None:
        """Tell the owner when every known peer's last probe found our own network down."""
        if self._on_network_down is not None and self.book.network_down():
            self._on_network_down()

    def _beating(self, target: Target) -> bool:
        """True when the peer at this address is a member whose beats keep coming."""
        peer = self._membership.get(target.node_id) if target.node_id else None
        if peer is None or peer.address != target.address or peer.state not in (
                PeerState.ALIVE, PeerState.PENDING):
            return False
        return self.ledger.fresh(peer.node_id, self._clock(), self._quiet_s(peer.node_id))

    def _quiet_s(self, node_id: str, watched: frozenset[str] | None = None) -> float:
        """How long `node_id` may go without a beat before it is probed."""
        watched = self._membership.watched() if watched is None else watched
        t = self._timings
        return t.quiet_s if node_id in watched else t.slow_quiet_s

    def on_beat(self, beat: Beat, heartbeat: Heartbeat, source: str) -> None:
        """One verified beat from host `source` (the beacon's callback): an answer from a peer
        already met over HTTP, for the boot the table holds, newer than the last (else ignored);
        a peer beating from another of its known addresses is used there from now on."""
        peer = self._membership.get(beat.sender)
        met = peer is not None and peer.last_ok is not None and peer.state is not PeerState.FOREIGN
        now = self._clock()
        why = self.ledger.admit(beat.sender, heartbeat.boot_id, beat.seq, beat.sent_at,
                                expected_boot=peer.advert.boot_id if met and peer else None,
                                now=now, wall_now=self._wall_clock())
        if why is not None:
            log.debug("beat %d of %s not taken: %s", beat.seq, beat.sender, why)
            return
        self.book.follow(beat.sender, source, now)
        self._emit(self._membership.heartbeat_ok(beat.sender, heartbeat, now))
        loop = asyncio.get_running_loop()
        at = loop.time()
        if beat.sender in self._watched:  # its next beat is due within an interval: if it is
            old = self._quiet_timers.pop(beat.sender, None)  # late, probe it at once, not at a tick
            if old is not None:
                old.cancel()
            self._quiet_timers[beat.sender] = loop.call_at(
                at + self._timings.quiet_s + QUIET_SLACK_S, self._quiet, beat.sender)
        if not heartbeat.suspects:
            return
        for node_id in heartbeat.suspects:  # check them over HTTP now, not at our next look
            if any(t.node_id == node_id for t in self._targets.values()) and self._budget.allow(
                    node_id, at):  # bounded: a storm of suspicions cannot starve us
                self.check(node_id)

    def check(self, node_id: str) -> None:
        """Probe `node_id` over HTTP now, beats or not (its tether broke, or a peer suspects it)."""
        for target in self._targets.values():
            if target.node_id == node_id:
                target.check = True
                target.wake.set()

    def _quiet(self, node_id: str) -> None:
        """A watched peer's beats are late: wake its resting prober (the quiet timer's callback)."""
        self._quiet_timers.pop(node_id, None)
        now = self._clock()
        for target in self._targets.values():
            if target.resting and target.node_id == node_id and not self.ledger.fresh(
                    node_id, now, self._timings.quiet_s):
                target.wake.set()

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        period = self._timings.interval_s / TICKS_PER_INTERVAL
        watched = frozenset[str]()
        for count in itertools.count():
            due = loop.time() + period
            await asyncio.sleep(period)
            ran = loop.time()
            late = self.lag.observe(due, ran)
            now = self._clock()
            if late > LAG_TOLERANCE_S:  # our loop stalled: beats may wait unread, nobody's silence
                self._membership.deaf(now - late, now)
            if count % 2 == 0:  # silence, and whom we watch, twice an interval: they change rarely
                probing = frozenset(t.node_id for t in self._targets.values() if t.node_id
                                    and t.accepted_probe(ran, self._timings.connect_timeout_s))
                self._emit(self._membership.tick(now, probing))
                watched = self._watched = self._membership.watched()
            for target in self._targets.values():
                if target.resting and not (target.node_id and self.ledger.fresh(
                        target.node_id, now, self._quiet_s(target.node_id, watched))):
                    target.wake.set()  # its beats stopped: probe it over HTTP now

    def _emit(self, changes: list[Change]) -> None:
        for change in changes:
            if change.kind is ChangeKind.FORGOTTEN:  # evicted or gone: stop probing it (mDNS)
                self.book.forget(change.node_id)
            try:
                self._on_change(change)
            except Exception:
                log.exception("peer change handler failed on %s", change)
