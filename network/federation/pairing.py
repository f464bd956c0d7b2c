"""Joining by approval, for one node: as a member it holds join requests and seals the swarm key
to the one a person approves (`python main.py peers approve ID`); as a fresh node it asks the
swarm in sight to let it in, shows the code, and adopts the key when a member approves, without
a restart. The exchange is network/trust/exchange.py's, the request table network/trust/joins.py's,
the choice of swarm network/trust/join_target.py's; the routes are join_routes.py's."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from network.federation.joining import JoinAttempt, Outcome
from network.federation.node import Federation
from network.membership.records import Change, ChangeKind
from network.tasks import stop_tasks
from network.trust.approval import ApprovalError, ApprovedPeers
from network.trust.join_target import choose_target
from network.trust.joins import JoinHost, JoinRefused, JoinRequest
from network.trust.signing import Verifier
from network.trust.swarm_key import KeyRing, LoadedKeys, SwarmKey, adopt, end_solo
from swarm.node.config import FederationConfig

log = logging.getLogger(__name__)

IDLE_S = 2.0  # a fresh node with nobody to ask looks again this often (and at every change)
RETRY_S = 5.0  # after a failed attempt
MAX_REFUSED = 256  # swarms remembered as having refused this node; the oldest is forgotten


@dataclass
class Waiter:
    """The joiners waiting on one request here: woken with the decision."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: str = ""
    count: int = 0


