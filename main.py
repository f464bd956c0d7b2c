"""Composition root: parse the command line, load the model, serve the API until Ctrl-C."""
from __future__ import annotations

import asyncio
import logging
import signal
import sys

from swarm import cli
from swarm.config import Config

log = logging.getLogger("local_swarm")


async def serve(config: Config) -> None:
    """Load the planned instances and serve the OpenAI API until SIGINT or SIGTERM."""
    from aiohttp import web

    from network.api import build_app
    from swarm.loader import load_backends, plan_from_config
    from swarm.pool import InstancePool
    from swarm.terminal import console, progress_bar, startup_panel

    plan = plan_from_config(config)
    if config.auto:
        from swarm.autorun import apply_auto_plan

        plan = apply_auto_plan(plan, config)
    with progress_bar("loading model") as report:
        backends = await asyncio.to_thread(load_backends, plan, config, report)
    pool = InstancePool(backends, queue_depth=config.model.queue_depth)
    runner = web.AppRunner(build_app(pool, config.api, config.consensus), handler_cancellation=True,
                           shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, config.api.host, config.api.port)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", config.api.host, config.api.port, exc)
            raise SystemExit(1) from exc
        host, port = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]
        url = f"http://{host}:{port}"
        console.print(startup_panel({
            "model": f"{pool.model_id} ({plan.source.path.name})",
            "backend": f"{plan.backend} on {plan.device}, {plan.dtype}",
            "instances": f"{plan.instances} x {plan.threads} thread(s)",
        }, url))
        log.info("listening on %s", url)
        await stop.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
        pool.close()


def run(argv: list[str] | None = None) -> int:
    """Entry point of `python main.py` and the `local-swarm` console script."""
    command, config = cli.parse(argv)
    from swarm.model_store import ModelError, force_offline
    from swarm.terminal import setup_logging

    force_offline()
    setup_logging(config.log_level)
    try:
        if command == "benchmark":
            from swarm.autorun import run_benchmark_command

            run_benchmark_command(config)
        else:
            asyncio.run(serve(config))
    except ModelError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
