"""This machine's LAN address: the one to bind and advertise (pure ranking), and guarded reads.

One address, the one bound: the source address of the default route when it is a private address
on an up, non-virtual interface (the network this machine actually uses: Wi-Fi or Ethernet), else
the best-ranked private address. The kernel's route lookup is asked with a UDP `connect`, which
sends nothing. Names that rarely carry the LAN (container and VM bridges, VPN tunnels, Apple's
AirDrop and Internet Sharing links) rank last: see `is_virtual`.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import psutil

from swarm.errors import ConfigError

log = logging.getLogger(__name__)

IfAddrs = Mapping[str, Iterable[Any]]  # psutil.net_if_addrs(): name -> [snicaddr]
IfStats = Mapping[str, Any]  # psutil.net_if_stats(): name -> snicstats (has .isup)

_PRIVATE = tuple(ipaddress.IPv4Network(net) for net in ("10.0.0.0/8", "172.16.0.0/12",
                                                         "192.168.0.0/16"))
_LINK_LOCAL = ipaddress.IPv4Network("169.254.0.0/16")
# Interfaces that rarely carry the LAN: container and VM bridges, VPN tunnels. Ranked last, kept.
# macOS: utun (VPNs, iCloud Private Relay), awdl/llw (AirDrop, Sidecar), vnic (Parallels),
# bridge100 and up (Internet Sharing, and the VMs of UTM, Lima, Tart). Not bridge0: that is the
# Thunderbolt Bridge, a real cable between Macs.
_VIRTUAL_PREFIXES = ("docker", "br-", "veth", "virbr", "vmnet", "vboxnet", "cni", "flannel",
                     "podman", "lxcbr", "lxdbr", "tun", "tap", "wg", "tailscale", "zt", "utun",
                     "awdl", "llw", "vnic")
_VIRTUAL_BRIDGE = re.compile(r"bridge1\d\d+")
ROUTE_PROBE = "192.0.2.1"  # TEST-NET-1 (RFC 5737): any address off-link takes the default route


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
    name = interface.lower()
    return name.startswith(_VIRTUAL_PREFIXES) or _VIRTUAL_BRIDGE.fullmatch(name) is not None


def read_interfaces() -> tuple[IfAddrs, IfStats]:
    """psutil's interface addresses and stats; what cannot be read is empty (never raises).

    psutil on macOS can raise (ENXIO) while interfaces come and go around sleep: no addresses
    then means "try again", and missing stats count as up.
    """
    addrs: IfAddrs = {}
    stats: IfStats = {}
    try:
        addrs = psutil.net_if_addrs()
        stats = psutil.net_if_stats()
    except (OSError, RuntimeError) as exc:
        log.debug("cannot read the network interfaces: %s", exc)
    return addrs, stats


def default_route_source(probe: str = ROUTE_PROBE) -> str | None:
    """The source address the kernel would use on the default route; None without one.

    A UDP socket's `connect` only looks the route up: no packet leaves the machine.
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def _ranked(if_addrs: IfAddrs, if_stats: IfStats) -> list[tuple[bool, int, int, str, str]]:
    """(virtual, rank, order, address, interface) of every LAN address on an up interface, best
    first; an address on several interfaces is listed once, at its best."""
    found: list[tuple[bool, int, int, str, str]] = []
    for index, (interface, entries) in enumerate(if_addrs.items()):
        stats = if_stats.get(interface)
        if stats is not None and not stats.isup:
            continue
        for entry in entries:
            rank = lan_rank(entry.address) if entry.family == socket.AF_INET else None
            if rank is not None:
                found.append((is_virtual(interface), rank, index, entry.address, interface))
    seen: set[str] = set()
    ranked = []
    for item in sorted(found):
        if item[3] not in seen:
            seen.add(item[3])
            ranked.append(item)
    return ranked


def private_ipv4_addresses(if_addrs: IfAddrs | None = None,
                           if_stats: IfStats | None = None) -> list[str]:
    """Private IPv4 addresses of up interfaces: RFC 1918 first, link-local after, virtual last.

    `if_addrs` and `if_stats` are what `psutil.net_if_addrs()` and `psutil.net_if_stats()` return
    (read from psutil when omitted). Loopback, public, CGNAT (100.64/10) and IPv6 addresses are
    never returned; an interface whose stats say it is down is skipped, one without stats is kept.
    """
    if if_addrs is None or if_stats is None:
        read_addrs, read_stats = read_interfaces()
        if_addrs = read_addrs if if_addrs is None else if_addrs
        if_stats = read_stats if if_stats is None else if_stats
    return [address for *_, address, _interface in _ranked(if_addrs, if_stats)]


def lan_address(if_addrs: IfAddrs, if_stats: IfStats, route_source: str | None) -> str | None:
    """The one address to bind and advertise (module doc), or None when there is none."""
    ranked = _ranked(if_addrs, if_stats)
    for virtual, _rank, _order, address, _interface in ranked:
        if address == route_source and not virtual:
            return address
    return ranked[0][3] if ranked else None


def current_lan_address() -> str | None:
    """`lan_address` of this machine now."""
    addrs, stats = read_interfaces()
    return lan_address(addrs, stats, default_route_source())


def choose_bind_address(explicit_host: str | None, candidates: list[str] | None = None) -> str:
    """`explicit_host` when given, else this machine's LAN address (the first of `candidates`
    when given); else `NoLanAddressError`."""
    if explicit_host:
        return explicit_host
    found = current_lan_address() if candidates is None else next(iter(candidates), None)
    if not found:
        raise NoLanAddressError()
    return found


def bind_addresses(host: str, federated: bool, host_explicit: bool) -> tuple[str, list[str]]:
    """The address the API binds, and the LAN address mDNS advertises (the one bound): `host` and
    none without --federation; with it, `host` when set explicitly, else this machine's LAN
    address (its default route's, `lan_address`)."""
    if not federated:
        return host, []
    bound = choose_bind_address(host if host_explicit else None)
    return bound, [bound]
