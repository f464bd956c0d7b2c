"""Model sharing between real node processes on a namespace LAN (real mDNS, real TCP): node 2
starts with no model, fetches the one nodes 1 and 3 serve, and finishes from node 3 after node 1
is killed mid-transfer; then it serves that model, hash-equal, and `main.py models` lists it."""
from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time

import pytest

from swarm.models.store import EMBEDDED_ID, EMBEDDED_SHA256, embedded_model
from tests.netns import NetnsLan, netns_available
from tests.test_lan_swarm import ROOT, Node, client

AVAILABLE, WHY = netns_available()
pytestmark = [pytest.mark.lan, pytest.mark.slow, pytest.mark.skipif(not AVAILABLE, reason=WHY)]
KEY = "lsk_" + "A" * 43  # one swarm for the three nodes (a test key, never a real one)


def _wait_line(node: Node, pattern: str, timeout: float) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        for line in node.lines[seen:]:
            match = re.search(pattern, line)
            if match:
                return match
        seen = len(node.lines)
        if node.proc.poll() is not None:
            break
        node.ready.wait(0.2)  # woken early when the node reports ready
    raise AssertionError(f"no {pattern!r} from n{node.i}:\n" + "".join(node.lines[-40:]))


def test_a_node_without_the_model_fetches_it_and_survives_losing_a_source(tmp_path):
    try:
        embedded_model()
    except Exception as exc:  # noqa: BLE001 (skip with the reason)
        pytest.skip(f"embedded model not installed: {exc}")
    common = ["--quant", "file", "--swarm-key", KEY]
    with NetnsLan(3) as lan:
        n1 = Node(lan, 1, "--cache-dir", str(tmp_path / "n1"), *common)
        n3 = Node(lan, 3, "--cache-dir", str(tmp_path / "n3"), *common)
        n1.wait_ready()
        n3.wait_ready()
        # 98 MB at 15 MB/s: about 6.5 s, long enough to kill node 1 in the middle.
        n2 = Node(lan, 2, "--cache-dir", str(tmp_path / "n2"), "--model", EMBEDDED_ID,
                  "--fetch-limit-mb-s", "15", *common)
        _wait_line(n2, r"fetching \S+ \(gguf.*from (n1, n3|n3, n1)", 60)
        _wait_line(n2, r"fetching \S+: [2-5]\d%", 60)
        n1.proc.send_signal(signal.SIGKILL)
        _wait_line(n2, r"fetching \S+: 100%", 120)
        n2.wait_ready(180)
        served = client(lan, 2, "get", n2.url, "/v1/models")
        assert EMBEDDED_ID in json.dumps(served["body"]), served
        stored = list((tmp_path / "n2" / "store" / "models").rglob("*.gguf"))
        assert len(stored) == 1
        assert hashlib.sha256(stored[0].read_bytes()).hexdigest() == EMBEDDED_SHA256
        listing = subprocess.run(
            lan.command(2, [sys.executable, str(ROOT / "main.py"), "models", "--federation",
                            "--cache-dir", str(tmp_path / "n2"), "--swarm-key", KEY]),
            capture_output=True, text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin"})
        assert listing.returncode == 0, listing.stderr
        assert EMBEDDED_ID in listing.stdout and "n2" in listing.stdout and "n3" in listing.stdout
