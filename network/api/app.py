"""The node's HTTP application (aiohttp): its middlewares (errors.py, auth.py), status routes."""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from consensus.service import ConsensusService
from network.api.auth import auth_middleware
from network.api.dashboard.routes import DashboardRoutes
from network.api.dashboard.watch import SwarmWatch
from network.api.embeddings import Embedder
from network.api.errors import error_middleware
from network.api.ollama.routes import OllamaRoutes
from network.api.openai.embeddings import EmbeddingRoutes
from network.api.openai.routes import CompletionRoutes
from network.api.openapi.document import openapi_route
from network.federation.changes import Changes
from network.federation.forwarding import RouteForwarder
from network.trust.signing import Verifier
from swarm.engine.pool import InstancePool
from swarm.node.config import ApiConfig, ConsensusConfig

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BadRequestLogFilter(logging.Filter):
    """aiohttp logs every malformed HTTP request (bad request line, header, chunk) at ERROR with
    a traceback, so any device that can reach the port could fill the log. This keeps one short
    WARNING per `interval_s` and counts the rest in `suppressed`."""

    def __init__(self, interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.clock = clock
        self.suppressed = 0
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        now = self.clock()
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return False
        self._last = now
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg = ("malformed HTTP request refused with %s (%s); more in the next %.0f s are "
                      "not logged (%d suppressed so far)")
        record.args = (exc.code, str(exc.message)[:120], self.interval_s, self.suppressed)
        record.exc_info = None
        record.exc_text = None
        return True


def quiet_bad_requests() -> None:
    """Install `BadRequestLogFilter` on aiohttp's server logger (once per process)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, BadRequestLogFilter) for f in logger.filters):
        logger.addFilter(BadRequestLogFilter())


class StatusRoutes:
    """GET /health and /v1/models."""

    def __init__(self, pool: InstancePool) -> None:
        self.pool = pool
        self.started = time.time()

    async def health(self, _request: web.Request) -> web.Response:
        """Liveness and load of this node."""
        return web.json_response({
            "status": "ok", "model": self.pool.model_id, "backend": self.pool.backend_name,
            "instances": len(self.pool.instances), "load": self.pool.load(),
            "queue_depth": self.pool.queue_depth(),
            "uptime_s": round(time.time() - self.started, 1),
        })

    async def models(self, _request: web.Request) -> web.Response:
        """The one model this node serves, in OpenAI's list format."""
        return web.json_response({"object": "list", "data": [{
            "id": self.pool.model_id, "object": "model", "created": int(self.started),
            "owned_by": "local-swarm"}]})


def build_app(pool: InstancePool, config: ApiConfig, consensus: ConsensusConfig | None = None,
              consensus_service: ConsensusService | None = None,
              forwarder: RouteForwarder | None = None,
              verifier: Verifier | None = None,
              changes: Changes | None = None) -> web.Application:
    """The aiohttp application for one node (federation routes are added by the caller); with
    `[api] keys` set, `forwarder` and `verifier` let signed peer requests stand in for a key
    (network/api/auth.py). The dashboard's `SwarmWatch` is `app[WATCH_KEY]`; `changes` is the
    counter it shares with the federation (a new one without)."""
    quiet_bad_requests()
    app = web.Application(client_max_size=config.max_body_bytes,
                          middlewares=[error_middleware,
                                       auth_middleware(config.keys, forwarder, verifier)])
    status = StatusRoutes(pool)
    watch = SwarmWatch(pool, changes)
    completions = CompletionRoutes(pool, config, consensus or ConsensusConfig(), consensus_service,
                                   forwarder, ledger=watch.ledger)
    app.router.add_get("/health", status.health)
    app.router.add_get("/v1/models", status.models)
    app.router.add_post("/v1/chat/completions", completions.chat)
    app.router.add_post("/v1/completions", completions.completions)
    embedder = Embedder(pool, config)
    embeddings = EmbeddingRoutes(embedder, completions.check_model,
                                 completions.limiter, forwarder)
    app.router.add_post("/v1/embeddings", embeddings.embeddings)
    app.router.add_get("/openapi.json", openapi_route(config))
    DashboardRoutes(watch).add_to(app)
    OllamaRoutes(completions, embedder).add_to(app)
    return app
