"""One node's membership in the swarm: owns mDNS, manual peers, heartbeats and the peer client."""
from __future__ import annotations

import asyncio
import logging
import platform
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from network.coordination.driver import Coordinator
from network.coordination.election import Candidate, ElectionState
from network.coordination.store import ElectionStore
from network.coordination.tether import Tether
from network.discovery.events import DiscoveryUnavailable
from network.discovery.interfaces import InterfaceWatcher
from network.discovery.manual import StaticPeers
from network.discovery.mdns import MdnsDiscovery
from network.discovery.privacy import firewall_hint, read_firewall
from network.federation.changes import Changes
from network.federation.client import FederationClient
from network.federation.sources import RemoteSource
from network.membership.beacon import Beacon
from network.membership.monitor import PeerMonitor
from network.membership.table import Change, ChangeKind, Membership, Peer, PeerState, Timings
from network.tasks import stop_tasks
from network.trust.identity import NodeIdentity
from network.trust.swarm_key import KeyRing
from network.wire.election import PlanMember
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert
from swarm.engine.pool import InstancePool
from swarm.node.config import FederationConfig

log = logging.getLogger(__name__)

_QUIET = {ChangeKind.SUSPECTED}  # a busy peer may flicker suspect; not worth a line
_ALERT = {ChangeKind.SUSPECTED, ChangeKind.LEFT}  # changes our heartbeat's suspects show


