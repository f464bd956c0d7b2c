"""macOS Local Network privacy: "No route to host" to a LAN peer from macOS says what to allow;
the Application Firewall, when on, is named at start and in `main.py peers`."""
from __future__ import annotations

import errno
import logging

import pytest

from network.discovery import privacy
from network.discovery.privacy import (
    DARWIN_EHOSTUNREACH,
    FIREWALL_BLOCK_ALL_HINT,
    FIREWALL_ON_HINT,
    LOCAL_NETWORK_HINT,
    firewall_hint,
    local_network_hint,
    read_firewall,
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
    caplog.set_level(logging.WARNING, "network.membership.probe")
    blocked = OSError(DARWIN_EHOSTUNREACH, "No route to host")
    for _ in range(3):
        reason = monitor.probe._connect_failed(blocked, Address("192.168.1.20", 17615))
    assert reason == f"connect failed (No route to host): {LOCAL_NETWORK_HINT}"
    assert len(caplog.records) == 1 and "192.168.1.20:17615" in caplog.messages[0]
    refused = monitor.probe._connect_failed(OSError(61, "Connection refused"),
                                            Address("192.168.1.20", 17615))
    assert refused == "connect failed (Connection refused)"


def test_main_py_peers_puts_the_hint_first():
    row = {"node_id": "n2", "self": False, "state": "dead", "address": "192.168.1.20",
           "api_port": 17615, "last_seen_s_ago": None,
           "reason": f"connect failed (No route to host): {LOCAL_NETWORK_HINT}"}
    hints = missing_peer_hints([row], {"mdns": True})
    assert hints[0].startswith("macOS blocks this node's connections to the LAN")
    assert LOCAL_NETWORK_HINT in hints[0]


# What /usr/libexec/ApplicationFirewall/socketfilterfw answers (macOS 13 to 15).
FW_OFF = "Firewall is disabled. (State = 0)\nFirewall has block all state set to disabled.\n"
FW_ON = "Firewall is enabled. (State = 1)\nFirewall has block all state set to disabled.\n"
FW_BLOCK_ALL = "Firewall is enabled. (State = 1)\nFirewall has block all state set to enabled.\n"


@pytest.mark.parametrize(("system", "answers", "hint"), [
    ("Darwin", FW_OFF, None),
    ("Darwin", FW_ON, FIREWALL_ON_HINT),
    ("Darwin", FW_BLOCK_ALL, FIREWALL_BLOCK_ALL_HINT),
    ("Darwin", "Firewall is enabled. (State = 2)\n", FIREWALL_BLOCK_ALL_HINT),  # older macOS
    ("Darwin", "", None),  # could not ask
    ("Linux", FW_ON, None),
])
def test_the_firewall_is_named_only_when_on(system, answers, hint):
    assert firewall_hint(system, answers) == hint


def test_the_firewall_is_asked_on_macos_only_and_a_failure_is_no_answer(tmp_path, monkeypatch):
    """A stand-in socketfilterfw (the real one exists only on a Mac) answers each question."""
    tool = tmp_path / "socketfilterfw"
    tool.write_text('#!/bin/sh\ncase "$1" in\n'
                    '  --getglobalstate) echo "Firewall is enabled. (State = 1)" ;;\n'
                    '  --getblockall) echo "Firewall has block all state set to enabled." ;;\n'
                    'esac\n')
    tool.chmod(0o755)
    monkeypatch.setattr(privacy, "SOCKETFILTERFW", str(tool))
    assert firewall_hint("Darwin", read_firewall("Darwin")) == FIREWALL_BLOCK_ALL_HINT
    assert read_firewall("Linux") == ""
    tool.chmod(0o644)  # cannot be run: no answer, no exception
    assert read_firewall("Darwin") == ""
    monkeypatch.setattr(privacy, "SOCKETFILTERFW", str(tmp_path / "missing"))
    assert read_firewall("Darwin") == ""


def test_main_py_peers_names_the_firewall():
    hints = missing_peer_hints([], {"mdns": True, "firewall": FIREWALL_ON_HINT})
    assert hints[0] == FIREWALL_ON_HINT + "."
    assert FIREWALL_ON_HINT + "." not in missing_peer_hints([], {"mdns": True, "firewall": ""})
