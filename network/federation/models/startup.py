"""Before a node loads its model: with --federation and `--model NAME` this machine lacks, find
the peers that hold NAME and fetch it into the store, so the loader finds it there; with
`--model swarm`, the model most peers hold, fetched unless the store has it already, then
served under its digest (main.py calls this first)."""
from __future__ import annotations

import asyncio
import dataclasses
import logging

from swarm.node.config import SWARM_MODEL, Config

log = logging.getLogger("local_swarm")


async def fetch_missing_model(config: Config) -> Config:
    """With --federation and `--model NAME` that this machine lacks: find the peers that hold
    it, fetch it into the store (a progress bar; resumable), so the loader finds it there.
    With `--model swarm`: the same for the model most live peers hold. The configuration to
    load from: `config`, or for `--model swarm` one whose model is the chosen model's digest."""
    from network.discovery.lan import bind_addresses
    from network.federation.client import FederationClient
    from network.federation.models.download import FetchProgress
    from network.federation.models.fetcher import ModelFetcher
    from network.federation.models.finder import ModelFinder
    from network.trust.identity import load_identity
    from network.trust.swarm_key import load_keys
    from swarm.engine.loader import is_model_name, model_library
    from swarm.errors import PeerError
    from swarm.models.store import ModelError
    from swarm.node.terminal import transfer_bar

    fed, wanted = config.federation, config.model.path
    if not fed.enabled or not is_model_name(wanted):
        return config
    library = model_library(config)
    anything = wanted == SWARM_MODEL  # the swarm's model may change: always ask the peers
    if not anything and await asyncio.to_thread(library.find, wanted) is not None:
        return config
    _host, lan = bind_addresses(config.api.host, True, "api.host" in config.explicit)
    keys = load_keys(fed.swarm_key, fed.previous_swarm_keys, config.cache_path)
    identity = load_identity(config.cache_path, fed.node_id, keys.ring.fingerprint)
    client = FederationClient(keys=keys.ring)
    try:
        log.info("looking for peers that hold %s",
                 "a model" if anything else f"model {wanted}")
        finder = ModelFinder(fed, identity, keys.ring, client, lan)
        manifest, holders = await finder.find(None if anything else wanted, fed.fetch_wait_s)
        chosen = dataclasses.replace(config, model=dataclasses.replace(
            config.model, path=manifest.digest)) if anything else config
        if await asyncio.to_thread(library.find, manifest.digest) is not None:
            log.info("serving the swarm's model %s (%s), already in the store",
                     manifest.name, manifest.digest[:12])
            return chosen
        log.info("fetching %s (%s, %.1f MB, %s) from %s", manifest.name, manifest.format,
                 manifest.size / 1e6, manifest.digest[:12], ", ".join(h.node_id for h in holders))
        with transfer_bar(f"fetching {manifest.name}", manifest.size) as bar:
            def show(progress: FetchProgress) -> None:
                bar(progress.done_bytes, progress.peers)

            fetcher = ModelFetcher(library, client, rate_bytes_s=fed.fetch_limit_mb_s * 1e6,
                                   on_progress=show)
            await fetcher.fetch(manifest, holders)
        return chosen
    except PeerError as exc:
        raise ModelError(str(exc)) from exc
    finally:
        await client.close()
