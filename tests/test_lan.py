"""Choosing the LAN address to bind and advertise, from psutil-shaped data (no real interfaces)."""
from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections import namedtuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.discovery.lan import (
    NoLanAddressError,
    choose_bind_address,
    default_route_source,
    is_virtual,
    lan_address,
    lan_rank,
    private_ipv4_addresses,
    read_interfaces,
)
from tests.netns import in_private_network

Addr = namedtuple("Addr", "family address netmask broadcast ptp")
Stats = namedtuple("Stats", "isup duplex speed mtu flags")


def v4(address: str) -> Addr:
    return Addr(socket.AF_INET, address, "255.255.255.0", None, None)


def v6(address: str) -> Addr:
    return Addr(socket.AF_INET6, address, None, None, None)


UP, DOWN = Stats(True, 0, 0, 1500, "up,running"), Stats(False, 0, 0, 1500, "up")


def test_rfc1918_first_then_link_local_and_never_public_or_loopback() -> None:
    addrs = {"lo": [v4("127.0.0.1"), v6("::1")],
             "eth0": [v4("169.254.7.7"), v4("203.0.113.5"), v6("fe80::1")],
             "wlan0": [v4("192.168.1.20")],
             "eth1": [v4("10.1.2.3"), v4("172.20.0.9")],
             "tailscale0": [v4("100.101.102.103")]}
    stats = dict.fromkeys(addrs, UP)
    assert private_ipv4_addresses(addrs, stats) == ["192.168.1.20", "10.1.2.3", "172.20.0.9",
                                                    "169.254.7.7"]


def test_down_interfaces_are_skipped_and_missing_stats_count_as_up() -> None:
    addrs = {"eth0": [v4("10.0.0.2")], "eth1": [v4("192.168.0.2")], "eth2": [v4("10.9.9.9")]}
    assert private_ipv4_addresses(addrs, {"eth0": DOWN, "eth1": UP}) == ["192.168.0.2",
                                                                         "10.9.9.9"]


def test_container_and_vpn_interfaces_come_last() -> None:
    addrs = {"docker0": [v4("172.17.0.1")], "br-5e1f": [v4("172.18.0.1")],
             "enp3s0": [v4("169.254.3.3")], "br0": [v4("192.168.50.2")]}
    assert private_ipv4_addresses(addrs, dict.fromkeys(addrs, UP)) == [
        "192.168.50.2", "169.254.3.3", "172.17.0.1", "172.18.0.1"]
    assert is_virtual("docker0") and is_virtual("wg0") and not is_virtual("br0")


def test_an_address_on_two_interfaces_is_listed_once() -> None:
    addrs = {"eth0": [v4("10.0.0.2")], "eth0:1": [v4("10.0.0.2")]}
    assert private_ipv4_addresses(addrs, {}) == ["10.0.0.2"]


@pytest.mark.parametrize(("address", "rank"), [
    ("10.0.0.1", 0), ("172.16.0.1", 0), ("172.31.255.254", 0), ("192.168.0.1", 0),
    ("169.254.1.1", 1), ("172.32.0.1", None), ("172.15.255.255", None), ("127.0.0.1", None),
    ("100.64.0.1", None), ("8.8.8.8", None), ("224.0.0.251", None), ("fe80::1", None),
    ("not an ip", None)])
def test_lan_rank(address: str, rank: int | None) -> None:
    assert lan_rank(address) == rank


LAN_NETS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                               "169.254.0.0/16")]


@given(st.ip_addresses(v=4))
def test_only_private_or_link_local_addresses_are_ever_returned(ip) -> None:
    found = private_ipv4_addresses({"eth0": [v4(str(ip))]}, {"eth0": UP})
    assert found == ([str(ip)] if any(ip in net for net in LAN_NETS) else [])
    assert not (found and (ip.is_loopback or ip.is_global or ip.is_multicast))


def test_explicit_host_wins() -> None:
    assert choose_bind_address("10.5.5.5", []) == "10.5.5.5"
    assert choose_bind_address("0.0.0.0", ["192.168.1.2"]) == "0.0.0.0"


def test_first_private_address_is_chosen() -> None:
    assert choose_bind_address(None, ["192.168.1.2", "169.254.1.1"]) == "192.168.1.2"


def test_no_lan_address_says_what_to_do() -> None:
    with pytest.raises(NoLanAddressError) as raised:
        choose_bind_address(None, [])
    assert "--host" in str(raised.value) and "--peer" in str(raised.value)


def test_the_real_machine_is_read_without_error() -> None:
    """Reading psutil here only lists addresses; nothing is bound or sent."""
    for address in private_ipv4_addresses():
        assert lan_rank(address) is not None


# ---- macOS interface names, the default route's address, guarded reads -----------------------

