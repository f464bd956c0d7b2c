"""One node's part of the span runtime: the span server for the blocks the plan gives this node,
started, watched, restarted when it dies, and replaced when a new plan moves its blocks. The
watcher is a task this object owns; `close()` stops it and the server.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from network.petals.environment import SpanEnvironment, SpanRuntimeError
from network.petals.servers import SpanServer, SpanServerSpec
from network.tasks import stop_tasks

log = logging.getLogger(__name__)

RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # after the 1st, 2nd, ... crash in a row


@dataclass(frozen=True)
class SpanStatus:
    """What this node serves, for the plan view and the terminal table."""

    start: int
    end: int
    state: str  # "starting", "serving", "restarting", "failed", "stopped"
    peer_id: str = ""
    restarts: int = 0
    start_s: float = 0.0
    error: str = ""


class SpanSupervisor:
    """Keeps at most one span server of this node running as the plan says."""

    def __init__(self, environment: SpanEnvironment, model_dir: Path, dht_prefix: str,
                 host: str = "127.0.0.1", throughput: float = 1.0, threads: int = 0,
                 log_dir: Path | None = None,
                 on_change: Callable[[SpanStatus | None], None] | None = None) -> None:
        self.environment, self.model_dir, self.dht_prefix = environment, model_dir, dht_prefix
        self.host, self.throughput, self.threads, self.log_dir = host, throughput, threads, log_dir
        self.on_change = on_change or (lambda _status: None)
        self.server: SpanServer | None = None
        self.status: SpanStatus | None = None
        self._watch: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def _set(self, status: SpanStatus | None) -> None:
        self.status = status
        self.on_change(status)

    async def apply(self, span: tuple[int, int] | None, initial_peers: tuple[str, ...]) -> None:
        """Serve blocks [start, end) joined through `initial_peers`, or nothing (None).
        Returns once the server announced its blocks (or failed: see `status`)."""
        async with self._lock:
            server = self.server
            if span is not None and server is not None and server.alive \
                    and (server.spec.start, server.spec.end) == span \
                    and server.spec.initial_peers == initial_peers \
                    and server.spec.host == self.host:
                return  # unchanged: nothing moves
            await self._stop_locked()
            if span is None:
                self._set(None)
                return
            spec = SpanServerSpec(self.model_dir, span[0], span[1], initial_peers,
                                  self.dht_prefix, self.host, self.throughput, self.threads)
            await self._start_locked(spec, restarts=0)

    async def _start_locked(self, spec: SpanServerSpec, restarts: int) -> None:
        self._set(SpanStatus(spec.start, spec.end, "starting", restarts=restarts))
        log_path = (self.log_dir / f"span-{spec.start}-{spec.end}.log") if self.log_dir else None
        server = SpanServer(self.environment, spec, log_path)
        try:
            await server.start()
        except SpanRuntimeError as exc:
            log.warning("span server %d:%d failed to start: %s", spec.start, spec.end, exc)
            self._set(SpanStatus(spec.start, spec.end, "failed", restarts=restarts,
                                 error=str(exc).splitlines()[0]))
            self.server = server
            self._watch = asyncio.create_task(self._restart_later(spec, restarts + 1))
            return
        self.server = server
        self._set(SpanStatus(spec.start, spec.end, "serving", server.peer_id, restarts,
                             server.start_s))
        self._watch = asyncio.create_task(self._watch_server(server, restarts),
                                          name=f"span-watch-{spec.start}-{spec.end}")

    async def _watch_server(self, server: SpanServer, restarts: int) -> None:
        began = time.monotonic()
        code = await server.wait()
        log.warning("span server %d:%d exited (code %s); restarting", server.spec.start,
                    server.spec.end, code)
        healthy = time.monotonic() - began > 60.0  # a long run resets the back-off
        await self._restart_later(server.spec, 1 if healthy else restarts + 1)

    async def _restart_later(self, spec: SpanServerSpec, restarts: int) -> None:
        delay = RESTART_BACKOFF_S[min(restarts, len(RESTART_BACKOFF_S)) - 1]
        self._set(SpanStatus(spec.start, spec.end, "restarting", restarts=restarts))
        await asyncio.sleep(delay)
        async with self._lock:
            if self.server is not None and self.server.spec == spec:
                await self.server.stop()
                self._watch = None  # this task is the watcher; a new one is made below
                await self._start_locked(replace(spec), restarts)

    async def _stop_locked(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not asyncio.current_task():
            await stop_tasks(watch)
        if self.server is not None:
            await self.server.stop()
            self.server = None

    async def close(self) -> None:
        """Stop the watcher and the server."""
        async with self._lock:
            await self._stop_locked()
            self._set(None)
