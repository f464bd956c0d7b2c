"""`main.py models`: the models the swarm holds (name, format, size, digest, which nodes), read
from the running node's peer table and each live node's signed `GET /v1/federation/models`."""
from __future__ import annotations

import asyncio
import logging
from typing import Any

from rich.table import Table

from network.discovery.lan import bind_addresses
from network.federation.client import FederationClient
from network.federation.models.download import Holder
from network.federation.models.finder import Offer, ask_models
from network.trust.swarm_key import load_keys
from network.wire.paths import PEERS_PATH
from swarm.errors import PeerError
from swarm.models.manifest import Manifest
from swarm.node.commands import ask_node
from swarm.node.config import Config
from swarm.node.terminal import plain_console

log = logging.getLogger("local_swarm")


def holders_of(rows: list[dict[str, Any]], local_host: str) -> list[Holder]:
    """This node and every alive peer of a `/v1/federation/peers` answer."""
    found = []
    for row in rows:
        if row.get("self"):
            found.append(Holder(row["node_id"], row.get("address") or local_host, row["api_port"]))
        elif row.get("state") == "alive" and row.get("address"):
            found.append(Holder(row["node_id"], row["address"], row["api_port"]))
    return found


def render_models(offers: list[Offer]) -> Table:
    """One row per model (by digest), naming the nodes that hold it."""
    models: dict[str, tuple[Manifest, list[str]]] = {}
    for offer in offers:
        for manifest in offer.manifests:
            models.setdefault(manifest.digest, (manifest, []))[1].append(offer.holder.node_id)
    table = Table(title="models the swarm holds")
    for column in ("name", "format", "size", "digest", "nodes"):
        table.add_column(column)
    for manifest, nodes in sorted(models.values(), key=lambda mn: mn[0].name):
        table.add_row(manifest.name, manifest.format, f"{manifest.size / 1e6:,.1f} MB",
                      manifest.digest[:16], ", ".join(sorted(nodes)))
    return table


async def _ask_all(config: Config, holders: list[Holder]) -> list[Offer]:
    keys = load_keys(config.federation.swarm_key, config.federation.previous_swarm_keys,
                     config.cache_path)
    client = FederationClient(keys=keys.ring)
    try:
        answers = await asyncio.gather(*(ask_models(client, h) for h in holders),
                                       return_exceptions=True)
    finally:
        await client.close()
    offers = []
    for holder, answer in zip(holders, answers, strict=True):
        if isinstance(answer, PeerError):
            log.warning("%s did not list its models: %s", holder.node_id, answer)
        elif isinstance(answer, BaseException):
            raise answer
        else:
            offers.append(answer)
    return offers


def show_models(config: Config) -> int:
    """`main.py models`: ask the local node for its peers, then every live node for its models."""
    host, _lan = bind_addresses(config.api.host, config.federation.enabled,
                                "api.host" in config.explicit)
    url = f"http://{host}:{config.api.port}{PEERS_PATH}"
    reply = ask_node(config, url)
    if reply is None:
        return 1
    if "data" not in reply.body:
        log.error("%s answered %s: is the node running with --federation?", url, reply.error)
        return 1
    offers = asyncio.run(_ask_all(config, holders_of(reply.body["data"], host)))
    plain_console().print(render_models(offers))
    return 0
