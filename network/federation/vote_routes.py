"""The vote routes: POST /v1/federation/vote generates one consensus candidate on the least-loaded
local instance, POST /v1/federation/cancel stops one still running (or bars one not yet arrived),
and shutdown cancels every vote in flight. Both need a request signed with the swarm key and sign
their answers (network/federation/gate.py); `FederationRoutes` (server.py) registers them.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from network.coordination.chooser import fill
from network.federation.gate import FederationGate, Recent, signed_response
from network.tasks import stop_tasks
from network.wire import codec
from network.wire.paths import CANCEL_PATH, VOTE_PATH
from network.wire.votes import CancelRequest, VoteReply, VoteRequest
from swarm.engine.backend import ContextOverflowError
from swarm.engine.pool import InstancePool, PoolBusyError
from swarm.engine.source import Answer
from swarm.errors import RequestError

log = logging.getLogger(__name__)


class VoteRoutes:
    """Votes and their cancels for node `node_id`, on the instances of `pool`."""

    def __init__(self, gate: FederationGate, pool: InstancePool, node_id: str) -> None:
        self.gate = gate
        self.pool = pool
        self.node_id = node_id
        self.running: dict[str, asyncio.Task[Answer]] = {}
        self._cancelled_early = Recent()
        self._closing = False

    def add_to(self, app: web.Application) -> None:
        """Register the two routes, and the cleanup that cancels votes still running."""
        app.router.add_post(VOTE_PATH, self.vote)
        app.router.add_post(CANCEL_PATH, self.cancel)
        app.on_shutdown.append(self._shutdown)

    async def vote(self, request: web.Request) -> web.Response:
        """POST /v1/federation/vote: generate one candidate on the least-loaded local instance."""
        kind, vote, verdict = await self.gate.decode(request, VoteRequest)
        rid = vote.request_id
        if rid in self.running:
            raise RequestError(f"vote {rid!r} is already running", status=409, param="request_id",
                               code="duplicate_request_id")
        if rid in self._cancelled_early:
            raise RequestError(f"vote {rid!r} was cancelled", status=409, code="vote_cancelled")
        instance = fill(self.pool.instances, 1)[0]
        started = time.perf_counter()
        task = asyncio.create_task(instance.complete(vote.to_generation()), name=f"vote-{rid}")
        self.running[rid] = task
        try:
            answer = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled() or _being_cancelled():
                task.cancel()  # the handler itself is going away: free the compute first
                await asyncio.gather(task, return_exceptions=True)
                raise
            if self._closing:
                raise RequestError("this node is shutting down", status=503,
                                   code="shutting_down", type_="server_error") from None
            raise RequestError(f"vote {rid!r} was cancelled", status=409,
                               code="vote_cancelled") from None
        except (PoolBusyError, ContextOverflowError):
            raise
        except Exception as exc:
            log.warning("vote %s from %s failed: %r", rid, request.remote, exc)
            raise RequestError(f"generation failed: {type(exc).__name__}: {exc}", status=500,
                               code="generation_failed", type_="server_error") from None
        finally:
            self.running.pop(rid, None)
        reply = VoteReply.from_completion(rid, answer.completion, node_id=self.node_id,
                                          latency_s=time.perf_counter() - started)
        return signed_response(codec.encode(reply, kind), kind, verdict)

    async def cancel(self, request: web.Request) -> web.Response:
        """POST /v1/federation/cancel: stop one running vote; `cancelled` says whether one was."""
        _kind, message, verdict = await self.gate.decode(request, CancelRequest)
        task = self.running.get(message.request_id)
        if task is None:
            self._cancelled_early.add(message.request_id)
            return signed_response(_json({"request_id": message.request_id, "cancelled": False}),
                                   codec.JSON, verdict)
        stopped = task.cancel()  # False when it finished in the meantime
        await asyncio.gather(task, return_exceptions=True)  # the generator has released its slot
        log.debug("vote %s cancelled by %s", message.request_id, request.remote)
        return signed_response(_json({"request_id": message.request_id, "cancelled": stopped}),
                               codec.JSON, verdict)

    async def _shutdown(self, _app: web.Application) -> None:
        self._closing = True
        await stop_tasks(*self.running.values())


def _json(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
