"""Following the coordinator's plan: a `PlanFollower` fetches the plan of the coordinator its node
follows, every `every_s` or sooner after a change of leader, and only when the leader's live
heartbeat names a revision other than the one held; it refuses a plan of an older term or of
another leader, and says whether the plan it holds is still fresh. Owned by the election driver
(driver.py), which forgets the plan whenever the leader moves.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from network.coordination.election import ElectionState
from network.membership.table import Membership, PeerState
from network.wire.address import Address
from network.wire.election import SwarmPlan

log = logging.getLogger(__name__)


class PlanClient(Protocol):
    """What the follower needs from `FederationClient`."""

    async def plan(self, address: str, port: int, node_id: str, timeout_s: float) -> SwarmPlan: ...


class PlanFollower:
    """The plan fetched from the coordinator this node follows, and when it was last confirmed."""

    def __init__(self, membership: Membership, client: PlanClient,
                 election: Callable[[], ElectionState], address: Callable[[str], Address | None],
                 clock: Callable[[], float], *, every_s: float, max_age_s: float,
                 timeout_s: float) -> None:
        self.membership = membership
        self.client = client
        self.election = election  # the driver's election state, read afresh each time
        self.address = address
        self.clock = clock
        self.every_s = every_s
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self.plan: SwarmPlan | None = None
        self._at = -float("inf")
        self._leader_moved = asyncio.Event()

    def forget(self) -> None:
        """The leader moved: drop the plan held and fetch the new leader's soon."""
        self.plan = None
        self._at = -float("inf")
        self._leader_moved.set()

    def held(self) -> SwarmPlan | None:
        """The plan held, when it is the followed coordinator's (however old)."""
        plan = self.plan
        return plan if plan is not None and plan.coordinator == self.election().coordinator else None

    def fresh(self) -> SwarmPlan | None:
        """The plan held, when it is the followed coordinator's, of the term followed, and
        confirmed within `max_age_s`."""
        plan, state = self.plan, self.election()
        if (plan is None or plan.coordinator != state.coordinator
                or plan.term < state.leader_term or self.clock() - self._at > self.max_age_s):
            return None
        return plan

    async def run(self) -> None:
        """Every `every_s` (sooner after a change of leader), fetch the coordinator's plan
        unless its live heartbeat names the revision already held (then that plan is current)."""
        while True:
            self._leader_moved.clear()
            state = self.election()
            leader = state.coordinator
            if leader is not None and leader != state.me.node_id:
                if self.current(leader):
                    self._at = self.clock()
                else:
                    await self.fetch(leader)
            try:
                async with asyncio.timeout(self.every_s):
                    await self._leader_moved.wait()
            except TimeoutError:
                pass

    def current(self, leader: str) -> bool:
        """True when the leader's live heartbeat names the revision of the plan held."""
        peer = self.membership.get(leader)
        plan = self.plan
        return (plan is not None and peer is not None and peer.state is PeerState.ALIVE
                and peer.heartbeat is not None and peer.heartbeat.plan == plan.revision)

    async def fetch(self, leader: str) -> None:
        """Ask the leader for its plan; keep it if it is still the leader's and of its term."""
        address = self.address(leader)
        if address is None:
            return
        try:
            plan = await self.client.plan(*address, leader, self.timeout_s)
        except Exception as exc:
            log.debug("plan from %s unavailable: %s", leader, exc)
            return
        state = self.election()
        if state.coordinator != leader:
            return  # the leader moved while we asked
        if plan.coordinator != leader or plan.term < state.leader_term:
            log.info("refused a plan of %s for term %d: this node follows %s in term %d",
                     plan.coordinator, plan.term, state.coordinator, state.leader_term)
            return
        self.plan, self._at = plan, self.clock()
