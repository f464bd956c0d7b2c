"""What discovery reports: a peer found or gone over mDNS, a manual address added or removed, and the
error raised when mDNS cannot run on this machine."""
from __future__ import annotations

from dataclasses import dataclass

from network.wire.address import Address
from network.wire.txt import PeerAdvert
from swarm.errors import ConfigError


@dataclass(frozen=True)
class Found:
    """mDNS resolved a peer (Added or Updated): its advert and first IPv4 address (all in order)."""

    advert: PeerAdvert
    address: str
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gone:
    """A peer said goodbye over mDNS."""

    node_id: str


@dataclass(frozen=True)
class AddressAdded:
    """A manual peer address appeared (command line, config or peers file)."""

    address: Address


@dataclass(frozen=True)
class AddressRemoved:
    """A manual peer address was taken out of the peers file."""

    address: Address


DiscoveryEvent = Found | Gone | AddressAdded | AddressRemoved


class DiscoveryUnavailable(ConfigError, RuntimeError):
    """mDNS cannot run here; `reason` says why, and the message says to use manual peers."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"mDNS discovery unavailable: {reason}; "
                         "list peers with --peer HOST:PORT (and --no-mdns) instead")