@pytest.mark.parametrize(("name", "virtual"), [
    ("en0", False), ("en1", False), ("bridge0", False),  # Wi-Fi, Ethernet, Thunderbolt Bridge
    ("bridge100", True), ("bridge101", True),  # Internet Sharing; UTM, Lima and Tart VMs
    ("vnic0", True), ("vnic1", True),  # Parallels
    ("utun0", True), ("utun4", True),  # VPNs, iCloud Private Relay
    ("awdl0", True), ("llw0", True),  # AirDrop, Sidecar
    ("bridge1", False), ("bridge10", False)])
def test_macos_interfaces_that_rarely_carry_the_lan_are_virtual(name: str, virtual: bool) -> None:
    assert is_virtual(name) is virtual


MAC = {"lo0": [v4("127.0.0.1")], "en0": [v4("192.168.1.23")], "bridge100": [v4("192.168.64.1")],
       "vnic0": [v4("10.211.55.2")], "utun3": [v4("10.8.0.5")], "en5": [v4("169.254.10.2")]}


def test_the_default_routes_address_is_the_one_to_bind() -> None:
    stats = dict.fromkeys(MAC, UP)
    assert lan_address(MAC, stats, "192.168.1.23") == "192.168.1.23"
    # Internet Sharing and VMs never win, even listed first
    shared = {"bridge100": MAC["bridge100"], "en0": MAC["en0"]}
    assert lan_address(shared, dict.fromkeys(shared, UP), None) == "192.168.1.23"
    # A full-tunnel VPN owns the default route: the LAN address is still the Wi-Fi's
    assert lan_address(MAC, stats, "10.8.0.5") == "192.168.1.23"
    # Two LANs: the default route's wins over the first listed
    two = {"en0": [v4("192.168.1.23")], "en7": [v4("10.0.0.40")]}
    assert lan_address(two, dict.fromkeys(two, UP), "10.0.0.40") == "10.0.0.40"
    # Wi-Fi down: what is left, in rank order; nothing at all: None
    assert lan_address(MAC, {**stats, "en0": DOWN}, "192.168.1.23") == "169.254.10.2"
    assert lan_address({"lo0": [v4("127.0.0.1")]}, {}, None) is None


@given(st.dictionaries(st.sampled_from(sorted(MAC)), st.lists(st.sampled_from(
    [v4(a.address) for entries in MAC.values() for a in entries]), max_size=2), max_size=6),
    st.none() | st.sampled_from([a.address for entries in MAC.values() for a in entries]))
def test_the_bound_address_is_always_one_the_machine_would_advertise(addrs, route) -> None:
    chosen = lan_address(addrs, {}, route)
    ranked = private_ipv4_addresses(addrs, {})
    assert (chosen is None) == (not ranked)
    assert chosen is None or chosen in ranked
    on_lan = {a.address for name, entries in addrs.items() if not is_virtual(name)
              for a in entries}
    if route in ranked and route in on_lan:
        assert chosen == route
    elif ranked:
        assert chosen == ranked[0]


def test_psutil_failing_around_sleep_reads_as_no_interfaces(monkeypatch) -> None:
    import errno

    import psutil

    def enxio() -> None:
        raise OSError(errno.ENXIO, "Device not configured")

    monkeypatch.setattr(psutil, "net_if_addrs", enxio)
    assert read_interfaces() == ({}, {})
    assert private_ipv4_addresses() == []
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: {"en0": [v4("192.168.1.23")]})
    monkeypatch.setattr(psutil, "net_if_stats", enxio)
    assert private_ipv4_addresses() == ["192.168.1.23"]  # no stats: counted up


def _route_scenario() -> None:
    """In a private namespace: a veth with two addresses and a default route, then none."""
    import json

    from network.discovery.lan import current_lan_address

    with_route = (default_route_source(), current_lan_address())
    subprocess.run(["ip", "route", "del", "default"], check=True)
    print("RESULT", json.dumps([with_route, (default_route_source(), current_lan_address())]))


def test_the_kernel_names_the_default_routes_address_in_a_private_namespace() -> None:
    with_route, without = in_private_network(
        "ip link set lo up && ip link add v0 type veth peer name v1 "
        "&& ip addr add 10.9.0.7/24 dev v0 && ip addr add 172.16.5.5/24 dev v1 "
        "&& ip link set v0 up && ip link set v1 up && ip route add default via 10.9.0.254",
        "from tests.test_lan import _route_scenario; _route_scenario()")
    # With a default route: its source address, whatever the order of the interfaces; without
    # one: no route source, and the first LAN address in the order the kernel lists them.
    assert with_route == ["10.9.0.7", "10.9.0.7"]
    assert without[0] is None and without[1] in ("10.9.0.7", "172.16.5.5")
