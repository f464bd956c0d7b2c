"""Real node processes (`main.py --federation`) on a namespace LAN: real mDNS, real TCP.

Nothing here touches the host's network: every node and client runs inside namespaces the test
builds (tests/netns.py), and the namespaces die with the test.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.netns import NetnsLan, netns_available

ROOT = Path(__file__).resolve().parent.parent
CLIENT = str(ROOT / "tests" / "lan_client.py")
AVAILABLE, WHY = netns_available()
pytestmark = [pytest.mark.lan, pytest.mark.slow, pytest.mark.skipif(not AVAILABLE, reason=WHY)]
ASK = [{"role": "user", "content": "What is the capital of France?"}]


class Node:
    """One `python main.py --federation` process in namespace i, with its output kept."""

    def __init__(self, lan: NetnsLan, i: int, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.i = i
        self.url = f"http://{lan.addr(i)}:17615"
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = lan.spawn(i, [sys.executable, str(ROOT / "main.py"), "--federation",
                                  "--node-id", f"n{i}", "--instances", "1", "--threads", "1",
                                  *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "COLUMNS": "200", **(env or {})})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line)
            if re.search(r"listening on http://", line):
                self.ready.set()

    def wait_ready(self, timeout: float = 120) -> None:
        if not self.ready.wait(timeout):
            raise AssertionError(f"node n{self.i} did not start:\n" + "".join(self.lines))


def client(lan: NetnsLan, i: int, *args: str, timeout: float = 150) -> dict:
    """Run tests/lan_client.py in namespace i and return its last JSON line."""
    out = subprocess.run(lan.command(i, [sys.executable, CLIENT, *args]), capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def client_bg(lan: NetnsLan, i: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(lan.command(i, [sys.executable, CLIENT, *args]),
                            stdout=subprocess.PIPE, text=True)


def vote(lan: NetnsLan, i: int, url: str, n: int) -> dict:
    body = {"messages": ASK, "max_tokens": 12, "seed": 3,
            "swarm": {"strategy": "weighted_vote", "n": n}}
    return client(lan, i, "chat", url, json.dumps(body))


def test_three_nodes_discover_vote_together_and_survive_a_crash_and_a_cut():
    with NetnsLan(3) as lan:
        nodes = [Node(lan, i) for i in (1, 2, 3)]
        for node in nodes:
            node.wait_ready()
        url = nodes[0].url
        # Discovery: every node lists the others alive (measured from the last node's start).
        for i in (1, 2, 3):
            for other in {1, 2, 3} - {i}:
                seen = client(lan, i, "until", nodes[i - 1].url, f"n{other}", "alive", "10")
                assert seen["ok"], (i, other, seen)

        # A weighted vote on node 1 draws candidates from all three machines.
        reply = vote(lan, 1, url, 6)
        assert reply["status"] == 200, reply
        sources = {c["source"] for c in reply["body"]["swarm"]["candidates"]}
        assert {"local/0", "n2", "n3"} <= sources, sources

        # SIGKILL node 3: it leaves routing within 1.5 s; requests keep succeeding.
        watcher = client_bg(lan, 1, "until", url, "n3", "suspect,dead,absent", "10")
        assert json.loads(watcher.stdout.readline())["watching"]
        killed_at = time.time()
        nodes[2].proc.send_signal(signal.SIGKILL)
        gone = json.loads(watcher.communicate(timeout=30)[0].strip().splitlines()[-1])
        assert gone["ok"], gone
        assert gone["at"] - killed_at < 1.5, gone["at"] - killed_at
        after = vote(lan, 1, url, 3)
        assert after["status"] == 200, after
        assert "n3" not in {c["source"] for c in after["body"]["swarm"]["candidates"]}

        # Cut node 2's cable: detected; heal it: alive again.
        lan.cut(2)
        assert client(lan, 1, "until", url, "n2", "suspect,dead", "10")["ok"]
        lan.heal(2)
        assert client(lan, 1, "until", url, "n2", "alive", "10")["ok"]
        assert vote(lan, 1, url, 2)["status"] == 200


def test_manual_peers_work_with_mdns_off():
    with NetnsLan(2) as lan:
        a = Node(lan, 1, "--no-mdns", "--peer", f"{lan.addr(2)}:17615")
        b = Node(lan, 2, "--no-mdns", "--peer", f"{lan.addr(1)}:17615")
        a.wait_ready()
        b.wait_ready()
        assert client(lan, 1, "until", a.url, "n2", "alive", "10")["ok"]
        assert client(lan, 2, "until", b.url, "n1", "alive", "10")["ok"]
        reply = vote(lan, 1, a.url, 2)
        assert reply["status"] == 200
        assert "n2" in {c["source"] for c in reply["body"]["swarm"]["candidates"]}
        assert not any("mDNS on" in line for line in a.lines)
