"""Choosing the LAN address to bind and advertise, from psutil-shaped data (no real interfaces)."""
from __future__ import annotations

import ipaddress
import socket
from collections import namedtuple

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.discovery.lan import (
    NoLanAddressError,
    choose_bind_address,
    is_virtual,
    lan_rank,
    private_ipv4_addresses,
)

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