class Federation:
    """Discovery + liveness for one node; `remotes()` are the peers consensus may ask now. It is
    the `Member` the federation routes serve (network/federation/server.py)."""

    def __init__(self, config: FederationConfig, identity: NodeIdentity, *, keys: KeyRing,
                 pool: InstancePool, addresses: list[str], hardware: str, bench_score: float,
                 on_change: Callable[[Change], None] | None = None,
                 election_store: ElectionStore | None = None,
                 approved: Callable[[str], bool] | None = None,
                 rebind: Callable[[str], Awaitable[None]] | None = None) -> None:
        """`addresses`: the one LAN address bound and advertised. `rebind(address)`, when given,
        moves the API there; the node then follows its machine to a new LAN address (a wake on
        another network, a new DHCP lease): rebind, then re-announce on mDNS from there."""
        if identity.fingerprint != keys.fingerprint:
            raise ValueError("the identity must advertise the current swarm key's fingerprint")
        self.config = config
        self.identity = identity
        self.keys = keys
        self.pool = pool
        self.addresses = addresses
        self.bench_score = bench_score
        self._rebind = rebind
        self.timings = Timings(interval_s=config.heartbeat_interval_s,
                               suspect_after_s=max(1.0, 2 * config.heartbeat_interval_s))
        self.membership = Membership(identity.node_id, identity.protocol, identity.fingerprint,
                                     self_boot_id=identity.boot_id, timings=self.timings,
                                     also_accepted=keys.accepted, approved=approved)
        self.client = FederationClient(connect_timeout_s=self.timings.connect_timeout_s,
                                       request_timeout_s=self.timings.request_timeout_s,
                                       keys=keys, key_for=self.peer_fingerprint)
        self.changed = Changes()  # bumped on every membership or election change
        self._on_change = on_change
        self._listeners: list[Callable[[Change], None]] = []
        self.pairing_state: Callable[[], str] = str  # what the advert says of pairing ("" off)
        self.monitor = PeerMonitor(self.membership, identity, self.timings, keys=keys,
                                   on_change=self._changed, session=self.client.session,
                                   on_network_down=self._network_down)
        self.beacon: Beacon | None = None  # started with the heartbeat to push (`start`)
        self.static = StaticPeers(config.peers, config.peers_file or None,
                                  self.monitor.on_discovery)
        self._advert_fields: dict[str, Any] = {"model_id": pool.model_id,
                                               "instances": len(pool.instances),
                                               "hardware": hardware, "score": bench_score}
        me = Candidate(identity.node_id, config.coordinator_priority if config.coordinator else None,
                       bench_score)
        self.coordinator = Coordinator(
            me, self.membership, self.client, self.local_member, store=election_store,
            on_change=self._election_changed, tether=Tether(self.client, self.monitor.check))
        self.mdns: MdnsDiscovery | None = None
        self.interface_watch: InterfaceWatcher | None = None  # runs while mDNS does
        self.ignored: dict[str, str] = {}  # peers not tracked (duplicate id, full table)
        self._api_port = 0
        self._reannouncing: asyncio.Task[None] | None = None
        self._announced_term = self.coordinator.state.term
        self.mdns_reason = "turned off (--no-mdns)" if not config.mdns else "not started"
        self.firewall = ""  # what macOS's firewall means for peers reaching us ("" off or unknown)

    @property
    def api_port(self) -> int:
        """The port this node's API listens on (0 until `start`)."""
        return self._api_port

    @property
    def election(self) -> Coordinator:
        """The coordinator election this node takes part in."""
        return self.coordinator

    def local_member(self) -> PlanMember:
        """This node as a member of the coordinator's plan: its score and its pool's load now."""
        return PlanMember(node_id=self.identity.node_id, score=self.bench_score,
                          load=self.pool.load(), queue_depth=self.pool.queue_depth(),
                          instances=len(self.pool.instances), weight=1.0)

    def advert(self, api_port: int) -> PeerAdvert:
        """The TXT record this node advertises."""
        return PeerAdvert(node_id=self.identity.node_id, boot_id=self.identity.boot_id,
                          protocol=self.identity.protocol, api_port=api_port,
                          fingerprint=self.identity.fingerprint,
                          term=self.coordinator.state.term, priority=self.coordinator.me.priority,
                          pairing=self.pairing_state(), **self._advert_fields)

    async def start(self, api_port: int, heartbeat: Callable[[], Heartbeat] | None = None,
                    hosts: tuple[str, ...] = ()) -> None:
        """Start heartbeats, manual peers and (unless turned off) mDNS; mDNS failures degrade.
        With `heartbeat` (this node's, as its health route serves it), push it to every peer
        each interval over UDP on `api_port` of `hosts` (the API's listening addresses)."""
        self._api_port = api_port
        system = platform.system()
        self.firewall = firewall_hint(system, await asyncio.to_thread(read_firewall, system)) or ""
        if self.firewall:
            log.warning("%s", self.firewall)
        await self.monitor.start()
        if heartbeat is not None and hosts:
            self.beacon = await Beacon(self.identity.node_id, self.keys, self.timings.interval_s,
                                       heartbeat=heartbeat, targets=self.monitor.beat_targets,
                                       on_beat=self.monitor.on_beat).started(hosts, api_port)
            if self.beacon is not None:  # an instance turned busy or idle: tell peers at once,
                self.pool.watch(self.beacon.poke)  # not up to an interval later
        await self.coordinator.start()
        await self.static.start()
        if self.config.mdns:
            await self._start_mdns()
        if self.mdns is None and self._rebind is None:
            return
        # A Wi-Fi drop or a re-plugged cable leaves zeroconf deaf and silent: re-announce then;
        # a new LAN address: move there.
        self.interface_watch = InterfaceWatcher(
            self.addresses, self._refresh_mdns,
            on_moved=self._moved if self._rebind is not None else None)
        await self.interface_watch.start()

    async def _start_mdns(self) -> None:
        """Advertise and browse on our address; a failure degrades to manual peers, with why."""
        self.mdns = MdnsDiscovery(self.advert(self._api_port), self.addresses, self.addresses,
                                  self.monitor.on_discovery, name=self.identity.name)
        try:
            await self.mdns.start()
            self.mdns_reason = ""
        except DiscoveryUnavailable as exc:
            self.mdns = None
            self.mdns_reason = exc.reason
            log.warning("mDNS discovery unavailable (%s); using manual peers only "
                        "(--peer HOST:PORT or --peers-file)", exc.reason)

    async def _refresh_mdns(self, reason: str) -> None:
        """Rescan mDNS interfaces and re-announce (the interface watcher's callback); start mDNS
        if it could not start before (no interface yet, after a wake or a move)."""
        if self.mdns is not None:
            await self.mdns.refresh_interfaces()
        elif self.config.mdns:
            await self._start_mdns()

    async def _moved(self, address: str) -> None:
        """The machine's LAN address is now `address`: move the API there, then mDNS (zeroconf is
        pinned to its interfaces, so it restarts there: peers see the node's new address)."""
        assert self._rebind is not None
        await self._rebind(address)
        previous, self.addresses = self.addresses, [address]
        if self.beacon is not None:  # heartbeat datagrams move with the API
            await self.beacon.move(previous[0] if previous else "", address)
        if not self.config.mdns:
            return
        await stop_tasks(self._reannouncing)
        old, self.mdns = self.mdns, None
        if old is not None:
            await old.close()  # the goodbye may not leave the old address: peers re-find us anyway
        await self._start_mdns()

    def _changed(self, change: Change) -> None:
        if change.kind in _QUIET:
            log.debug("peer %s %s: %s", change.node_id, change.kind.value, change.reason)
        else:
            address = change.peer.address if change.peer else "?"
            log.info("peer %s %s (%s): %s", change.node_id, change.kind.value, address,
                     change.reason)
        if change.kind is ChangeKind.IGNORED and len(self.ignored) < 32:
            self.ignored[change.node_id] = change.reason
        if change.kind is ChangeKind.RECOVERED and change.previous is PeerState.DEAD and self.mdns:
            # After a cut link heals, mDNS never re-finds us on its own: announce again.
            self._reannounce()
        self.coordinator.poke()
        if change.kind in _ALERT and self.beacon is not None:
            self.beacon.poke()  # our heartbeat now names a suspect: tell everyone at once
        self.changed.bump()
        if self._on_change is not None:
            self._on_change(change)
        for listener in self._listeners:
            listener(change)

    def subscribe(self, listener: Callable[[Change], None]) -> None:
        """Call `listener` with every change of the peer table (after logging it)."""
        self._listeners.append(listener)

    def rekey(self, keys: KeyRing) -> None:
        """Use `keys` from now on (this node joined a swarm): sign, verify heartbeats and
        advertise with them, and look at every foreign peer afresh."""
        self.keys = keys
        self.identity = replace(self.identity, fingerprint=keys.fingerprint)
        self.client.keys = keys
        self.monitor.rekey(keys)
        if self.beacon is not None:
            self.beacon.keys = keys
        self.readvertise()
        self.coordinator.poke()
        self.changed.bump()

    def readvertise(self) -> None:
        """Announce the advert again (its swarm key or pairing state changed)."""
        self._reannounce()

    def _network_down(self) -> None:
        """No peer reachable from our side (Wi-Fi off, cable out, a wake): sit out elections a while."""
        self.coordinator.rest("this node's network is unreachable")

    def _election_changed(self, state: ElectionState) -> None:
        """A new term or coordinator: refresh views and the TXT record's term."""
        self.changed.bump()
        if state.term != self._announced_term:
            self._reannounce()

    def _reannounce(self) -> None:
        if self.mdns is None or (self._reannouncing and not self._reannouncing.done()):
            return
        self._reannouncing = asyncio.get_running_loop().create_task(
            self._announce(self.mdns), name="mdns-reannounce")

    async def _announce(self, mdns: MdnsDiscovery) -> None:
        """Re-announce until the advert announced is the current one (its term, key or pairing
        state may move meanwhile)."""
        while True:
            advert = self.advert(self._api_port)
            self._announced_term = advert.term
            await mdns.update(advert)
            if self.advert(self._api_port) == advert:
                return

    def peer_fingerprint(self, node_id: str) -> str | None:
        """The swarm-key fingerprint a peer last showed (heartbeat, else advert), to sign for it."""
        peer = self.membership.get(node_id)
        if peer is None:
            return None
        return peer.heartbeat.swarm if peer.heartbeat is not None else peer.advert.fingerprint

    def peers(self) -> tuple[Peer, ...]:
        """Every tracked peer, for views."""
        return self.membership.peers()

    def remotes(self) -> list[RemoteSource]:
        """Alive, compatible peers that can vote, as consensus sources."""
        return [s for p in self.membership.routable()
                if (s := RemoteSource.from_peer(p, self.client))]

    def discovery_summary(self) -> str:
        """One line for the startup panel: where mDNS runs, or why only manual peers are used."""
        if self.mdns is not None:
            return "mDNS on " + ", ".join(self.addresses)
        return f"manual peers only; mDNS {self.mdns_reason}"

    def discovery_status(self) -> Mapping[str, Any]:
        """What `main.py peers` needs to explain a missing peer."""
        return {"mdns": self.mdns is not None, "mdns_reason": self.mdns_reason,
                "addresses": self.addresses, "manual": [str(a) for a in self.static.addresses()],
                "unanswered": self.monitor.unanswered(), "ignored": dict(self.ignored),
                "firewall": self.firewall}

    async def close(self) -> None:
        """Say goodbye on mDNS first, then stop probing and close the peer client."""
        await self.coordinator.close()
        await stop_tasks(self._reannouncing)
        if self.interface_watch is not None:
            await self.interface_watch.close()
            self.interface_watch = None
        if self.mdns is not None:
            await self.mdns.close()
        await self.static.close()
        if self.beacon is not None:
            await self.beacon.close()
        await self.monitor.close()
        await self.client.close()
