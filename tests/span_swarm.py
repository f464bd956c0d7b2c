"""A private span swarm on loopback for tests and benches: the DHT bootstrap, Petals servers for
given block ranges, and clients, all real processes in the span venv, stopped on exit."""
from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from network.petals.client import SpanClient
from network.petals.environment import SpanEnvironment, ensure_environment
from network.petals.model import span_model_folder
from network.petals.servers import DhtBootstrap, SpanServer, SpanServerSpec
from swarm.models.store import embedded_model

PREFIX = "smollm2-test"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def cache_dir() -> Path:
    from swarm.node.config import load_config

    return load_config(env={}).cache_path


def prepare() -> tuple[SpanEnvironment, Path]:
    """The span venv (built when missing) and the embedded model's span folder."""
    cache = cache_dir()
    return ensure_environment(cache), span_model_folder(embedded_model(), cache)


class SpanSwarm:
    """The processes of one test swarm; `servers` in start order."""

    def __init__(self, environment: SpanEnvironment, model_dir: Path, log_dir: Path) -> None:
        self.environment, self.model_dir, self.log_dir = environment, model_dir, log_dir
        self.dht: DhtBootstrap | None = None
        self.servers: list[SpanServer] = []
        self.clients: list[SpanClient] = []

    async def start_dht(self) -> tuple[str, ...]:
        self.dht = DhtBootstrap(self.environment, log_path=self.log_dir / "dht.log")
        await self.dht.start()
        return self.dht.initial_peers

    async def add_servers(self, spans: Sequence[tuple[int, int]], threads: int = 0,
                          prefix: str = PREFIX) -> None:
        import asyncio

        assert self.dht is not None
        new = [SpanServer(self.environment,
                          SpanServerSpec(self.model_dir, a, b, self.dht.initial_peers, prefix,
                                         threads=threads),
                          self.log_dir / f"server-{a}-{b}-{time.monotonic_ns()}.log")
               for i, (a, b) in enumerate(spans)]
        self.servers += new
        await asyncio.gather(*(s.start() for s in new))

    async def client(self, local: bool = False, prefix: str = PREFIX,
                     **kwargs: Any) -> SpanClient:
        peers = () if local or self.dht is None else self.dht.initial_peers
        assert local or peers
        client = SpanClient(self.environment, self.model_dir, peers, prefix, local=local,
                            log_path=self.log_dir / f"client-{time.monotonic_ns()}.log", **kwargs)
        self.clients.append(client)
        await client.start()
        return client

    def server_on_route(self, client: SpanClient, block: int) -> SpanServer:
        """The server the client's current route uses for `block`."""
        for start, end, tail in client.route():
            if start <= block < end:
                return next(s for s in self.servers if s.peer_id.endswith(tail) and s.alive)
        raise LookupError(f"no route hop holds block {block}: {client.route()}")

    async def close(self) -> None:
        for process in [*self.clients, *self.servers, *([self.dht] if self.dht else [])]:
            await process.stop()


@contextlib.asynccontextmanager
async def span_swarm(log_dir: Path) -> AsyncIterator[SpanSwarm]:
    environment, model_dir = prepare()
    swarm = SpanSwarm(environment, model_dir, log_dir)
    try:
        yield swarm
    finally:
        await swarm.close()


async def generate_timed(client: SpanClient, request: dict[str, Any],
                         on_token: Any = None) -> tuple[list[int], list[float], dict[str, Any]]:
    """Token ids, the monotonic time of each, and the final event; `on_token(n)` after each."""
    tokens: list[int] = []
    times: list[float] = []
    final: dict[str, Any] = {}
    async for event in client.generate(request):
        if event.get("done"):
            final = event
            break
        tokens.append(int(event["token"]))
        times.append(time.monotonic())
        if on_token is not None:
            await on_token(len(tokens))
    return tokens, times, final
