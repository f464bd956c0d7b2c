"""The distributed client, run from the entry node: a `runtime/worker.py` process in the span venv
that walks the span chain with petals, and this node's handle on it (JSON lines over its pipes).
The same worker with `local=True` runs the whole model in-process, the reference for greedy tokens
and for benches.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from network.petals.environment import RUNTIME_DIR, SpanEnvironment, SpanRuntimeError
from network.petals.processes import SupervisedProcess

log = logging.getLogger(__name__)

CLIENT_START_S = 120.0
HEARTBEAT_S = 0.25  # the worker's check of the servers it is waiting on (see runtime/fixes.py)
_HOP = re.compile(r"(\d+):(\d+) via …(\w+)")
_READY = re.compile(r'^\{"event": "ready"')


class SpanGenerationError(SpanRuntimeError):
    """A generation through the span chain failed (no route, a server gone without a replica)."""


class SpanClient(SupervisedProcess):
    """One worker process; `generate()` streams token events. Generations run one at a time."""

    def __init__(self, environment: SpanEnvironment, model_dir: Path,
                 initial_peers: Iterable[str] = (), dht_prefix: str = "", local: bool = False,
                 threads: int = 0, heartbeat_s: float = HEARTBEAT_S,
                 max_retries: int = 4, allowed: Iterable[str] | None = None,
                 log_path: Path | None = None) -> None:
        argv = [str(environment.python), str(RUNTIME_DIR / "worker.py"), "--model", str(model_dir),
                "--threads", str(threads), "--heartbeat", str(heartbeat_s),
                "--max-retries", str(max_retries)]
        argv += ["--local"] if local else ["--dht-prefix", dht_prefix, "--initial-peers",
                                           *initial_peers]
        if allowed:
            argv += ["--allowed-servers", *allowed]
        super().__init__("span client" if not local else "local reference", argv,
                         environment.env(), _READY, log_path, stdin=True)
        self._ids = itertools.count(1)
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._lock = asyncio.Lock()
        self.num_blocks = 0

    async def start(self, within_s: float = CLIENT_START_S) -> re.Match[str]:
        """Start the worker and wait until its model (or route) is ready."""
        match = await super().start(within_s)
        self.num_blocks = int(json.loads(match.string).get("num_blocks", 0))
        return match

    def on_line(self, line: str) -> None:
        if not line.startswith("{"):
            return  # the worker's log lines (stderr shares the pipe)
        try:
            event = json.loads(line)
        except ValueError:
            return
        queue = self._queues.get(str(event.get("id")))
        if queue is not None:
            queue.put_nowait(event)

    async def _send(self, obj: dict[str, Any]) -> None:
        if not self.alive or self.process is None or self.process.stdin is None:
            raise SpanGenerationError("the span client is not running")
        self.process.stdin.write((json.dumps(obj) + "\n").encode())
        await self.process.stdin.drain()

    def route(self) -> list[tuple[int, int, str]]:
        """The last route petals logged: (start, end, the end of the server's peer id)."""
        for line in reversed(self.lines):
            if "Route found:" in line:
                return [(int(a), int(b), peer) for a, b, peer in _HOP.findall(line)]
        return []

    async def mark_gone(self, peer_ids: Iterable[str]) -> None:
        """Tell the worker these servers are gone (the node's heartbeat saw it): re-route now."""
        peers = [p for p in peer_ids if p]
        if peers and self.alive:
            await self._send({"op": "gone", "peers": peers})

    async def refresh(self, allowed: Iterable[str] | None = None) -> None:
        """A new plan: forget servers declared gone, route only through `allowed` span servers
        (None: any the DHT lists), read the routes anew (in turn with generations, so the next
        one routes over the new plan)."""
        message: dict[str, Any] = {"op": "reset",
                                   "allowed": list(allowed) if allowed else None}
        async for _event in self._exchange(message):
            pass

    async def generate(self, request: dict[str, Any],
                       idle_timeout: float = 120.0) -> AsyncIterator[dict[str, Any]]:
        """Yield {"token", "text"} events, then the final {"done": true, ...} event. `request`
        holds input_ids, prompt or messages, max_tokens, temperature, top_p, seed."""
        async for event in self._exchange({**request, "op": "generate"}, idle_timeout):
            yield event

    async def _exchange(self, message: dict[str, Any],
                        idle_timeout: float = 120.0) -> AsyncIterator[dict[str, Any]]:
        async with self._lock:
            rid = str(next(self._ids))
            queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            self._queues[rid] = queue
            finished = False
            try:
                await self._send({**message, "id": rid})
                while True:
                    try:
                        async with asyncio.timeout(idle_timeout):
                            event = await self._next(queue)
                    except TimeoutError:
                        raise SpanGenerationError(
                            f"no token through the span chain for {idle_timeout:.0f} s") from None
                    if "error" in event:
                        finished = True
                        raise SpanGenerationError(f"span chain: {event['error']}")
                    finished = bool(event.get("done"))
                    yield event
                    if finished:
                        return
            finally:
                self._queues.pop(rid, None)
                if not finished and self.alive:  # the caller went away: stop the worker too
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._send({"op": "cancel", "id": rid}))

    async def _next(self, queue: asyncio.Queue[dict[str, Any]]) -> dict[str, Any]:
        getter = asyncio.ensure_future(queue.get())
        waiter = asyncio.ensure_future(self.wait())
        try:
            await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            return getter.result()
        raise SpanGenerationError("the span client exited")

    async def complete(self, request: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:
        """The whole generation: (token ids, the final event)."""
        tokens: list[int] = []
        final: dict[str, Any] = {}
        async for event in self.generate(request):
            if event.get("done"):
                final = event
            else:
                tokens.append(int(event["token"]))
        return tokens, final

    async def stop(self, grace: float = 5.0) -> None:
        """Close its stdin (it exits), then stop it like any supervised process."""
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(Exception):
                self.process.stdin.close()
        await super().stop(grace)
