"""The door of the federation routes: verify the swarm signature, read and decode the body, sign
the answer.

Every refusal is a `RequestError` (401/403 for a signature, 413, 415, 400), logged at WARNING
once per remote address and at DEBUG after that, so a misbehaving peer cannot flood the log.
Cheap checks (the signature headers, Content-Type, Content-Length) come before the body is read.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TypeVar

from aiohttp import web

from network.trust.signing import SIGNATURE_HEADER, Verdict, Verifier, sign_reply
from network.wire import codec
from network.wire.fields import WireMessage
from swarm.errors import RequestError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=WireMessage)

MAX_REMEMBERED = 1024  # remote addresses already warned about; cancels that beat their vote
# The verdict on a request's swarm signature, kept on the request by whoever verified it first
# (a middleware, the forwarder or a handler): a second check must not see its nonce as a replay.
VERDICT_KEY = web.RequestKey("local_swarm_swarm_verdict", Verdict)


async def verify_signed(request: web.Request, verifier: Verifier) -> Verdict:
    """Whether `request` is signed with the swarm key for this node (method, raw path and query,
    body); verified once per request, the verdict kept under `VERDICT_KEY`."""
    if VERDICT_KEY in request:
        return request[VERDICT_KEY]
    verdict = verifier.precheck(request.headers)
    if verdict.ok:
        verdict = verifier.verify(request.method, request.raw_path, request.headers,
                                  await request.read())
    request[VERDICT_KEY] = verdict
    return verdict


def refusal(verdict: Verdict, message: str | None = None) -> RequestError:
    """The 401 (unsigned, stale, replayed, bad signature) or 403 (another swarm's key) for a
    refused signature, in OpenAI's error body."""
    unauthenticated = verdict.status == 401
    return RequestError(message or verdict.reason, status=verdict.status, code=verdict.code,
                        type_="authentication_error" if unauthenticated else "permission_error",
                        headers={"WWW-Authenticate": "Swarm-HMAC"} if unauthenticated else None)


class Recent(OrderedDict[str, None]):
    """A set that forgets its oldest entries beyond `MAX_REMEMBERED`."""

    def add(self, key: str) -> None:
        self[key] = None
        self.move_to_end(key)
        while len(self) > MAX_REMEMBERED:
            self.popitem(last=False)


def reply_kind(accept: str | None) -> str:
    """`codec.MSGPACK` when the Accept header names a msgpack type (q > 0), else `codec.JSON`."""
    for item in (accept or "").split(","):
        base, *params = (part.strip() for part in item.split(";"))
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        try:
            if codec.media_type(base) == codec.MSGPACK:
                return codec.MSGPACK
        except codec.WireDecodeError:
            continue
    return codec.JSON


def signed_response(body: bytes, kind: str, verdict: Verdict) -> web.Response:
    """A 200 answer signed over the request's nonce with the key that verified the request."""
    assert verdict.key is not None
    return web.Response(body=body, content_type=kind,
                        headers=sign_reply(verdict.key, verdict.nonce, body))


class FederationGate:
    """Admits signed federation requests for `verifier`, bodies up to `max_body_bytes`."""

    def __init__(self, verifier: Verifier, max_body_bytes: int) -> None:
        self.verifier = verifier
        self.max_body_bytes = max_body_bytes
        self._warned = Recent()

    async def decode(self, request: web.Request, cls: type[M]) -> tuple[str, M, Verdict]:
        """Check the signature, read a size-limited body and decode it by Content-Type; 4xx
        (logged once per remote address) on failure. Cheap checks come before the body read."""
        self.check(request, self.verifier.precheck(request.headers))
        try:
            kind = codec.media_type(request.headers.get("Content-Type"))
        except codec.WireDecodeError as exc:
            self.complain(request, str(exc))
            raise RequestError(str(exc), status=415, code="unsupported_media_type") from None
        body = await self.read(request)
        verdict = self.verifier.verify(request.method, request.raw_path, request.headers, body)
        request[VERDICT_KEY] = verdict
        self.check(request, verdict)
        try:
            return kind, codec.decode(body, kind, cls, max_bytes=self.max_body_bytes), verdict
        except codec.WireDecodeError as exc:
            self.complain(request, str(exc))
            raise RequestError(f"bad {cls.__name__}: {exc}", code="invalid_message") from None

    async def optional(self, request: web.Request) -> Verdict | None:
        """The accepted verdict of a bodiless request that is signed (or already verified by a
        middleware); None when it is not signed; 401/403 when its signature is refused."""
        if VERDICT_KEY not in request and SIGNATURE_HEADER not in request.headers:
            return None
        return await self.require(request)

    async def require(self, request: web.Request) -> Verdict:
        """The accepted verdict of a bodiless request that must be signed; 401 (logged once per
        remote address) when it is not, 401/403 when its signature is refused."""
        verdict = await verify_signed(request, self.verifier)
        self.check(request, verdict)
        return verdict

    def check(self, request: web.Request, verdict: Verdict) -> None:
        """Raise the 401/403 for a refused signature (logged once per remote address)."""
        if verdict.ok:
            return
        self.complain(request, f"{verdict.code}: {verdict.reason}")
        raise refusal(verdict)

    async def read(self, request: web.Request) -> bytes:
        """The request body, or 413 as soon as it is known to exceed `max_body_bytes`."""
        limit = self.max_body_bytes
        too_big = RequestError(f"body over the {limit}-byte limit", status=413,
                               code="request_too_large")
        if request.content_length is not None and request.content_length > limit:
            self.complain(request, f"Content-Length {request.content_length} over {limit}")
            raise too_big
        body = bytearray()
        async for chunk in request.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > limit:
                self.complain(request, f"body over {limit} bytes")
                raise too_big
        return bytes(body)

    def complain(self, request: web.Request, what: str) -> None:
        """Log a refused request: WARNING the first time a remote address errs, DEBUG after."""
        remote = request.remote or "unknown"
        if remote in self._warned:
            log.debug("bad federation request from %s to %s: %s", remote, request.path, what)
            return
        self._warned.add(remote)
        log.warning("bad federation request from %s to %s: %s (further ones logged at debug)",
                    remote, request.path, what)
