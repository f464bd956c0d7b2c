"""The addresses the monitor probes, kept from discovery events (mDNS and manual peers).

An mDNS record may list several addresses of one peer: each is a `Target` (network/membership/
target.py) with its own prober task, started by the monitor through `spawn`; a manual address
learns its node id from its first answer. An address no discovery source names any more is
dropped and its prober cancelled (kept in `retired` until it has finished).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from network.discovery.events import AddressAdded, AddressRemoved, DiscoveryEvent, Found, Gone
from network.membership.ledger import BeatLedger
from network.membership.table import Change, Membership
from network.membership.target import Target
from network.wire.address import Address

log = logging.getLogger(__name__)

MAX_ADDRESSES = 8  # addresses probed per peer (an mDNS record may list any number)


class AddressBook:
    """Every probed address (`targets`), kept from discovery events; `spawn(target)` starts a
    target's prober (None before the monitor starts)."""

    def __init__(self, membership: Membership, ledger: BeatLedger,
                 emit: Callable[[list[Change]], None]) -> None:
        self._membership = membership
        self._ledger = ledger
        self._emit = emit
        self.targets: dict[Address, Target] = {}
        self.spawn: Callable[[Target], None] | None = None
        self.retired: set[asyncio.Task[None]] = set()  # cancelled probers not yet finished

    def unanswered(self) -> dict[str, str]:
        """Manual addresses that never answered, with the last reason (for `main.py peers`)."""
        return {str(t.address): t.failure for t in self.targets.values()
                if t.static and t.node_id is None and t.failure}

    def on_discovery(self, event: DiscoveryEvent, now: float) -> None:
        """Apply one discovery event (mDNS or manual); a new or updated peer is probed at once."""
        if isinstance(event, Found):
            self._found(event, now)
        elif isinstance(event, Gone):
            self._emit(self._membership.removed(event.node_id))
            self._ledger.forget(event.node_id)
            self.forget(event.node_id)
        elif isinstance(event, AddressAdded):
            self.add_address(event.address.host, event.address.port)
        elif isinstance(event, AddressRemoved):
            self.remove_address(event.address.host, event.address.port)

    def follow(self, node_id: str, host: str, now: float) -> None:
        """A met peer's beat came from `host`: when that is another address we know for it (it
        moved, e.g. a new DHCP lease or another network, and mDNS still lists the old address
        too), use it from now on. Beats would otherwise keep the peer alive at an address that
        no longer reaches it, and spare that address the probe that would find it gone."""
        peer = self._membership.get(node_id)
        if peer is None or peer.address.host == host:
            return
        target = self.targets.get(Address(host, peer.address.port))
        if target is None or target.node_id != node_id:
            return  # not an address it announced: beats may leave by another interface
        log.info("peer %s now beats from %s (was %s): using that address", node_id,
                 target.address, peer.address)
        self._emit(self._membership.discovered(peer.advert, target.address, now))

    def network_down(self) -> bool:
        """True when every known peer's last probe found this node's own network down."""
        known = [t for t in self.targets.values() if t.node_id is not None]
        return bool(known) and all(t.unreachable for t in known)

    def forget(self, node_id: str) -> None:
        """Stop probing the mDNS addresses of `node_id` (it said goodbye, or was evicted)."""
        for target in [t for t in self.targets.values() if t.node_id == node_id and t.mdns]:
            target.mdns = False
            self._drop_if_unused(target)

    def _found(self, event: Found, now: float) -> None:
        """Track the peer at the address it answers on (else its first) and probe all of them."""
        node_id, port = event.advert.node_id, event.advert.api_port
        hosts = (event.addresses or (event.address,))[:MAX_ADDRESSES]
        addresses = [Address(host, port) for host in hosts]
        peer = self._membership.get(node_id)
        keep = next((a for a in addresses if peer is not None and a == peer.address),
                    addresses[0])
        self._emit(self._membership.discovered(event.advert, keep, now))
        for other in list(self.targets.values()):
            if other.mdns and other.node_id == node_id and other.address not in addresses:
                other.mdns = False
                self._drop_if_unused(other)
        if self._membership.get(node_id) is None:
            return  # ignored: our own id, or the table is full
        for address in addresses:
            target = self._target(address, node_id)
            target.mdns, target.node_id = True, node_id
            target.wake.set()

    def add_address(self, host: str, port: int) -> None:
        """Probe a manual peer address; its first heartbeat tells us who it is."""
        target = self._target(Address(host, port), None)
        target.static = True
        target.wake.set()

    def remove_address(self, host: str, port: int) -> None:
        """Stop probing a manual address; a peer known only through it is forgotten."""
        target = self.targets.get(Address(host, port))
        if target is None or not target.static:
            return
        target.static = False
        peer = self._membership.get(target.node_id) if target.node_id else None
        elsewhere = any(t is not target and t.node_id == target.node_id
                        for t in self.targets.values())
        if peer is not None and peer.address == target.address and not target.mdns \
                and not elsewhere:
            self._emit(self._membership.removed(peer.node_id))
        self._drop_if_unused(target)

    def _target(self, address: Address, node_id: str | None) -> Target:
        target = self.targets.get(address)
        if target is None:
            target = self.targets[address] = Target(address, node_id)
            if self.spawn is not None:
                self.spawn(target)
        return target

    def _drop_if_unused(self, target: Target) -> None:
        if target.static or target.mdns:
            return
        del self.targets[target.address]
        task, target.task = target.task, None
        if task is not None and not task.done():
            task.cancel()
            self.retired.add(task)
            task.add_done_callback(self.retired.discard)
