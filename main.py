"""Composition root: parse the command line, load the model, serve the API until Ctrl-C."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from swarm.node import cli
from swarm.node.config import Config

log = logging.getLogger("local_swarm")


def _bind_addresses(config: Config) -> tuple[str, list[str]]:
    """The API host, and the LAN addresses mDNS advertises (empty without --federation)."""
    if not config.federation.enabled:
        return config.api.host, []
    from network.discovery.lan import choose_bind_address, private_ipv4_addresses

    explicit = config.api.host if "api.host" in config.explicit else None
    host = choose_bind_address(explicit)
    return host, [host] if explicit else (private_ipv4_addresses() or [host])


async def serve(config: Config, backends: Sequence[Any] | None = None) -> None:
    """Load the model (unless `backends` are given), serve until SIGINT or SIGTERM."""
    from aiohttp import web

    from network.api.app import build_app
    from swarm.engine.loader import load_backends, plan_from_config
    from swarm.engine.pool import InstancePool
    from swarm.node.terminal import console, progress_bar, startup_panel

    host, lan_addresses = _bind_addresses(config)
    bench_score = 0.0
    if backends is None:
        plan = plan_from_config(config)
        if config.auto:
            from swarm.sizing.autorun import apply_auto_plan

            plan, bench_score = apply_auto_plan(plan, config)
        with progress_bar("loading model") as report:
            backends = await asyncio.to_thread(load_backends, plan, config, report)
        engine = f"{plan.backend} on {plan.device}, {plan.dtype}"
        layout = f"{plan.instances} x {plan.threads} thread(s)"
    else:
        engine, layout = backends[0].name, f"{len(backends)} instance(s)"
    pool = InstancePool(list(backends), queue_depth=config.model.queue_depth)
    federation = None
    port_box = [config.api.port]
    if config.federation.enabled:
        federation, app, routes, keys = _federated_app(config, pool, lan_addresses,
                                                       bench_score, lambda: port_box[0])
    else:
        app = build_app(pool, config.api, config.consensus)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.25,
                           access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    live: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, host, config.api.port)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", host, config.api.port, exc)
            raise SystemExit(1) from exc
        port_box[0] = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://{host}:{port_box[0]}"
        if host not in ("127.0.0.1", "localhost", "0.0.0.0") and config.api.port != 0:
            # Local apps keep using http://127.0.0.1:PORT when the node binds its LAN address.
            await web.TCPSite(runner, "127.0.0.1", port_box[0]).start()
        rows = {"model": pool.model_id, "backend": engine, "instances": layout}
        if federation is not None:
            rows["node"] = f"{federation.identity.node_id} (boot {federation.identity.boot_id})"
            rows["swarm key"] = _key_row(keys)
            await federation.start(port_box[0])
            rows["discovery"] = ("mDNS on " + ", ".join(lan_addresses) if federation.mdns
                                 else f"manual peers only; mDNS {federation.mdns_reason}")
        console.print(startup_panel(rows, url))
        log.info("listening on %s", url)
        if federation is not None and console.is_terminal:
            from swarm.node.peer_view import show_live

            live = asyncio.create_task(show_live(lambda: routes.rows(host), federation.changed,
                                                 console))
        await stop.wait()
        log.info("shutting down")
    finally:
        # Stop the engines' work at once: in-flight requests end with a 429 (or go to a peer)
        # instead of holding the exit; the engines are freed once their workers let go.
        pool.begin_close()
        if live is not None:
            live.cancel()
            await asyncio.gather(live, return_exceptions=True)
        if federation is not None:
            await federation.close()
        await runner.cleanup()
        # Wait (at most 1 s from the cancel) for every worker to let go of its engine. The engines
        # are not freed here: the process ends next, and the kernel takes their memory back.
        pool.close(free=False)


def _federated_app(config: Config, pool: Any, lan_addresses: list[str], bench_score: float,
                   port: Any) -> tuple[Any, Any, Any, Any]:
    """The app of a node in the swarm: consensus over local instances and peers, route
    forwarding, and the /v1/federation/* routes; with the swarm keys it loaded (or generated)."""
    from consensus.service import ConsensusService
    from network.api.app import build_app
    from network.coordination.plan import planned
    from network.coordination.store import ElectionStore
    from network.federation.forwarding import RouteForwarder
    from network.federation.node import Federation
    from network.federation.server import FederationRoutes
    from network.federation.sources import FederatedAsk, plan_sources
    from network.trust.approval import ApprovalRoutes, ApprovedPeers, approved_path
    from network.trust.identity import load_identity
    from network.trust.signing import Verifier
    from network.trust.swarm_key import load_keys
    from network.wire.election import PlanMember
    from swarm.sizing.hardware import probe, summary

    fed = config.federation
    loaded = load_keys(fed.swarm_key, fed.previous_swarm_keys, config.cache_path)
    hw = probe()
    identity = load_identity(config.cache_path, fed.node_id, loaded.ring.fingerprint)
    # One verifier (one replay cache) for votes, cancels and forwarded requests to this node.
    verifier = Verifier(loaded.ring, audience=identity.node_id)
    approvals = ApprovedPeers.load(approved_path(config.cache_path))
    federation = Federation(config.federation, identity, keys=loaded.ring, addresses=lan_addresses,
                            model_id=pool.model_id, instances=len(pool.instances),
                            hardware=summary(hw), bench_score=bench_score,
                            local_member=lambda: PlanMember(
                                node_id=identity.node_id, score=bench_score, load=pool.load(),
                                queue_depth=pool.queue_depth(), instances=len(pool.instances),
                                weight=1.0),
                            election_store=ElectionStore(config.cache_path / "election.json"),
                            approved=approvals.__contains__ if fed.approve_peers else None)
    coordinator = federation.coordinator
    ask = FederatedAsk(pool, federation.client, remotes=federation.remotes)

    def voters() -> list[Any]:
        """The peers the coordinator's plan picks, or all live ones without a fresh plan."""
        return planned(federation.remotes(), coordinator.consensus_members())

    service = ConsensusService(
        lambda: [*pool.instances, *voters()], ask,
        plan=lambda n: plan_sources(pool.instances, voters(), n, local_score=bench_score))
    forwarder = RouteForwarder(pool, federation.client, identity.node_id, federation.remotes,
                               verifier=verifier)
    app = build_app(pool, config.api, config.consensus, service, forwarder, verifier=verifier)
    routes = FederationRoutes(
        identity, pool, federation.membership, api_port_getter=port, bench_score=bench_score,
        hardware={"ram_gb": hw.ram_total_bytes / 2**30,
                  "vram_gb": sum(mem for _name, mem in hw.cuda_devices) / 2**30},
        discovery_status=federation.discovery_status, verifier=verifier,
        election=coordinator.handle, plan=coordinator.plan,
        election_view=coordinator.election_view, election_role=lambda: coordinator.role.value)
    routes.add_to(app)
    ApprovalRoutes(approvals, federation.monitor.reconsider,
                   enforced=fed.approve_peers).add_to(app)
    return federation, app, routes, loaded


def _key_row(loaded: Any) -> str:
    """The startup panel's swarm-key line: fingerprint and origin, never the key."""
    ring = loaded.ring
    origin = ("new: show it with `main.py swarm-key`" if loaded.generated
              else "stored" if loaded.source == "file" else "configured")
    previous = f"; also accepts {len(ring.previous)} previous" if ring.previous else ""
    return f"fingerprint {ring.fingerprint} ({origin}{previous})"


def _ask_node(config: Config, url: str,
              payload: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]] | None:
    """GET (or POST `payload` as JSON to) this machine's node with the first API key of the
    config; (status, JSON body), or None after logging why no node answered."""
    import json
    import urllib.error
    import urllib.request

    headers = {"Accept": "application/json"}
    if config.api.keys:
        headers["Authorization"] = f"Bearer {config.api.keys[0]}"
    data = None if payload is None else json.dumps(payload).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (our own node)
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except OSError as exc:
        log.error("no node answers at %s (%s). Start one with: python main.py --federation",
                  url, exc)
        return None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {"error": {"message": raw[:200].decode("utf-8", "replace")}}
    if status == 401:
        sent = ("the key sent (the first of [api] keys) is not one it accepts"
                if config.api.keys else "none was sent")
        log.error("the node at %s requires an API key and %s: set [api] keys in the config "
                  "file, LOCAL_SWARM_API_KEYS or --api-key KEY to one of the node's keys",
                  url, sent)
        return None
    return status, body if isinstance(body, dict) else {"error": body}


def _error_of(body: dict[str, Any]) -> Any:
    error = body.get("error", body)
    return error.get("message", error) if isinstance(error, dict) else error


def show_peers(config: Config) -> int:
    """`main.py peers`: ask the local node for its peer table and explain missing peers."""
    from swarm.node.peer_view import missing_peer_hints, render_peers
    from swarm.node.terminal import console

    host, _lan = _bind_addresses(config)
    url = f"http://{host}:{config.api.port}/v1/federation/peers"
    answer = _ask_node(config, url)
    if answer is None:
        return 1
    _status, body = answer
    if "data" not in body:
        log.error("%s answered %s", url, _error_of(body))
        return 1
    out = console if console.is_terminal else type(console)(width=200)  # no wrapping in pipes
    out.print(render_peers(body["data"], title=f"peers seen by {body.get('node_id')}"))
    for hint in missing_peer_hints(body["data"], body.get("discovery", {})):
        out.print(f"- {hint}", soft_wrap=True)
    return 0


def approve_peer(config: Config, node_id: str, approved: bool = True) -> int:
    """`main.py peers approve ID` (or `revoke ID`): ask this machine's node, over 127.0.0.1
    (the node takes approvals from its own machine only), to approve or revoke a peer."""
    from network.wire.messages import is_identifier
    from swarm.node.terminal import console

    if not is_identifier(node_id):
        log.error("%r is not a node id (1 to 64 letters, digits and ._:-); `python main.py peers` "
                  "lists them", node_id)
        return 1
    url = f"http://127.0.0.1:{config.api.port}/v1/federation/approve"
    answer = _ask_node(config, url, {"node_id": node_id, "approved": approved})
    if answer is None:
        return 1
    status, body = answer
    if status == 404 or status == 405:
        log.error("the node at %s has no approval route: is it running with --federation?", url)
        return 1
    if status != 200:
        log.error("%s answered %d: %s", url, status, _error_of(body))
        return 1
    out = console if console.is_terminal else type(console)(width=200)  # stdout in pipes
    state = body.get("state")
    done = "approved" if approved else "no longer approved"
    where = (f"its state is now {state}" if state
             else "not seen yet: it is used once it answers" if approved else "not seen yet")
    out.print(f"{node_id} {done}; {where}.", soft_wrap=True)
    if not body.get("approve_peers"):
        out.print("Note: this node runs without --approve-peers, so it uses every peer "
                      "holding the swarm key; the approval is kept for when you turn it on.",
                      soft_wrap=True)
    return 0


def _exit_served() -> NoReturn:
    """End the process once `serve` has closed everything (sockets, peers, engines, the election
    file): finalizing torch's and transformers' modules alone takes 1 to 3 s here, and SIGTERM
    must end a node within 2 s."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run(argv: list[str] | None = None) -> int:
    """Entry point of `python main.py` and the `local-swarm` console script."""
    invocation = cli.parse_invocation(argv)
    command, config = invocation.command, invocation.config
    from network.discovery.lan import NoLanAddressError
    from network.trust.swarm_key import SwarmKeyError
    from swarm.models.store import ModelError, force_offline
    from swarm.node.terminal import setup_logging

    force_offline()
    setup_logging(config.log_level)
    try:
        if command == "swarm-key":
            from network.trust.swarm_key import run_command

            fed = config.federation
            return run_command(fed.swarm_key, fed.previous_swarm_keys, config.cache_path,
                               invocation.key_action, invocation.new_key, out=sys.stdout,
                               stdin=sys.stdin)
        if command == "benchmark":
            from swarm.sizing.autorun import run_benchmark_command

            run_benchmark_command(config)
        elif command == "peers" and invocation.peer_action:
            return approve_peer(config, invocation.peer_id, invocation.peer_action == "approve")
        elif command == "peers":
            return show_peers(config)
        else:
            asyncio.run(serve(config))
            _exit_served()
    except (ModelError, NoLanAddressError, SwarmKeyError) as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
