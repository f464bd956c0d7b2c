"""The dashboard's routes: the page (static HTML, CSS and vanilla JS, no build step), the snapshot
it long-polls, and the usage view.

| route                              | what                                                        |
|------------------------------------|-------------------------------------------------------------|
| GET /dashboard (+ app.js, style.css)| the page; open like /health (it holds no data itself)      |
| GET /v1/dashboard/snapshot         | the swarm snapshot; `?after=V&wait_s=S` answers as soon as  |
|                                    | the change version passes V, or after S seconds (a long     |
|                                    | poll; at once when V is not the current version, e.g. the  |
|                                    | node restarted)                                             |
| GET /v1/federation/stats           | usage: requests and tokens by strategy, API and node        |

The JSON routes sit under /v1/, so with `[api] keys` they want the Bearer key (network/api/auth.py);
the page asks for it once and keeps it in the browser's localStorage.
"""
from __future__ import annotations

import math
from importlib import resources
from typing import Any

from aiohttp import web

from network.api.dashboard.watch import SwarmWatch
from network.wire.paths import STATS_PATH
from swarm.errors import RequestError

PAGE_PATH = "/dashboard"
SNAPSHOT_PATH = "/v1/dashboard/snapshot"
MAX_WAIT_S = 5.0  # the longest a long poll is held
DEFAULT_WAIT_S = 2.0
_FILES = {PAGE_PATH: ("index.html", "text/html"),
          PAGE_PATH + "/app.js": ("app.js", "application/javascript"),
          PAGE_PATH + "/style.css": ("style.css", "text/css")}
WATCH_KEY = web.AppKey("swarm_watch", SwarmWatch)


def _static(name: str) -> bytes:
    return (resources.files("network.api.dashboard") / "static" / name).read_bytes()


def _query_number(query: Any, key: str, low: float, high: float) -> float | None:
    raw = query.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and low <= value <= high):
        raise RequestError(f"{key} must be a number from {low:g} to {high:g}, got {raw[:40]!r}",
                           param=key, code="invalid_value")
    return value


class DashboardRoutes:
    """Serves the page and the JSON it reads, from `watch`."""

    def __init__(self, watch: SwarmWatch) -> None:
        self.watch = watch
        self._files = {path: (_static(name), kind) for path, (name, kind) in _FILES.items()}

    def add_to(self, app: web.Application) -> None:
        """Register the page, its two assets, the snapshot and the stats."""
        app[WATCH_KEY] = self.watch
        for path in self._files:
            app.router.add_get(path, self.page)
        app.router.add_get(SNAPSHOT_PATH, self.snapshot)
        app.router.add_get(STATS_PATH, self.stats)

    async def page(self, request: web.Request) -> web.Response:
        """The page or one of its assets (never cached: a node upgrade shows at once)."""
        body, kind = self._files[request.path]
        return web.Response(body=body, content_type=kind, charset="utf-8",
                            headers={"Cache-Control": "no-cache"})

    async def snapshot(self, request: web.Request) -> web.Response:
        """GET /v1/dashboard/snapshot[?after=V&wait_s=S]."""
        unknown = sorted(set(request.query) - {"after", "wait_s"})
        if unknown:
            raise RequestError(f"unknown parameter {unknown[0][:40]!r}; use after and wait_s",
                               param=unknown[0][:40], code="invalid_value")
        after = _query_number(request.query, "after", 0, 2**53)
        wait_s = _query_number(request.query, "wait_s", 0, MAX_WAIT_S)
        if after is not None and int(after) == self.watch.changes.version:
            await self.watch.changes.wait_newer(int(after), DEFAULT_WAIT_S if wait_s is None
                                                else wait_s)
        return web.json_response(self.watch.snapshot(), headers={"Cache-Control": "no-store"})

    async def stats(self, _request: web.Request) -> web.Response:
        """GET /v1/federation/stats: this node's usage."""
        return web.json_response(self.watch.stats())
