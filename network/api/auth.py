"""Who may call what when `[api] keys` is set: one pure rule, and the middleware that applies it.

| rule                 | routes                                             | accepted                 |
|----------------------|----------------------------------------------------|--------------------------|
| OPEN                 | outside /v1/ and /api/ (/health, /openapi.json,    | anyone                   |
|                      | the /dashboard page); the heartbeat probe          | (its answer is signed;   |
|                      | GET /v1/federation/health?nonce=N; the join        | joins are bounded and    |
|                      | exchange (POST /v1/federation/join, /join/reveal,  | rate-limited)            |
|                      | /join/wait)                                        |                          |
| API_KEY              | POST /v1/federation/approve (also loopback-only)   | Bearer key               |
| API_KEY_OR_FORWARD   | the OpenAI routes (/v1/chat/completions, ...), the | Bearer key, or a peer's  |
|                      | Ollama routes (/api/*), /v1/dashboard/snapshot     |                          |
|                      |                                                    | forward signed with the  |
|                      |                                                    | swarm key                |
| API_KEY_OR_SIGNED    | every other federation GET: /peers, /plan...,      | Bearer key, or a request |
|                      | /health without a nonce                            | signed with the swarm key|
| SIGNED               | the other federation POSTs (vote, cancel, election)| the handler checks the   |
|                      |                                                    | swarm signature itself   |

A signature is verified once per request (its nonce then counts as used): the verdict is kept on
the request, so a handler that checks it again (`verify_signed`) gets the same verdict.
"""
from __future__ import annotations

import enum
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from network.api.errors import OLLAMA_PREFIX
from network.federation.forwarding import FORWARDED_HEADER
from network.federation.gate import refusal, verify_signed
from network.trust.signing import (
    KEY_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Verifier,
)
from network.wire.paths import (
    APPROVE_PATH,
    FEDERATION_PREFIX,
    HEALTH_PATH,
    JOIN_PATH,
    JOIN_REVEAL_PATH,
    JOIN_WAIT_PATH,
)
from swarm.errors import RequestError

if TYPE_CHECKING:
    from network.federation.forwarding import RouteForwarder

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LOCAL_ADMIN_PATHS = frozenset({APPROVE_PATH})
JOIN_PATHS = frozenset({JOIN_PATH, JOIN_REVEAL_PATH, JOIN_WAIT_PATH})
_SIGNATURE_HEADERS = (KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)


class Auth(enum.Enum):
    """What a request must carry when `[api] keys` is set (see the module docstring)."""

    OPEN = "open"
    API_KEY = "api_key"
    API_KEY_OR_FORWARD = "api_key_or_forward"
    API_KEY_OR_SIGNED = "api_key_or_signed"
    SIGNED = "signed"


def required_auth(method: str, path: str, query: Mapping[str, str]) -> Auth:
    """The rule for one request when API keys are set; pure (method, path, query only)."""
    if path.startswith(OLLAMA_PREFIX):
        return Auth.API_KEY_OR_FORWARD
    if not path.startswith("/v1/"):
        return Auth.OPEN
    if not path.startswith(FEDERATION_PREFIX):
        return Auth.API_KEY_OR_FORWARD
    if path in LOCAL_ADMIN_PATHS:
        return Auth.API_KEY
    if path in JOIN_PATHS:
        return Auth.OPEN  # a fresh machine has no key yet: bounded and rate-limited instead
    if method.upper() in ("GET", "HEAD"):
        if path == HEALTH_PATH and "nonce" in query:
            return Auth.OPEN  # a peer's heartbeat probe: the answer is signed over the nonce
        return Auth.API_KEY_OR_SIGNED  # read-only views, unknown ones included
    return Auth.SIGNED


def bearer_ok(headers: Mapping[str, str], keys: tuple[str, ...]) -> bool:
    """True when `Authorization: Bearer <key>` names one of `keys` (constant-time compare)."""
    given = headers.get("Authorization", "").removeprefix("Bearer ").strip().encode()
    return any(hmac.compare_digest(given, k.encode()) for k in keys)


def _no_key(message: str = "invalid or missing API key") -> RequestError:
    return RequestError(message, status=401, code="invalid_api_key", type_="authentication_error",
                        headers={"WWW-Authenticate": "Bearer"})


def auth_middleware(keys: tuple[str, ...], forwarder: RouteForwarder | None = None,
                    verifier: Verifier | None = None) -> Any:
    """Apply `required_auth` when `keys` is non-empty: 401 without a Bearer key, unless a valid
    forward (`forwarder`) or swarm signature (`verifier`) stands in where the rule allows it."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not keys:
            return await handler(request)
        rule = required_auth(request.method, request.path, request.query)
        if rule in (Auth.OPEN, Auth.SIGNED) or bearer_ok(request.headers, keys):
            return await handler(request)
        if rule is Auth.API_KEY_OR_FORWARD and forwarder is not None \
                and request.headers.get(FORWARDED_HEADER):
            verdict = await verify_signed(request, forwarder.verifier)
            if not verdict.ok:
                forwarder.refuse(request, verdict)
            return await handler(request)
        if rule is Auth.API_KEY_OR_SIGNED and verifier is not None \
                and any(request.headers.get(h) for h in _SIGNATURE_HEADERS):
            verdict = await verify_signed(request, verifier)
            if not verdict.ok:
                raise refusal(verdict)
            return await handler(request)
        if rule is Auth.API_KEY_OR_SIGNED:
            raise _no_key("this view needs an API key (Authorization: Bearer KEY) or a request "
                          "signed with the swarm key")
        raise _no_key()

    return check