class Pairing:
    """The pairing half of `federation`: its join requests, and its own asking while fresh."""

    def __init__(self, federation: Federation, verifier: Verifier, keys: LoadedKeys,
                 config: FederationConfig, *, approvals: ApprovedPeers | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.federation = federation
        self.verifier = verifier
        self.keys = keys
        self.enabled = config.pairing
        self.ttl_s = config.join_request_ttl_s
        self.approvals = approvals
        self.clock = clock
        self.node_id = federation.identity.node_id
        self.host = JoinHost(self.node_id, keys.ring.fingerprint, ttl_s=self.ttl_s)
        self.solo = self.enabled and keys.solo()
        self.refused: dict[str, None] = {}  # swarms that refused this node (not asked again)
        self.asking: dict[str, Any] | None = None  # the attempt under way, for the views
        self.reason = "" if self.solo else "this node is a member (its key was shared or set)"
        self.joined_at: float | None = None  # wall clock, when this node adopted a swarm's key
        self.waiters: dict[tuple[str, bytes], Waiter] = {}  # joiners waiting on a request
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        federation.pairing_state = self.state
        federation.subscribe(self._on_change)

    def state(self) -> str:
        """What the advert says: "" (pairing off), "fresh" (solo key) or "open" (a member)."""
        return "" if not self.enabled else "fresh" if self.solo else "open"

    async def start(self) -> None:
        """Start asking to join, when this node is fresh."""
        if self.solo and self._task is None:
            self._task = asyncio.create_task(self._ask_loop(), name="pairing-ask")

    async def close(self) -> None:
        """Stop asking."""
        await stop_tasks(self._task)
        self._task = None

    # -- member side -------------------------------------------------------------------------

    def decide(self, node_id: str, code: str | None, approved: bool) -> dict[str, Any] | None:
        """Approve (seal the key to) or refuse the join request of `node_id`; None when it has
        none here and no `code` was given (the caller falls back to peer approval)."""
        now = self.clock()
        if not approved:
            gone = self.host.refuse(node_id, now)
            if not gone:
                return None
            log.info("join request of %s refused here", node_id)
            self._notify(gone, "refused")
            return {"state": "refused", "requests": len(gone)}
        if code is None and not any(r.node_id == node_id and r.reveal
                                    for r in self.host.requests(now)):
            return None
        request = self.host.approve(node_id, code, now, self.keys.ring.current)
        log.info("join request of %s (%s, code %s) approved here: its swarm key is sealed to it",
                 request.name, node_id, request.code)
        self._shared()
        if self.approvals is not None:
            try:
                self.approvals.add(node_id)
            except (ApprovalError, OSError) as exc:
                log.warning("approved %s to join, but could not add it to the approved peers: "
                            "%s", node_id, exc)
        self._notify([request], "approved")
        return {"state": "approved", "code": request.code, "name": request.name}

    def requests(self) -> list[dict[str, object]]:
        """The join requests held here, as rows."""
        now = self.clock()
        return [r.row(now) for r in self.host.requests(now)]

    def view(self) -> dict[str, Any]:
        """`GET /v1/federation/joins`: this node's pairing state, the requests it holds and
        its own request while it asks."""
        return {"object": "joins", "node_id": self.node_id, "pairing": self.state(),
                "swarm": self.keys.ring.fingerprint, "requests": self.requests(),
                "joining": self.asking, "reason": self.reason}

    def announce(self, request: JoinRequest) -> None:
        """A request now shows its code: say so where a person looks."""
        log.info("%s (%s) at %s asks to join; code %s; approve with `python main.py peers "
                 "approve %s`", request.name, request.node_id, request.address, request.code,
                 request.node_id)
        self._notify([request], "pending")

    def _notify(self, requests: list[JoinRequest], outcome: str) -> None:
        for request in requests:
            waiter = self.waiters.get((request.node_id, request.commitment))
            if waiter is not None and outcome in ("approved", "refused"):
                waiter.outcome = outcome
                waiter.event.set()
        self.federation.changed.bump()

    def _shared(self) -> None:
        """This node's key has left it: it is a member now, and never asks to join."""
        if self.solo:
            self.solo = False
            end_solo(self.keys.path)
            self.reason = "this node is a member (its key was shared)"
            self.federation.readvertise()
            self._wake.set()

    def _on_change(self, change: Change) -> None:
        if change.kind in (ChangeKind.JOINED, ChangeKind.RECOVERED):
            self.host.joined(change.node_id)  # it answers with our key: its requests are done
            self._shared()
        self._wake.set()

    # -- fresh side --------------------------------------------------------------------------

    async def _ask_loop(self) -> None:
        while self.solo:
            target, self.reason = choose_target(
                self.federation.membership.peers(), self.node_id,
                self.federation.identity.protocol, refused=frozenset(self.refused))
            if target is None:
                await self._idle(IDLE_S)
                continue
            attempt = JoinAttempt(target, self.node_id, self.federation.identity.name,
                                  self.federation.client.session, self._showing)
            outcome = await attempt.run()
            self.asking = None
            self.federation.changed.bump()
            if outcome.kind == "joined" and outcome.key is not None:
                await self._adopt(outcome.key, outcome)
                return
            if outcome.kind == "refused":
                log.warning("swarm %s refused this machine (on %s); it is not asked again "
                            "until this node restarts", target.swarm, outcome.member)
                self.note_refusal(target.swarm)
            elif outcome.kind == "expired":
                log.info("the request to join swarm %s expired (%s); asking again",
                         target.swarm, outcome.reason)
            else:
                log.info("could not ask swarm %s: %s", target.swarm, outcome.reason)
                await self._idle(RETRY_S)

    def note_refusal(self, swarm: str) -> None:
        """Ask `swarm` no more; a device can show any number of fingerprints and refuse each, so
        only the latest `MAX_REFUSED` are remembered."""
        self.refused.pop(swarm, None)
        self.refused[swarm] = None
        while len(self.refused) > MAX_REFUSED:
            del self.refused[next(iter(self.refused))]

    def _showing(self, swarm: str, code: str, members: tuple[str, ...], expires_s: float) -> None:
        self.asking = {"swarm": swarm, "members": list(members), "code": code,
                       "expires_in_s": round(expires_s, 1)}
        log.info("asking to join swarm %s (via %s); code %s: approve this machine on one of "
                 "them with `python main.py peers approve %s`", swarm, ", ".join(members), code,
                 self.node_id)
        self.federation.changed.bump()

    async def _adopt(self, key: SwarmKey, outcome: Outcome) -> None:
        """Store the swarm's key (mode 0600) and use it at once: sign, verify and advertise with
        it, and look at every peer afresh."""
        await asyncio.to_thread(adopt, self.keys.path, key)
        ring = KeyRing(key)
        self.keys = LoadedKeys(ring, "file", self.keys.path)
        self.solo = False
        self.host = JoinHost(self.node_id, key.fingerprint, ttl_s=self.ttl_s)
        self.verifier.keys = ring
        self.federation.rekey(ring)
        if self.approvals is not None:  # with --approve-peers, the member that let us in
            try:
                self.approvals.add(outcome.member)
            except (ApprovalError, OSError) as exc:
                log.warning("could not approve %s here: %s", outcome.member, exc)
            self.federation.monitor.reconsider(outcome.member)
        self.joined_at = time.time()
        self.reason = f"joined swarm {key.fingerprint} (approved on {outcome.member})"
        log.info("joined swarm %s: approved on %s; its key is stored in %s (mode 0600)",
                 key.fingerprint, outcome.member, self.keys.path)
        self.federation.changed.bump()

    async def _idle(self, seconds: float) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass


__all__ = ["JoinRefused", "Pairing"]
