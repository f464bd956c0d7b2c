"""A node whose machine gets a new LAN address (a Mac waking on another network, a new DHCP
lease) moves its API there, re-announces, and its peers use it at the new address: real node
processes, real mDNS and TCP, in namespaces this test builds (tests/netns.py)."""
from __future__ import annotations

import time

import pytest

from tests.netns import NetnsLan, netns_available
from tests.test_lan_swarm import Node, client

AVAILABLE, WHY = netns_available()
pytestmark = [pytest.mark.lan, pytest.mark.slow, pytest.mark.skipif(not AVAILABLE, reason=WHY)]
NEW = "10.77.0.101"


def peer_row(lan: NetnsLan, i: int, url: str, node_id: str) -> dict[str, object]:
    rows = client(lan, i, "get", url, "/v1/federation/peers")["body"]["data"]
    return next((r for r in rows if r["node_id"] == node_id), {})


def test_a_node_follows_its_new_address_and_peers_follow_it() -> None:
    with NetnsLan(2) as lan:
        a, b = Node(lan, 1), Node(lan, 2)
        a.wait_ready()
        b.wait_ready()
        assert client(lan, 2, "until", b.url, "n1", "alive", "15")["ok"]
        assert any(f"mDNS on {lan.addr(1)}" in line for line in a.lines), a.lines

        moved_at = time.monotonic()
        # A new lease: the old address goes (deleting a primary address also deletes the others
        # of its subnet on Linux), then the new one comes.
        lan.ip(1, "addr", "del", f"{lan.addr(1)}/24", "dev", "eth0")
        lan.ip(1, "addr", "add", f"{NEW}/24", "dev", "eth0")
        deadline = moved_at + 30
        row: dict[str, object] = {}
        while time.monotonic() < deadline:  # each look is one client process: no fixed sleep
            row = peer_row(lan, 2, b.url, "n1")
            if row.get("address") == NEW and row.get("state") == "alive":
                break
        assert row.get("address") == NEW and row.get("state") == "alive", (
            row, "".join(a.lines), "".join(b.lines))
        followed_s = time.monotonic() - moved_at
        assert any(f"moved from {lan.addr(1)} to {NEW}" in line for line in a.lines), a.lines
        assert followed_s < 20, followed_s

        # Served at the new address, seen from both sides.
        reply = client(lan, 2, "chat", f"http://{NEW}:17615", '{"messages": [{"role": "user", '
                       '"content": "Hi"}], "max_tokens": 2}')
        assert reply["status"] == 200, reply
        assert client(lan, 1, "until", f"http://{NEW}:17615", "n2", "alive", "10")["ok"]
