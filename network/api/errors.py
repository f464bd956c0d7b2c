"""How failures reach a client: every known failure becomes a 4xx (or a 429, 502, 504) with
OpenAI's `{"error": {...}}` body, and the middleware that renders them, so a client never sees a
bare error page. Bugs are logged with their traceback and answered 500 in the same body.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from consensus.candidates import ConsensusError, ConsensusTimeout
from swarm.errors import PoolBusyError, RequestError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _busy(error: str | None) -> bool:
    """True for a candidate that failed on full queues or on an instance closing (shutdown)."""
    return any(name in (error or "") for name in ("PoolBusyError", "InstanceClosedError"))


def consensus_error(exc: ConsensusError) -> RequestError:
    """The client-facing error when no candidate won: 429 if all were busy (or their node shuts
    down), 504 on the deadline, else 502 naming each candidate's failure."""
    if exc.candidates and all(_busy(c.error) for c in exc.candidates):
        return RequestError(str(exc), status=429, code="rate_limit_exceeded",
                            type_="rate_limit_error", headers={"Retry-After": "1"})
    if isinstance(exc, ConsensusTimeout):
        return RequestError(str(exc), status=504, code="consensus_timeout", type_="server_error")
    return RequestError(str(exc), status=502, code="no_valid_candidate", type_="server_error")


def as_request_error(exc: BaseException) -> RequestError | None:
    """The client-facing error for a known failure (busy queues, consensus outcomes; a
    `RequestError`, context overflow included, is one already), or None for a bug."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, PoolBusyError):
        return RequestError(str(exc), status=429, code="rate_limit_exceeded",
                            type_="rate_limit_error",
                            headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, ConsensusError):
        return consensus_error(exc)
    return None


OLLAMA_PREFIX = "/api/"  # Ollama's routes, whose clients read `{"error": "message"}`


def _error(exc: RequestError, path: str) -> web.Response:
    body: dict[str, object] = {"error": str(exc)} if path.startswith(OLLAMA_PREFIX) else exc.body()
    return web.json_response(body, status=exc.status, headers=exc.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every failure as OpenAI's error body (Ollama's on /api/); clients never see a bare
    error page."""
    path = request.path
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge as exc:
        return _error(RequestError(f"request body too large ({exc.text})", status=413,
                                   code="request_too_large"), path)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(RequestError(exc.reason, status=exc.status, type_="invalid_request_error"),
                      path)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        known = as_request_error(exc)  # client errors, busy queues, consensus outcomes
        if known is not None:
            return _error(known, path)
        log.exception("unhandled error serving %s %s", request.method, path)
        return _error(RequestError("internal error; see the node's log", status=500,
                                   type_="server_error"), path)
