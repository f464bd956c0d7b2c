"""Composition root: parse the command line, build the node's services, serve until a signal.

Nothing here decides anything. `build_services` connects the parts (the engine, loaded by
swarm/node/loading.py, the API and, with --federation, the swarm) into one typed `Services` record;
`serve` runs it, with every task owned by the exit stack or task group that started it. Heavy
imports wait until they are needed, so `main.py --help` is instant.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

from swarm.node import cli
from swarm.node.config import Config
from swarm.node.loading import Engine, load_engine

if TYPE_CHECKING:
    from aiohttp import web

    from network.api.listener import ApiListener
    from network.federation.node import Federation
    from network.federation.pairing import Pairing
    from network.federation.server import FederationRoutes
    from network.petals.service import SpanService
    from network.trust.identity import NodeIdentity
    from network.trust.swarm_key import LoadedKeys
    from swarm.engine.pool import InstancePool
    from swarm.models.library import ModelLibrary

log = logging.getLogger("local_swarm")


@dataclass(frozen=True)
class Swarm:
    """The federated half of a node: its membership, the routes peers call, the keys it holds,
    and with --spans its part in serving layer spans."""

    federation: Federation
    routes: FederationRoutes
    keys: LoadedKeys
    library: ModelLibrary  # the models this node holds and shares
    pairing: Pairing
    spans: SpanService | None = None


@dataclass(frozen=True)
class Services:
    """Everything one node runs: built by `build_services`, run by `serve`."""

    pool: InstancePool
    app: web.Application
    listener: ApiListener  # where the API listens (and, with --federation, follows the machine)
    lan_addresses: list[str]  # what mDNS advertises: the address bound (none without --federation)
    panel: dict[str, str]  # the start-up panel's rows
    swarm: Swarm | None = None


async def build_services(config: Config, engine: Engine | None = None) -> Services:
    """The node `config` describes, over `engine` (the configured model, loaded, when None)."""
    from network.api.app import build_app
    from network.api.dashboard.routes import WATCH_KEY
    from network.api.listener import ApiListener
    from network.discovery.lan import bind_addresses
    from network.trust.identity import load_identity
    from network.trust.swarm_key import load_keys
    from swarm.engine.pool import InstancePool
    from swarm.engine.source import LOCAL_NODE

    fed = config.federation
    pinned = "api.host" in config.explicit
    host, lan = bind_addresses(config.api.host, fed.enabled, pinned)
    listener = ApiListener(host, config.api.port)
    keys = load_keys(fed.swarm_key, fed.previous_swarm_keys, config.cache_path) \
        if fed.enabled else None
    identity = load_identity(config.cache_path, fed.node_id, keys.ring.fingerprint) \
        if keys is not None else None
    engine = engine or await load_engine(config)
    pool = InstancePool(list(engine.backends), queue_depth=config.model.queue_depth,
                        node_id=identity.node_id if identity else LOCAL_NODE,
                        score=engine.bench_score)
    panel = {"model": pool.model_id, "backend": engine.backend, "instances": engine.layout}
    if keys is None or identity is None:
        return Services(pool, build_app(pool, config.api, config.consensus), listener, lan, panel)
    # Unless --host pins the address, the swarm follows the machine to a new LAN address (a wake
    # on another network, a new DHCP lease): its interface watcher moves the listener there.
    swarm, app = build_swarm(config, pool, lan, engine.bench_score, keys, identity,
                             rebind=None if pinned else listener.move)
    routes = swarm.routes  # the self row shows where the API listens now (it may move)
    app[WATCH_KEY].attach(lambda: routes.rows(listener.host), routes.election_status,
                          swarm.federation.coordinator.current_plan, swarm.pairing.view)
    if engine.source is not None:
        manifest = await asyncio.to_thread(swarm.library.share, engine.source)
        log.info("sharing model %s (%s) with peers", manifest.name, manifest.digest[:12])
    panel["node"] = f"{identity.node_id} (boot {identity.boot_id})"
    panel["swarm key"] = keys.describe()
    return Services(pool, app, listener, lan, panel, swarm)


def build_swarm(config: Config, pool: InstancePool, lan_addresses: list[str], bench_score: float,
                keys: LoadedKeys, identity: NodeIdentity,
                rebind: Callable[[str], Awaitable[None]] | None = None,
                ) -> tuple[Swarm, web.Application]:
    """The app of a node in the swarm: consensus over its instances and the peers the plan picks
    (and with --spans the span chain, a third kind of source), route forwarding, the
    /v1/federation/* routes and peer approval. `rebind(address)` moves the API to the machine's
    new LAN address (None: the address is pinned)."""
    from consensus.service import ConsensusService
    from network.api.app import build_app
    from network.coordination.chooser import spread
    from network.coordination.store import ElectionStore
    from network.federation.forwarding import RouteForwarder
    from network.federation.join_routes import JoinRoutes
    from network.federation.models.routes import ModelRoutes
    from network.federation.node import Federation
    from network.federation.pairing import Pairing
    from network.federation.server import FederationRoutes
    from network.federation.sources import FederatedAsk, SwarmSources
    from network.trust.approval import ApprovalRoutes, ApprovedPeers, approved_path
    from network.trust.signing import Verifier
    from swarm.engine.loader import model_library
    from swarm.sizing.hardware import probe, summary

    fed = config.federation
    hw = probe()
    # One verifier (one replay cache) for votes, cancels and forwarded requests to this node.
    verifier = Verifier(keys.ring, audience=identity.node_id)
    approvals = ApprovedPeers.load(approved_path(config.cache_path))
    spans = chain = None

    async def moved(address: str) -> None:  # the API, then the span processes, to `address`
        assert rebind is not None
        await rebind(address)
        if spans is not None:
            await spans.move(address)

    federation = Federation(fed, identity, keys=keys.ring, pool=pool, addresses=lan_addresses,
                            hardware=summary(hw), bench_score=bench_score,
                            election_store=ElectionStore(config.cache_path / "election.json"),
                            approved=approvals.__contains__ if fed.approve_peers else None,
                            rebind=moved if rebind is not None else None)
    if config.spans.enabled:
        from network.petals.node import span_parts

        spans, chain = span_parts(config, federation, identity.node_id,
                                  lan_addresses[0] if lan_addresses else config.api.host,
                                  hw.ram_total_bytes, bench_score)
    sources = SwarmSources(pool, federation.remotes, federation.coordinator.consensus_members,
                           chain=chain)
    service = ConsensusService(sources, spread, FederatedAsk(sources))
    forwarder = RouteForwarder(sources, federation.client, identity.node_id, verifier=verifier)
    app = build_app(pool, config.api, config.consensus, service, forwarder, verifier=verifier,
                    sources=sources, changes=federation.changed)
    pairing = Pairing(federation, verifier, keys, fed, approvals=approvals)
    routes = FederationRoutes(federation, pool, ram_gb=hw.ram_total_bytes / 2**30,
                              vram_gb=hw.gpu_memory_bytes / 2**30,
                              verifier=verifier, pairing=pairing.state, spans=spans)
    routes.add_to(app)
    if spans is not None:
        spans.add_to(app)
    JoinRoutes(pairing).add_to(app)
    library = model_library(config)
    ModelRoutes(library, routes.gate, identity.node_id).add_to(app)
    ApprovalRoutes(approvals, federation.monitor.reconsider, enforced=fed.approve_peers,
                   joins=pairing.decide).add_to(app)
    return Swarm(federation, routes, keys, library, pairing, spans), app


async def serve(config: Config, engine: Engine | None = None) -> None:
    """Build the node (loading the model unless `engine` is given), serve until SIGINT or
    SIGTERM, then stop it in reverse order: the engines' work (cancelled at once, so requests in
    flight end with a 429 instead of holding the exit), the live view, the swarm (with its
    interface watcher, which may move the listener), the server and its sites, and last the pool,
    once every worker has let go of its engine (at most 1 s after the cancel)."""
    from aiohttp import web

    from network.api.dashboard.routes import WATCH_KEY
    from swarm.node.swarm_view import show_live
    from swarm.node.terminal import console, startup_panel

    if engine is None:
        from network.federation.models.startup import fetch_missing_model

        config = await fetch_missing_model(config)
    services = await build_services(config, engine)
    # The node's objects (torch, transformers, the model) live until it exits: collect what
    # loading left, then take the rest out of the cyclic collector. A full collection over them
    # takes 0.5 s under load, and an exiting interpreter runs several: Ctrl-C took 3 to 5 s at a
    # load of 10 on 2 cores, 0.4 to 0.5 s frozen. Freed by reference counting as before.
    gc.collect()
    gc.freeze()
    swarm = services.swarm
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        # The engines are not freed: the process ends next, and the kernel takes their memory.
        stack.callback(services.pool.close, free=False)
        runner = web.AppRunner(services.app, handler_cancellation=True, shutdown_timeout=0.25,
                               access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        listener = services.listener
        try:
            await listener.start(runner)
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", listener.host, listener.port, exc)
            raise SystemExit(1) from exc
        url = listener.url
        panel = dict(services.panel)
        if swarm is not None:
            await swarm.federation.start(listener.port, swarm.routes.heartbeat, listener.hosts)
            stack.push_async_callback(swarm.federation.close)
            await swarm.pairing.start()
            stack.push_async_callback(swarm.pairing.close)
            panel["discovery"] = swarm.federation.discovery_summary()
            if swarm.spans is not None:
                from network.petals.node import start_spans

                panel["spans"] = await start_spans(swarm.spans, stack)
        stack.callback(services.pool.begin_close)  # the first thing a shutdown does
        console.print(startup_panel(panel, url))
        log.info("listening on %s", url)
        async with asyncio.TaskGroup() as tasks:
            live = None
            if console.is_terminal:
                watch = services.app[WATCH_KEY]
                live = tasks.create_task(show_live(watch.snapshot, watch.changes, console))
            await stop.wait()
            log.info("shutting down")
            if live is not None:
                live.cancel()


def run(argv: list[str] | None = None) -> int:
    """Entry point of `python main.py` and the `local-swarm` console script."""
    invocation = cli.parse_invocation(argv)
    command, config = invocation.command, invocation.config
    from swarm.errors import ConfigError, EngineError
    from swarm.models.store import force_offline
    from swarm.node.terminal import exit_flushed, setup_logging

    force_offline()
    setup_logging(config.log_level)
    try:
        if command != "serve":
            from swarm.node.commands import client_command

            return client_command(invocation)
        asyncio.run(serve(config))
        exit_flushed()
    except (ConfigError, EngineError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
