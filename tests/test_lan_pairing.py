"""Zero-config for real: fresh machines (empty cache folders, no key set) each run
`python main.py --federation` on a namespace LAN with real mDNS; one approval makes two of them
one swarm, a third that nobody approves never becomes a member and is never sent the key, an
expired request cannot be approved, and a flood of join requests is cut off.

Nothing here touches the host's network: every node, client and the sniffer run inside
namespaces the test builds (tests/netns.py).
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from network.trust.swarm_key import SwarmKey, key_path, read_key_file, solo_path
from tests.netns import NetnsLan, NodeOutput, netns_available
from tests.test_lan_swarm import ROOT, Node, client, client_bg, vote

AVAILABLE, WHY = netns_available()
pytestmark = [pytest.mark.lan, pytest.mark.slow, pytest.mark.skipif(not AVAILABLE, reason=WHY)]
TTL_S = 15.0  # join requests expire this fast here, so the expiry is seen within the test
LOCAL = "http://127.0.0.1:17615"


def joins(lan: NetnsLan, i: int) -> dict:
    reply = client(lan, i, "get", LOCAL, "/v1/federation/joins")
    assert reply["status"] == 200, reply
    return reply["body"]


def wait_for(what: str, probe, deadline_s: float = 30.0):
    """Poll `probe()` (each call runs a client process: about 0.3 s) until it returns a truthy
    value, under a deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = probe()
        if value:
            return value
    raise AssertionError(f"no {what} within {deadline_s} s")


def pending(lan: NetnsLan, host: int, node_id: str) -> list[dict]:
    return [r for r in joins(lan, host)["requests"]
            if r["node_id"] == node_id and r["state"] == "pending"]


def frames(path: Path) -> bytes:
    """Every frame the sniffer recorded, concatenated."""
    data, out, at = path.read_bytes(), bytearray(), 0
    while at + 4 <= len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        out += data[at + 4:at + 4 + size]
        at += 4 + size
    return bytes(out)


def encodings(key: SwarmKey) -> list[bytes]:
    """The ways a key could cross the wire in clear."""
    raw = key.secret
    return [raw, key.text.encode(), raw.hex().encode(), base64.b64encode(raw),
            base64.urlsafe_b64encode(raw).rstrip(b"=")]


