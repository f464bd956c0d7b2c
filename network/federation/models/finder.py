"""Find the peers that hold a model, before this node serves anything: discovery and heartbeats as
the node itself runs them (manual peers, mDNS browsing without advertising, the same signed
probes), then each live peer's signed `GET /v1/federation/models`.

The holders of the model are the live peers whose manifest `wanted` names (its name, a file's
stem or a digest prefix) with the digest most of them hold; `wanted` None (`--model swarm`)
names any model, so the one most peers hold wins. A peer's answer that is not valid is logged
once and skipped.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from network.discovery.events import DiscoveryUnavailable
from network.discovery.manual import StaticPeers
from network.discovery.mdns import MdnsDiscovery
from network.federation.client import FederationClient
from network.federation.models.download import Holder
from network.membership.monitor import PeerMonitor
from network.membership.table import Change, Membership, Timings
from network.trust.identity import NodeIdentity
from network.trust.swarm_key import KeyRing
from network.wire import codec
from network.wire.paths import MODELS_PATH
from network.wire.txt import PeerAdvert
from swarm.errors import PeerError
from swarm.models.manifest import Manifest, ManifestError
from swarm.models.store import ModelError
from swarm.node.config import SWARM_MODEL, FederationConfig

log = logging.getLogger(__name__)

GRACE_S = 1.0  # after the first holder answers, wait this long for more (several sources)
ASK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Offer:
    """One peer's models."""

    holder: Holder
    manifests: tuple[Manifest, ...]


def choose(wanted: str | None,
           offers: Iterable[Offer]) -> tuple[Manifest, list[Holder]] | None:
    """The manifest `wanted` names (None: any) that the most peers hold (ties: an exact name
    first, then the smaller digest), and those peers; None when no peer holds it. Pure."""
    by_digest: dict[str, tuple[Manifest, list[Holder]]] = {}
    for offer in offers:
        for manifest in offer.manifests:
            if wanted is None or manifest.matches(wanted):
                entry = by_digest.setdefault(manifest.digest, (manifest, []))
                if offer.holder not in entry[1]:
                    entry[1].append(offer.holder)
    if not by_digest:
        return None
    return min(by_digest.values(),
               key=lambda mh: (-len(mh[1]), mh[0].name != wanted, mh[0].digest))


async def ask_models(client: FederationClient, holder: Holder) -> Offer:
    """A peer's manifests (its answer signed over our nonce); `PeerError` when it fails."""
    raw = await client.read_signed(holder.address, holder.port, holder.node_id, MODELS_PATH,
                                   ASK_TIMEOUT_S)
    try:
        data = codec.decode_json(raw)["data"]  # the limits of every peer message
        if not isinstance(data, list):
            raise TypeError("data is not a list")
        return Offer(holder, tuple(Manifest.from_wire(m) for m in data))
    except (ValueError, KeyError, TypeError, ManifestError) as exc:
        raise PeerError(f"bad model list: {exc}", node_id=holder.node_id) from exc


class ModelFinder:
    """Looks for `wanted` among the peers that `config` lets this node find."""

    def __init__(self, config: FederationConfig, identity: NodeIdentity, keys: KeyRing,
                 client: FederationClient, lan_addresses: list[str]) -> None:
        self.config = config
        self.identity = identity
        self.client = client
        self.lan_addresses = lan_addresses
        self.timings = Timings(interval_s=config.heartbeat_interval_s,
                               suspect_after_s=max(1.0, 2 * config.heartbeat_interval_s))
        self.membership = Membership(identity.node_id, identity.protocol, identity.fingerprint,
                                     self_boot_id=identity.boot_id, timings=self.timings,
                                     also_accepted=keys.accepted)
        self.found = asyncio.Event()
        self.monitor = PeerMonitor(self.membership, identity, self.timings, keys=keys,
                                   on_change=self._changed, session=client.session)
        self.offers: dict[str, Offer] = {}
        self.failures: dict[str, str] = {}

    def _changed(self, _change: Change) -> None:
        self.found.set()

    async def find(self, wanted: str | None,
                   wait_s: float) -> tuple[Manifest, list[Holder]]:
        """The model `wanted` names (None: the one most peers hold) and its holders, within
        `wait_s`; `ModelError` saying what was seen."""
        static = StaticPeers(self.config.peers, self.config.peers_file or None,
                             self.monitor.on_discovery)
        mdns = None
        await self.monitor.start()
        try:
            await static.start()
            if self.config.mdns and self.lan_addresses:
                advert = PeerAdvert(node_id=self.identity.node_id, boot_id=self.identity.boot_id,
                                    protocol=self.identity.protocol, api_port=1,
                                    fingerprint=self.identity.fingerprint)
                mdns = MdnsDiscovery(advert, self.lan_addresses, self.lan_addresses,
                                     self.monitor.on_discovery, name=self.identity.name,
                                     advertise=False)
                try:
                    await mdns.start()
                except DiscoveryUnavailable as exc:
                    log.warning("mDNS unavailable (%s): looking among manual peers only",
                                exc.reason)
                    mdns = None
            async with asyncio.timeout(wait_s):
                return await self._gather(wanted)
        except TimeoutError:
            seen = ", ".join(f"{o.holder.node_id} ({', '.join(m.name for m in o.manifests) or 'none'})"
                             for o in self.offers.values())
            failed = "; ".join(f"{n}: {why}" for n, why in self.failures.items())
            what = f"--model {wanted}: no peer serves it" if wanted is not None \
                else f"--model {SWARM_MODEL}: no peer serves a model"
            raise ModelError(f"{what} within {wait_s:.0f} s "
                             f"(peers and their models: {seen or 'no peer found'}"
                             f"{'; failed: ' + failed if failed else ''})") from None
        finally:
            if mdns is not None:
                await mdns.close()
            await static.close()
            await self.monitor.close()

    async def _gather(self, wanted: str | None) -> tuple[Manifest, list[Holder]]:
        first_hit: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            fresh = [p for p in self.membership.routable()
                     if p.node_id not in self.offers and p.node_id not in self.failures]
            results = await asyncio.gather(*(self._ask(p.node_id, p.address.host,
                                                       p.advert.api_port) for p in fresh))
            for offer in results:
                if offer is not None:
                    self.offers[offer.holder.node_id] = offer
            hit = choose(wanted, self.offers.values())
            if hit is not None and first_hit is None:
                first_hit = loop.time()
            if first_hit is not None:
                left = first_hit + GRACE_S - loop.time()
                if left <= 0:
                    assert hit is not None
                    return hit
                self.found.clear()
                try:
                    async with asyncio.timeout(left):
                        await self.found.wait()
                except TimeoutError:
                    continue
            else:
                self.found.clear()
                if not [p for p in self.membership.routable() if p.node_id not in self.offers
                        and p.node_id not in self.failures]:
                    await self.found.wait()

    async def _ask(self, node_id: str, address: str, port: int) -> Offer | None:
        try:
            return await ask_models(self.client, Holder(node_id, address, port))
        except PeerError as exc:
            self.failures[node_id] = str(exc)
            log.warning("asking peer %s for its models failed: %s", node_id, exc)
            return None
