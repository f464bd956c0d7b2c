"""The election driver: runs the pure core of election.py over the peer table and the signed channel.

One `Coordinator` per node, owned by `Federation`. It steps the pure core on membership changes,
on received Claim/Ack/Announce messages and on the core's own timers (plus a short tick, since a
peer's term and coordinator arrive in heartbeats that change no peer state). Sends go out as
signed POSTs to /v1/federation/election; each answer's messages are fed back to the core. The role
flips inside this object only: nothing is torn down when leadership moves. While it follows, its
`PlanFollower` (following.py) keeps the coordinator's plan, and its `Tether` (tether.py) holds a
connection to the coordinator that tells of a crash at once.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from network.coordination.election import (
    DEFAULT_TIMINGS,
    Ack,
    Candidate,
    Claim,
    Decision,
    ElectionState,
    ElectionTimings,
    Message,
    PeerView,
    Role,
    Send,
    boot,
    receive,
    rest,
    step,
)
from network.coordination.following import PlanClient, PlanFollower
from network.coordination.plan import build_plan
from network.coordination.store import ElectionStore
from network.coordination.tether import Tether
from network.coordination.wake import Reading, away
from network.membership.table import Membership, Peer, PeerState
from network.tasks import stop_tasks
from network.wire.address import Address
from network.wire.election import PlanMember, SwarmPlan
from network.wire.spans import SpanPlan

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 256  # election sends not yet answered; more are dropped (the core re-sends)


class ElectionClient(PlanClient, Protocol):
    """What the driver needs from `FederationClient`: election sends, and plans (following.py)."""

    async def election(self, address: str, port: int, node_id: str, message: Message,
                       timeout_s: float) -> list[Message]: ...


def sender_of(message: Message) -> str:
    """The node id a message comes from."""
    if isinstance(message, Claim):
        return message.candidate.node_id
    if isinstance(message, Ack):
        return message.voter
    return message.coordinator.node_id


def peer_view(peer: Peer) -> PeerView | None:
    """The election's view of one tracked peer: ALIVE or SUSPECT with a heartbeat, else None."""
    beat = peer.heartbeat
    if beat is None or peer.state not in (PeerState.ALIVE, PeerState.SUSPECT):
        return None
    try:
        candidate = Candidate(peer.node_id, beat.priority, beat.bench_score)
    except ValueError:
        return None
    return PeerView(candidate, beat.term, beat.coordinator,
                    peer.since if peer.state is PeerState.SUSPECT else None, beat.solo, peer.met)


