"""macOS Local Network privacy: "No route to host" to a LAN peer from macOS says what to allow."""
from __future__ import annotations

import errno
import logging

import pytest

from network.discovery.privacy import (
    DARWIN_EHOSTUNREACH,
    LOCAL_NETWORK_HINT,
    local_network_hint,
)
from network.wire.address import Address
from swarm.node.peer_view import missing_peer_hints


@pytest.mark.parametrize(("system", "number", "host", "hinted"), [
    ("Darwin", DARWIN_EHOSTUNREACH, "192.168.1.20", True),
    ("Darwin", DARWIN_EHOSTUNREACH, "10.0.0.4", True),
    ("Darwin", DARWIN_EHOSTUNREACH, "169.254.3.3", True),
    ("Darwin", DARWIN_EHOSTUNREACH, "100.101.1.2", False),  # Tailscale: not Local Network
    ("Darwin", DARWIN_EHOSTUNREACH, "example.org", False),
    ("Darwin", 61, "192.168.1.20", False),  # ECONNREFUSED on macOS: the peer is not listening
    ("Darwin", None, "192.168.1.20", False),
    ("Linux", 113, "192.168.1.20", False),  # EHOSTUNREACH on Linux: a real routing problem
    ("Linux", DARWIN_EHOSTUNREACH, "192.168.1.20", False),
])
def test_only_no_route_to_a_lan_host_on_macos_is_local_network_privacy(system, number, host,
                                                                       hinted):
    assert (local_network_hint(system, number, host) == LOCAL_NETWORK_HINT) is hinted


def test_the_hint_names_where_to_allow_it():
    assert "System Settings → Privacy & Security → Local Network" in LOCAL_NETWORK_HINT
    if errno.EHOSTUNREACH == DARWIN_EHOSTUNREACH:  # on a Mac, the constant is the platform's own
        assert local_network_hint("Darwin", errno.EHOSTUNREACH, "10.0.0.2") == LOCAL_NETWORK_HINT


async def test_a_probe_that_meets_it_says_so_and_warns_once(monkeypatch, caplog):
    """The monitor's wording of a failed connect (the errno and system a Mac gives)."""
    import platform

    from network.federation.client import FederationClient
    from tests.test_peer_monitor import RING, Changes, monitor_for

    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    client = FederationClient(keys=RING)
    monitor, _membership = monitor_for(Changes(), client)
    await client.close()
    caplog.set_level(logging.WARNING, "network.membership.monitor")
    blocked = OSError(DARWIN_EHOSTUNREACH, "No route to host")
    for _ in range(3):
        reason = monitor._connect_failed(blocked, Address("192.168.1.20", 17615))
    assert reason == f"connect failed (No route to host): {LOCAL_NETWORK_HINT}"
    assert len(caplog.records) == 1 and "192.168.1.20:17615" in caplog.messages[0]
    refused = monitor._connect_failed(OSError(61, "Connection refused"),
                                      Address("192.168.1.20", 17615))
    assert refused == "connect failed (Connection refused)"


def test_main_py_peers_puts_the_hint_first():
    row = {"node_id": "n2", "self": False, "state": "dead", "address": "192.168.1.20",
           "api_port": 17615, "last_seen_s_ago": None,
           "reason": f"connect failed (No route to host): {LOCAL_NETWORK_HINT}"}
    hints = missing_peer_hints([row], {"mdns": True})
    assert hints[0].startswith("macOS blocks this node's connections to the LAN")
    assert LOCAL_NETWORK_HINT in hints[0]
