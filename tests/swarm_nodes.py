"""Whole nodes built exactly as `main.py --federation` builds them (`main.build_services`), over
scripted instances, serving on pre-bound loopback sockets with manual peers and no mDNS."""
from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

import main
from network.federation.node import Federation
from network.federation.pairing import Pairing
from network.membership.table import PeerState
from network.trust.swarm_key import SwarmKey
from swarm.engine.pool import InstancePool
from swarm.engine.scripted import ScriptedBackend
from swarm.models.store import ModelSource
from swarm.node.config import Config, load_config
from swarm.node.loading import Engine


def bound_socket() -> socket.socket:
    """A loopback socket bound to a free port (so peers can be listed before the node starts)."""
    return _bind(0)


def _bind(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind after a stop
    sock.bind(("127.0.0.1", port))
    return sock


@dataclass
class SwarmNode:
    """One node: `await start()` serves it, `await stop()` takes it away (as a crash looks)."""

    name: str
    sock: socket.socket
    peers: list[int]
    key: SwarmKey
    tmp: Path
    previous: tuple[SwarmKey, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # more config keys (dotted names)
    bench_score: float = 1.0
    source: ModelSource | None = None  # a model file it holds and shares
    fresh: bool = False  # no configured key: the node generates its own (solo) key file
    beats: bool = False  # push heartbeats over UDP as main.py does (else peers are probed)
    config: Config = field(init=False)
    pool: InstancePool = field(init=False)
    federation: Federation = field(init=False)
    pairing: Pairing = field(init=False)
    _runner: web.AppRunner | None = field(init=False, default=None)
    port: int = field(init=False)

    def __post_init__(self) -> None:
        self.port = int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def state_of(self, node_id: str) -> PeerState | None:
        peer = self.federation.membership.get(node_id)
        return peer.state if peer else None

    async def start(self) -> SwarmNode:
        self.config = load_config(env={}, cli={
            "federation.enabled": True, "federation.mdns": False, "federation.node_id": self.name,
            "federation.peers": [f"127.0.0.1:{p}" for p in self.peers],
            **({} if self.fresh else {"federation.swarm_key": self.key.text}),
            "federation.previous_swarm_keys": [k.text for k in self.previous],
            "model.cache_dir": str(self.tmp / self.name), "api.host": "127.0.0.1",
            "api.port": self.port, "model.queue_depth": 4, **self.extra})
        engine = Engine.given([ScriptedBackend([f"answer from {self.name}"])],
                                   self.bench_score, self.source)
        services = await main.build_services(self.config, engine)
        assert services.swarm is not None
        assert self.fresh or services.swarm.keys.ring.fingerprint == self.key.fingerprint
        self.pool, self.federation = services.pool, services.swarm.federation
        self.pairing = services.swarm.pairing
        self._runner = web.AppRunner(services.app, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()
        if self.beats:
            await self.federation.start(self.port, services.swarm.routes.heartbeat,
                                        ("127.0.0.1",))
        else:
            await self.federation.start(self.port)
        await self.pairing.start()
        return self

    async def stop(self) -> None:
        if self._runner is None:
            return
        runner, self._runner = self._runner, None
        await self.pairing.close()
        await self.federation.close()
        await runner.cleanup()
        self.pool.close()
        self.sock = _bind(self.port)  # cleanup closed the socket: keep the port for a restart


def make_swarm(tmp: Path, names: list[str], key: SwarmKey,
               extra: dict[str, dict[str, Any]] | None = None,
               scores: dict[str, float] | None = None,
               keys: dict[str, tuple[SwarmKey, tuple[SwarmKey, ...]]] | None = None,
               fresh: frozenset[str] = frozenset()) -> dict[str, SwarmNode]:
    """Unstarted nodes named `names`, each listing all the others as manual peers; `keys` gives
    some of them their own (swarm key, previous keys) instead of `key`; those in `fresh` start
    as a new machine does, with no key set (they generate their own)."""
    socks = {name: bound_socket() for name in names}
    ports = {name: int(s.getsockname()[1]) for name, s in socks.items()}
    nodes = {}
    for name in names:
        node_key, previous = (keys or {}).get(name, (key, ()))
        nodes[name] = SwarmNode(name, socks[name], [p for o, p in ports.items() if o != name],
                                node_key, tmp, previous=previous,
                                extra=(extra or {}).get(name, {}),
                                bench_score=(scores or {}).get(name, 1.0), fresh=name in fresh)
    return nodes


@asynccontextmanager
async def running(nodes: dict[str, SwarmNode]) -> AsyncIterator[dict[str, SwarmNode]]:
    """Start `nodes` in order; on exit stop every one and release its socket."""
    try:
        for node in nodes.values():
            await node.start()
        yield nodes
    finally:
        for node in nodes.values():
            await node.stop()
            node.sock.close()


async def weighted_vote(http: aiohttp.ClientSession, node: SwarmNode, n: int) -> set[str]:
    """The sources of a weighted_vote consensus of `n` candidates asked of `node` (200 or fail)."""
    body = {"messages": [{"role": "user", "content": "Capital of France?"}], "max_tokens": 8,
            "swarm": {"strategy": "weighted_vote", "n": n}}
    async with http.post(node.url + "/v1/chat/completions", json=body) as r:
        reply = await r.json()
        assert r.status == 200, reply
    return {c["source"] for c in reply["swarm"]["candidates"]}
