"""This machine's LAN addresses: which private IPv4 address to bind and advertise (pure ranking)."""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import psutil

from swarm.errors import ConfigError

_PRIVATE = tuple(ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12",
                                                         "192.168.0.0/16"))
_LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
# Interfaces that rarely carry the LAN: container and VM bridges, VPN tunnels. Ranked last, kept.
_VIRTUAL_PREFIXES = ("docker", "br-", "veth", "virbr", "vmnet", "vboxnet", "cni", "flannel",
                     "podman", "lxcbr", "lxdbr", "tun", "tap", "wg", "tailscale", "zt", "utun")


class NoLanAddressError(ConfigError, RuntimeError):
    """No up interface has a private IPv4 address, so --federation cannot pick one by itself."""

    def __init__(self, detail: str = "") -> None:
        message = ("no private LAN address found on any up interface (10/8, 172.16/12, "
                   "192.168/16 or 169.254/16); pass --host ADDR to choose the address to bind, "
                   "or use --peer HOST:PORT (with --no-mdns) where this network has no LAN")
        super().__init__(f"{message}: {detail}" if detail else message)


def lan_rank(address: str) -> int | None:
    """0 for a private RFC 1918 IPv4 address, 1 for link-local, None for anything else."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return None
    if any(ip in net for net in _PRIVATE):
        return 0
    if ip in _LINK_LOCAL:
        return 1
    return None


def is_virtual(interface: str) -> bool:
    """True for container, VM and VPN interface names (a LAN is rarely behind them)."""
    return interface.lower().startswith(_VIRTUAL_PREFIXES)


def private_ipv4_addresses(if_addrs: Mapping[str, Iterable[Any]] | None = None,
                           if_stats: Mapping[str, Any] | None = None) -> list[str]:
    """Private IPv4 addresses of up interfaces: RFC 1918 first, link-local after, virtual last.

    `if_addrs` and `if_stats` are what `psutil.net_if_addrs()` and `psutil.net_if_stats()` return
    (read from psutil when omitted). Loopback, public, CGNAT (100.64/10) and IPv6 addresses are
    never returned; an interface whose stats say it is down is skipped, one without stats is kept.
    """
    if if_addrs is None:
        if_addrs = psutil.net_if_addrs()
    if if_stats is None:
        if_stats = psutil.net_if_stats()
    ranked: list[tuple[bool, int, int, str]] = []
    seen: set[str] = set()
    for index, (interface, entries) in enumerate(if_addrs.items()):
        stats = if_stats.get(interface)
        if stats is not None and not stats.isup:
            continue
        for entry in entries:
            if entry.family != socket.AF_INET or entry.address in seen:
                continue
            rank = lan_rank(entry.address)
            if rank is not None:
                seen.add(entry.address)
                ranked.append((is_virtual(interface), rank, index, entry.address))
    return [address for *_, address in sorted(ranked)]


def choose_bind_address(explicit_host: str | None, candidates: list[str] | None = None) -> str:
    """`explicit_host` when given, else the first private LAN address; else `NoLanAddressError`."""
    if explicit_host:
        return explicit_host
    found = private_ipv4_addresses() if candidates is None else candidates
    if not found:
        raise NoLanAddressError()
    return found[0]


def bind_addresses(host: str, federated: bool, host_explicit: bool) -> tuple[str, list[str]]:
    """The address the API binds, and the LAN addresses mDNS advertises: `host` and none without
    --federation; with it, `host` when set explicitly (advertised alone), else the first private
    LAN address (advertising every one found)."""
    if not federated:
        return host, []
    bound = choose_bind_address(host if host_explicit else None)
    return bound, [bound] if host_explicit else (private_ipv4_addresses() or [bound])
