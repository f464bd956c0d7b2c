"""Bounds the API applies before any work: JSON bodies, and concurrent requests per client."""
from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from network.wire.codec import deeper_than
from swarm.errors import RequestError

log = logging.getLogger(__name__)

MAX_JSON_DEPTH = 64


def _refuse_constant(name: str) -> Any:
    raise RequestError(f"the request body is not valid JSON: {name} is not a JSON number")


def parse_json_body(raw: bytes) -> Any:
    """Parse a request body; any malformed, NaN/Infinity, huge-integer or over-deep JSON is 400."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant)
    except RequestError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers past Python's 4300-digit limit.
        raise RequestError(f"the request body is not valid JSON: {exc}") from None
    if deeper_than(value, MAX_JSON_DEPTH):  # before the validators, which recurse
        raise RequestError(f"the request body nests JSON deeper than {MAX_JSON_DEPTH} levels",
                           code="invalid_value")
    return value


class ClientLimiter:
    """At most `max_concurrent` requests in flight per client address; the next one gets 429.

    The table holds only clients with a request in flight, so it is bounded by open connections.
    """

    def __init__(self, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        self._active: dict[str, int] = {}
        self.refused = 0

    def active(self, client: str) -> int:
        """Requests `client` has in flight now."""
        return self._active.get(client, 0)

    @asynccontextmanager
    async def hold(self, client: str) -> AsyncIterator[None]:
        """Count one request of `client` while the block runs; 429 with Retry-After if over."""
        if self._active.get(client, 0) >= self.max_concurrent:
            self.refused += 1
            log.debug("client %s is over %d concurrent requests", client, self.max_concurrent)
            raise RequestError(
                f"too many concurrent requests from {client} (at most {self.max_concurrent}); "
                "retry when one finishes", status=429, code="rate_limit_exceeded",
                type_="rate_limit_error", headers={"Retry-After": "1"})
        self._active[client] = self._active.get(client, 0) + 1
        try:
            yield
        finally:
            left = self._active[client] - 1
            if left:
                self._active[client] = left
            else:
                del self._active[client]