class Coordinator:
    """Election state of this node, kept current by a background round; see the module doc."""

    def __init__(self, me: Candidate, membership: Membership, client: ElectionClient,
                 local_member: Callable[[], PlanMember], *, timings: ElectionTimings = DEFAULT_TIMINGS,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 store: ElectionStore | None = None, tick_s: float = 0.25,
                 send_timeout_s: float = 1.0, plan_every_s: float = 1.0,
                 plan_max_age_s: float = 3.0,
                 on_change: Callable[[ElectionState], None] | None = None,
                 span_plan: Callable[[], SpanPlan | None] | None = None,
                 tether: Tether | None = None) -> None:
        self.membership = membership
        self.client = client
        self.local_member = local_member
        self.timings = timings
        self.clock = clock
        self.wall_clock = wall_clock
        self.store = store
        self.tick_s = tick_s
        self.send_timeout_s = send_timeout_s
        self.on_change = on_change
        self.span_plan = span_plan  # the span map this node publishes while it leads
        self.tether = tether  # held to the coordinator this node follows (tether.py)
        term, voted_term, voted_for = store.load() if store else (0, 0, None)
        self.state: ElectionState = boot(me, clock(), term, voted_term, voted_for)
        self.follower = PlanFollower(membership, client, lambda: self.state, self._address, clock,
                                     every_s=plan_every_s, max_age_s=plan_max_age_s,
                                     timeout_s=send_timeout_s)
        self._poked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._plans: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()

    @property
    def me(self) -> Candidate:
        """This node as a candidate."""
        return self.state.me

    @property
    def role(self) -> Role:
        """FOLLOWER, CANDIDATE or COORDINATOR."""
        return self.state.role

    def election_view(self) -> tuple[int, str | None, int | None, bool]:
        """(term, coordinator followed, priority, solo): what this node's heartbeat advertises."""
        return self.state.term, self.state.coordinator, self.me.priority, self.state.solo

    def rest(self, why: str) -> None:
        """Re-enter the start-up grace now (asleep, stopped, or the network down): see `rest`."""
        if self.clock() >= self.state.started + self.timings.startup_grace_s:  # once per absence
            log.info("%s: waiting %.1f s for a fresh view before electing", why,
                     self.timings.startup_grace_s)
        self._apply(Decision(rest(self.state, self.clock()), (), None))
        self.poke()

    def view(self) -> list[PeerView]:
        """The live part of the peer table as the election core sees it."""
        return [v for p in self.membership.peers() if (v := peer_view(p)) is not None]

    def poke(self) -> None:
        """Re-decide soon: the peer table changed."""
        self._poked.set()

    async def start(self) -> None:
        """Start the election round and the plan follower."""
        if self._task is not None:
            raise RuntimeError("Coordinator already started")
        self._task = asyncio.create_task(self._run(), name="election")
        self._plans = asyncio.create_task(self.follower.run(), name="plan-follower")

    async def close(self) -> None:
        """Stop the round, the plan follower and every send in flight."""
        await stop_tasks(self._task, self._plans, *self._sends)
        self._task = self._plans = None
        if self.tether is not None:
            await self.tether.close()

    async def handle(self, message: Message) -> list[Message]:
        """One signed Claim, Ack or Announce from a peer; returns the messages addressed back."""
        sender = sender_of(message)
        view = self.view()
        if sender == self.me.node_id or all(v.node_id != sender for v in view):
            log.debug("election %s from %s ignored: not a live member here",
                      type(message).__name__, sender)
            return []
        decision = receive(self.state, view, message, self.clock(), self.timings)
        back = [s.message for s in decision.sends if s.to == sender]
        self._apply(Decision(decision.state, tuple(s for s in decision.sends if s.to != sender),
                             decision.wake_at))
        return back

    def plan(self) -> SwarmPlan | None:
        """The swarm plan this node publishes while it leads (None otherwise)."""
        if self.state.role is not Role.COORDINATOR:
            return None
        return build_plan(self.state.term, self.local_member(), self.membership.peers(),
                          issued_at=self.wall_clock(),
                          spans=self.span_plan() if self.span_plan else None)

    def current_spans(self) -> SpanPlan | None:
        """The span map in force: this node's own while it leads, else the coordinator's
        fetched plan's while it is fresh and of the term this node follows."""
        own = self.plan()
        if own is not None:
            return own.spans
        plan = self.follower.fresh()
        return plan.spans if plan is not None else None

    def plan_revision(self) -> str:
        """The revision of the plan this node publishes while it leads ("" otherwise): its
        heartbeat carries it, so followers fetch the plan only when it changes."""
        plan = self.plan()
        return plan.revision if plan is not None else ""

    def current_plan(self) -> SwarmPlan | None:
        """The plan in force as this node knows it, for views: its own while it leads, else the
        last one fetched from the coordinator it follows (None before any)."""
        own = self.plan()
        return own if own is not None else self.follower.held()

    def consensus_members(self) -> list[str] | None:
        """Node ids the coordinator's current plan picks for consensus; None means "use your own
        view" (no coordinator, its plan is stale, or it has not been fetched yet)."""
        plan = self.plan()
        plan = plan if plan is not None else self.follower.fresh()
        return list(plan.consensus) if plan is not None else None

    async def _run(self) -> None:
        last, delay = Reading(self.wall_clock(), self.clock()), 0.0
        while True:
            self._poked.clear()
            now = Reading(self.wall_clock(), self.clock())
            missed = away(last, now, delay)
            if missed:
                self.rest(f"this machine was away for {missed:.1f} s (asleep or stopped)")
            decision = step(self.state, self.view(), now.mono, self.timings)
            self._apply(decision)
            last, delay = now, self.tick_s
            if decision.wake_at is not None:
                delay = min(delay, max(0.0, decision.wake_at - self.clock()))
            try:
                async with asyncio.timeout(delay):
                    await self._poked.wait()
            except TimeoutError:
                pass

    def _apply(self, decision: Decision) -> None:
        old, new = self.state, decision.state
        self.state = new
        if self.store is not None and (old.term, old.voted_term, old.voted_for) != (
                new.term, new.voted_term, new.voted_for):
            self.store.save(new.term, new.voted_term, new.voted_for)
        if (old.role, old.coordinator, old.term, old.solo) != (new.role, new.coordinator,
                                                                new.term, new.solo):
            self._announce_change(old, new)
        for send in decision.sends:
            self._send(send)

    def _announce_change(self, old: ElectionState, new: ElectionState) -> None:
        led, leads = old.role is Role.COORDINATOR, new.role is Role.COORDINATOR
        if leads and new.solo and not (led and old.solo):
            log.info("no peer in view: this node leads only itself meanwhile (term %d)", new.term)
        elif leads and not new.solo and (not led or old.solo):
            log.info("this node is now the coordinator (term %d)", new.term)
        elif led and not leads and old.solo:
            log.info("no longer leading only itself: following %s (term %d)",
                     new.coordinator or "nobody yet", new.term)
        elif led and not leads:
            log.info("stepped down as coordinator: %s leads term %d", new.coordinator, new.term)
        elif new.coordinator != old.coordinator and new.coordinator is not None:
            log.info("coordinator is %s (term %d)", new.coordinator, new.term)
        elif new.coordinator is None and old.coordinator is not None:
            log.info("lost the coordinator %s; electing another", old.coordinator)
        if new.coordinator != old.coordinator:
            self.follower.forget()
            if self.tether is not None:
                lead = new.coordinator if new.coordinator != self.me.node_id else None
                self.tether.hold(lead, self._address(lead) if lead else None)
        if self.on_change is not None:
            self.on_change(new)

    def _send(self, send: Send) -> None:
        targets = [v.node_id for v in self.view()] if send.to is None else [send.to]
        for node_id in targets:
            if len(self._sends) >= MAX_IN_FLIGHT:
                log.debug("election send to %s dropped: %d in flight", node_id, len(self._sends))
                return
            task = asyncio.get_running_loop().create_task(self._deliver(node_id, send.message),
                                                          name=f"election-{node_id}")
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    def _address(self, node_id: str) -> Address | None:
        peer = self.membership.get(node_id)
        return None if peer is None or peer.heartbeat is None else peer.endpoint

    async def _deliver(self, node_id: str, message: Message) -> None:
        address = self._address(node_id)
        if address is None:
            return
        try:
            replies = await self.client.election(*address, node_id, message, self.send_timeout_s)
        except Exception as exc:  # a lost message: the core re-sends on its own timers
            log.debug("election %s to %s failed: %s", type(message).__name__, node_id, exc)
            return
        for reply in replies:
            if sender_of(reply) != node_id:
                log.debug("election reply from %s names %s; ignored", node_id, sender_of(reply))
                continue
            self._apply(receive(self.state, self.view(), reply, self.clock(), self.timings))