def test_fresh_machines_form_one_swarm_with_one_approval(tmp_path):
    caches = {i: tmp_path / f"machine{i}" for i in (1, 2, 3)}
    env = {"LOCAL_SWARM_FEDERATION_JOIN_REQUEST_TTL_S": str(TTL_S)}
    with NetnsLan(3) as lan:
        sniffed = tmp_path / "n3.frames"
        sniffer = lan.spawn(3, [sys.executable, str(ROOT / "tests" / "sniff.py"), str(sniffed)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        NodeOutput(sniffer).expect('{"sniffing"', 10)
        nodes = {i: Node(lan, i, "--cache-dir", str(caches[i]), env=env) for i in (1, 2, 3)}
        for node in nodes.values():
            node.wait_ready()
        own = {i: read_key_file(key_path(caches[i]))[0] for i in (1, 2, 3)}
        assert len({k.fingerprint for k in own.values()}) == 3  # three lonely swarms at first

        # n2 and n3 ask n1 (the smallest new node id); n1 and n2 show the same code.
        code = wait_for("n2's request on n1", lambda: pending(lan, 1, "n2"))[0]["code"]
        shown = joins(lan, 2)["joining"]
        assert shown["code"] == code and shown["swarm"] == own[1].fingerprint, shown

        # One approval on n1 (what `peers approve n2 --code C` sends, after comparing the code
        # n2 shows); both list each other alive soon after (bench/pairing.py times it: 0.23-0.31 s
        # at load 5; the bound here only catches a wait for some slow retry, and holds on a loaded CI).
        watchers = [client_bg(lan, 1, "until", nodes[1].url, "n2", "alive", "10"),
                    client_bg(lan, 2, "until", nodes[2].url, "n1", "alive", "10")]
        for watcher in watchers:
            assert watcher.stdout is not None
            assert json.loads(watcher.stdout.readline())["watching"]
        approved = client(lan, 1, "post", LOCAL, "/v1/federation/approve",
                          json.dumps({"node_id": "n2", "code": code}))
        assert approved["status"] == 200 and approved["body"]["join"]["code"] == code, approved
        seen = [json.loads(w.communicate(timeout=30)[0].strip().splitlines()[-1])
                for w in watchers]
        assert all(s["ok"] for s in seen), seen
        delays = [s["at"] - approved["sent_at"] for s in seen]
        print(f"approval to membership: n1 sees n2 alive after {delays[0] * 1000:.0f} ms, "
              f"n2 sees n1 after {delays[1] * 1000:.0f} ms (the approval itself took "
              f"{(approved['answered_at'] - approved['sent_at']) * 1000:.0f} ms)")
        assert max(delays) < 3.0, delays
        assert read_key_file(key_path(caches[2]))[0] == own[1]
        assert os.stat(key_path(caches[2])).st_mode & 0o777 == 0o600
        assert not solo_path(key_path(caches[2])).exists()

        # They answer a vote together, asked of either. The plan leaves a member out of
        # consensus while it is saturated (the other's vote may have just filled it): ask
        # again until its heartbeat shows it free and the plan takes it back.
        for asker, other in ((1, "n2"), (2, "n1")):
            def joint(asker: int = asker, other: str = other) -> bool:
                reply = vote(lan, asker, nodes[asker].url, 4)
                assert reply["status"] == 200, reply
                return other in {c["source"] for c in reply["body"]["swarm"]["candidates"]}
            wait_for(f"a vote asked of n{asker} with a candidate of {other}", joint)

        # n3's request expires unapproved; approving it afterwards does nothing.
        first_n3 = wait_for("n3's request on n1", lambda: pending(lan, 1, "n3"))[0]["code"]
        wait_for("n3's first request to expire",
                 lambda: first_n3 not in {r["code"] for r in pending(lan, 1, "n3")}, 3 * TTL_S)
        late = subprocess.run(lan.command(1, [sys.executable, str(ROOT / "main.py"), "peers",
                                              "approve", "n3", "--code", first_n3]),
                              capture_output=True, text=True, timeout=60)
        assert late.returncode == 1 and "no join request from n3" in late.stderr + late.stdout, \
            late.stderr + late.stdout
        # Asking again (both members show it now), n3 still gets nothing without an approval.
        wait_for("n3's request on n2", lambda: pending(lan, 2, "n3"), 3 * TTL_S)

        # A flood of join requests from one address is cut off; n1 keeps serving.
        flood = client(lan, 3, "join_flood", nodes[1].url, own[1].fingerprint, "30")
        assert flood["statuses"].count(200) <= 5 and flood["statuses"][-20:] == [429] * 20, flood
        assert client(lan, 3, "get", nodes[1].url, "/health")["status"] == 200
        assert vote(lan, 1, nodes[1].url, 2)["status"] == 200

        # n3 never became a member and was never sent the key.
        peers = client(lan, 1, "get", nodes[1].url, "/v1/federation/peers")["body"]["data"]
        assert {r["node_id"]: r["state"] for r in peers}["n3"] == "foreign", peers
        assert read_key_file(key_path(caches[3])) == [own[3]]
        assert solo_path(key_path(caches[3])).exists()
        assert sniffer.stdin is not None
        sniffer.stdin.close()
        sniffer.wait(timeout=10)
        received = frames(sniffed)
        assert b"/v1/federation/join" in received or b'"member_key"' in received  # it did ask
        assert b'"member_key"' in received and b'"state":"pending"' in received
        for leak in encodings(own[1]):
            assert leak not in received
        assert b'"state":"approved"' not in received and b'"sealed":"' not in received.replace(
            b'"sealed":""', b"")
        assert any("asks to join; code" in line for line in nodes[1].lines)
