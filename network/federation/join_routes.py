"""The join routes: POST /v1/federation/join (hello), /join/reveal, /join/wait (long poll), and
GET /v1/federation/joins (the requests held here, this node's own request while it asks).

They are unauthenticated by nature (a fresh machine has no key yet): bodies are at most
`MAX_JOIN_BYTES`, hellos are rate-limited per address and the table is bounded
(network/trust/joins.py), at most `MAX_WAITERS` long polls are held at once, and a malformed
message is refused with a 4xx and logged once per address. Nothing here is forwarded.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TypeVar

from aiohttp import web

from network.federation.gate import Recent, reply_kind
from network.federation.pairing import Pairing, Waiter
from network.wire import codec
from network.wire.fields import WireMessage
from network.wire.pairing import JoinHello, JoinReveal, JoinStatus, JoinWait
from network.wire.paths import JOIN_PATH, JOIN_REVEAL_PATH, JOIN_WAIT_PATH, JOINS_PATH
from swarm.errors import RequestError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=WireMessage)
MAX_JOIN_BYTES = 4096
MAX_WAITERS = 64


class JoinRoutes:
    """The join routes of one node's `pairing`."""

    def __init__(self, pairing: Pairing) -> None:
        self.pairing = pairing
        self._warned = Recent()
        self._waiting = 0

    def add_to(self, app: web.Application) -> None:
        """Register the four routes."""
        app.router.add_post(JOIN_PATH, self.hello)
        app.router.add_post(JOIN_REVEAL_PATH, self.reveal)
        app.router.add_post(JOIN_WAIT_PATH, self.wait)
        app.router.add_get(JOINS_PATH, self.joins)

    async def hello(self, request: web.Request) -> web.Response:
        """A fresh machine asks to join: the offer (this swarm's one-time key for it)."""
        hello = await self._decode(request, JoinHello)
        pairing = self.pairing
        if not pairing.enabled:
            raise RequestError("this node takes no join requests (--no-pairing)", status=403,
                               code="pairing_off", type_="permission_error")
        if pairing.asking is not None:
            raise RequestError("this node is itself asking to join a swarm", status=409,
                               code="joining_elsewhere")
        if hello.node_id == pairing.node_id:
            raise RequestError("that is this node's own id", code="invalid_value",
                               param="node_id")
        offer = pairing.host.hello(hello, request.remote or "unknown", pairing.clock(),
                                   pairing.keys.ring.current)
        pairing.federation.changed.bump()
        return self._reply(request, offer)

    async def reveal(self, request: web.Request) -> web.Response:
        """The joiner opens its commitment: the request now shows a code here and there."""
        reveal = await self._decode(request, JoinReveal)
        pairing = self.pairing
        now = pairing.clock()
        before = pairing.host.status(reveal.node_id, reveal.commitment, now)
        revealed = pairing.host.revealed(reveal, now, pairing.keys.ring.current)
        if before.reveal is None:
            pairing.announce(revealed)
        return self._reply(request, revealed.status(now))

    async def wait(self, request: web.Request) -> web.Response:
        """Wait (up to the asked time) for the decision on one request."""
        ask = await self._decode(request, JoinWait)
        pairing = self.pairing
        slot = (ask.node_id, ask.commitment)
        current = pairing.host.status(ask.node_id, ask.commitment, pairing.clock())
        if current.state == "approved" or ask.wait_s <= 0:
            return self._reply(request, current.status(pairing.clock()))
        if self._waiting >= MAX_WAITERS:
            raise RequestError("too many joiners waiting here; ask again shortly", status=429,
                               code="rate_limited", headers={"Retry-After": "1"})
        waiter = pairing.waiters.setdefault(slot, Waiter())
        waiter.count += 1
        self._waiting += 1
        try:
            async with asyncio.timeout(ask.wait_s):
                await waiter.event.wait()
        except TimeoutError:
            pass
        finally:
            self._waiting -= 1
            waiter.count -= 1
            if waiter.count == 0 and pairing.waiters.get(slot) is waiter:
                del pairing.waiters[slot]
        if waiter.outcome == "refused":
            return self._reply(request, JoinStatus(state="refused"))
        now = pairing.clock()
        return self._reply(request, pairing.host.status(ask.node_id, ask.commitment, now)
                           .status(now))

    async def joins(self, request: web.Request) -> web.Response:
        """This node's pairing state and the join requests it holds (never a key)."""
        return web.json_response(self.pairing.view())

    async def _decode(self, request: web.Request, cls: type[M]) -> M:
        try:
            kind = codec.media_type(request.headers.get("Content-Type"))
        except codec.WireDecodeError as exc:
            self._complain(request, str(exc))
            raise RequestError(str(exc), status=415, code="unsupported_media_type") from None
        if (request.content_length or 0) > MAX_JOIN_BYTES:
            self._complain(request, "body too large")
            raise RequestError(f"body over {MAX_JOIN_BYTES} bytes", status=413,
                               code="request_too_large")
        body = await request.content.read(MAX_JOIN_BYTES + 1)
        if len(body) > MAX_JOIN_BYTES:
            self._complain(request, "body too large")
            raise RequestError(f"body over {MAX_JOIN_BYTES} bytes", status=413,
                               code="request_too_large")
        try:
            return codec.decode(body, kind, cls, max_bytes=MAX_JOIN_BYTES)
        except codec.WireDecodeError as exc:
            self._complain(request, str(exc))
            raise RequestError(f"bad {cls.__name__}: {exc}", code="invalid_message") from None

    def _reply(self, request: web.Request, message: WireMessage) -> web.Response:
        kind = reply_kind(request.headers.get("Accept"))
        return web.Response(body=codec.encode(message, kind), content_type=kind)

    def _complain(self, request: web.Request, what: str) -> None:
        remote = request.remote or "unknown"
        if remote in self._warned:
            log.debug("bad join message from %s: %s", remote, what)
            return
        self._warned.add(remote)
        log.warning("bad join message from %s to %s: %s (further ones logged at debug)",
                    remote, request.path, what)
