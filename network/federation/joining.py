"""The joiner's side of one join attempt, over the node's peer session: hello to every member
asked, the code shown, the reveal, then a long poll on each member until one approves (the
sealed key opens), one refuses, or every request is gone."""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import aiohttp

from network.federation.client import peer_url
from network.membership.records import Peer
from network.tasks import stop_tasks
from network.trust.exchange import JoinerExchange, PairingError
from network.trust.join_target import JoinTarget
from network.trust.swarm_key import SwarmKey
from network.wire import codec
from network.wire.fields import WireMessage
from network.wire.pairing import MAX_WAIT_S, JoinOffer, JoinStatus, JoinWait
from network.wire.paths import JOIN_PATH, JOIN_REVEAL_PATH, JOIN_WAIT_PATH
from swarm.errors import PeerError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=WireMessage)
REQUEST_TIMEOUT_S = 5.0
RETRY_S = 1.0  # a member that did not answer a wait is asked again after this long
MAX_REPLY_BYTES = 4096


class Gone(PeerError):
    """The member no longer holds the request (expired, refused before we waited, or restarted)."""


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: "joined" (with the key and who approved), "refused", "expired" or
    "failed" (with why)."""

    kind: str
    key: SwarmKey | None = None
    member: str = ""
    reason: str = ""


class JoinAttempt:
    """One attempt of node `node_id` (machine `name`) to join `target`; `on_code(swarm, code,
    members, expires_s)` is called once the members have answered, so the code can be shown."""

    def __init__(self, target: JoinTarget, node_id: str, name: str,
                 session: Callable[[], aiohttp.ClientSession],
                 on_code: Callable[[str, str, tuple[str, ...], float], None]) -> None:
        self.target = target
        self.exchange = JoinerExchange(node_id, name, target.swarm, secrets.token_bytes(32),
                                       secrets.token_bytes(16))
        self._session = session
        self._on_code = on_code

    async def run(self) -> Outcome:
        """Ask, show the code, wait for the decision."""
        answers = await asyncio.gather(*(self._post(m, JOIN_PATH, self.exchange.hello(), JoinOffer)
                                         for m in self.target.members), return_exceptions=True)
        offered: list[Peer] = []
        expires = 0.0
        for member, answer in zip(self.target.members, answers, strict=True):
            if isinstance(answer, BaseException):
                log.debug("join hello to %s: %s", member.node_id, answer)
                continue
            try:
                self.exchange.offered(answer)
            except PairingError as exc:
                log.warning("joining swarm %s: %s; not joining it this time", self.target.swarm,
                            exc)
                return Outcome("failed", reason=str(exc))
            offered.append(member)
            expires = max(expires, answer.expires_s)
        if not offered:
            return Outcome("failed", reason="no member of that swarm took the request")
        reveal = self.exchange.reveal()
        revealed = await asyncio.gather(*(self._post(m, JOIN_REVEAL_PATH, reveal, JoinStatus)
                                          for m in offered), return_exceptions=True)
        members = [m for m, r in zip(offered, revealed, strict=True)
                   if not isinstance(r, BaseException)]
        if not members:
            return Outcome("failed", reason="no member of that swarm took the reveal")
        self._on_code(self.target.swarm, self.exchange.code, tuple(m.node_id for m in members),
                      expires)
        try:
            async with asyncio.timeout(expires + REQUEST_TIMEOUT_S):
                return await self._decision(members)
        except TimeoutError:
            return Outcome("expired", reason="nobody approved it in time")

    async def _decision(self, members: list[Peer]) -> Outcome:
        """The first decision of any member: approved (the key opens), refused, or all gone."""
        waits = {asyncio.create_task(self._wait(m), name=f"join-wait {m.node_id}"): m
                 for m in members}
        gone = 0
        try:
            for done in asyncio.as_completed(waits):
                try:
                    outcome = await done
                except Gone:
                    gone += 1
                    continue
                return outcome
        finally:
            await stop_tasks(*waits)
        return Outcome("expired", reason=f"the request is gone from all {gone} members")

    async def _wait(self, member: Peer) -> Outcome:
        ask = JoinWait(node_id=self.exchange.node_id, commitment=self.exchange.commitment,
                       wait_s=MAX_WAIT_S)
        while True:
            try:
                status = await self._post(member, JOIN_WAIT_PATH, ask, JoinStatus,
                                          timeout_s=MAX_WAIT_S + REQUEST_TIMEOUT_S)
            except Gone:
                raise
            except PeerError as exc:
                log.debug("join wait on %s: %s", member.node_id, exc)
                await asyncio.sleep(RETRY_S)
                continue
            if status.state == "refused":
                return Outcome("refused", member=member.node_id)
            if status.state == "approved":
                try:
                    return Outcome("joined", self.exchange.open(status), member.node_id)
                except PairingError as exc:  # not from a holder of the key: keep waiting
                    log.warning("join: %s sent a sealed key that does not hold (%s)",
                                member.node_id, exc)
                    await asyncio.sleep(RETRY_S)

    async def _post(self, member: Peer, path: str, message: WireMessage, reply: type[M], *,
                    timeout_s: float = REQUEST_TIMEOUT_S) -> M:
        """POST one join message to `member`; its decoded answer, `Gone` on 404, else PeerError."""
        address = member.endpoint
        url = peer_url(address.host, address.port, path)
        body = codec.encode(message, codec.JSON)
        try:
            async with self._session().post(
                    url, data=body, headers={"Content-Type": codec.JSON},
                    timeout=aiohttp.ClientTimeout(total=timeout_s, sock_connect=2.0)) as response:
                raw = await response.content.read(MAX_REPLY_BYTES + 1)
                if response.status == 404:
                    raise Gone(f"{path}: no such request", node_id=member.node_id, status=404)
                if response.status != 200:
                    raise PeerError(f"{path} answered {response.status}: {raw[:200]!r}",
                                    node_id=member.node_id, status=response.status)
                return codec.decode(raw, response.headers.get("Content-Type"), reply,
                                    max_bytes=MAX_REPLY_BYTES)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerError(f"{path}: {type(exc).__name__}: {exc}", node_id=member.node_id) from exc
