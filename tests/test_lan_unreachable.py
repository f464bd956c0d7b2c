"""A node whose own network goes away (Wi-Fi off, cable out) tells its peers' failures apart from
its own: real sockets in a namespace LAN (tests/netns.py). The prober in n2 watches a peer address
in n3 where nothing listens (refused: the peer's fault), then takes its own interface down (no
route: ENETUNREACH, our fault), and must report the network down only then.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import NetnsLan, netns_available

ROOT = Path(__file__).resolve().parent.parent
AVAILABLE, WHY = netns_available()
pytestmark = [pytest.mark.lan, pytest.mark.skipif(not AVAILABLE, reason=WHY)]

PROBER = r"""
import asyncio, json, subprocess, sys
sys.path.insert(0, sys.argv[1])
from network.discovery.events import Found
from network.federation.client import FederationClient
from network.membership.monitor import PeerMonitor
from network.membership.table import Membership, Timings
from network.trust.identity import NodeIdentity
from network.wire.txt import PeerAdvert
from tests.swarm_keys import RING


async def until(predicate, within_s):
    async with asyncio.timeout(within_s):
        while not predicate():
            await asyncio.sleep(0.01)


async def main():
    timings = Timings(interval_s=0.1, suspect_after_s=0.2)
    table = Membership("me", 1, RING.fingerprint, timings=timings)
    downs = []
    client = FederationClient(keys=RING)
    monitor = PeerMonitor(table, NodeIdentity("me", "boot", "me", RING.fingerprint), timings,
                          keys=RING, on_change=lambda change: None, session=client.session,
                          on_network_down=lambda: downs.append(table.get("peer").reason))
    await monitor.start()
    advert = PeerAdvert(node_id="peer", boot_id="b", protocol=1, api_port=17615,
                        fingerprint=RING.fingerprint)
    monitor.on_discovery(Found(advert, sys.argv[2]))
    await until(lambda: table.get("peer").misses >= 3, 10)
    refused = (table.get("peer").reason, len(downs))
    subprocess.run(["ip", "link", "set", "eth0", "down"], check=True)
    await until(lambda: downs, 10)
    await monitor.close()
    await client.close()
    print(json.dumps({"refused": refused, "down": downs[0]}))


asyncio.run(main())
"""


def test_only_our_own_network_going_down_reads_as_network_down():
    with NetnsLan(3) as lan:
        out = subprocess.run(lan.command(2, [sys.executable, "-c", PROBER, str(ROOT), lan.addr(3)]),
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    reason, downs = result["refused"]
    assert reason.startswith("connect failed") and downs == 0, result  # refused: the peer's fault
    assert "unreachable" in result["down"].lower(), result  # ENETUNREACH: our network is gone
