"""Two real nodes started as a user starts them (`main.py --federation --spans`, manual peers on
loopback, no mDNS), each capped by --max-memory-gb so that neither holds all 30 blocks: the span
map, the same greedy answer through spans as a node gives alone, and a re-plan when one leaves."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from network.trust.swarm_key import SwarmKey
from tests.span_swarm import QUESTION, cache_dir, prepare
from tests.test_node_process import wait_for_url

pytestmark = [pytest.mark.petals, pytest.mark.slow, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parent.parent
CAP_GB = "0.75"  # 22 of SmolLM2's 30 blocks (14 MB each) after a span server's own 0.45 GB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node_cache(tmp: Path, name: str) -> Path:
    """A node's own cache folder sharing the built span runtime and converted models."""
    folder = tmp / name
    folder.mkdir()
    shared = cache_dir()
    for item in ("span-runtime", "models"):
        (folder / item).symlink_to(shared / item)
    return folder


def start_node(name: str, port: int, peer: int, cache: Path, key: SwarmKey,
               *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "main.py", "--federation", "--spans", "--no-mdns", "--host", "127.0.0.1",
         "--port", str(port), "--peer", f"127.0.0.1:{peer}", "--node-id", name,
         "--cache-dir", str(cache), "--max-memory-gb", CAP_GB, "--backend", "transformers",
         *extra],
        cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200", "LOCAL_SWARM_FEDERATION_SWARM_KEY": key.text})


def wait_until(check, within_s: float, what: str):
    """Ask `check()` once a second until it returns something true (HTTP round trips to the
    node: its plan changes on its own schedule, there is nothing to wait on here)."""
    deadline = time.monotonic() + within_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"{what} within {within_s:.0f} s; last: {last}")


def processes_under(folder: Path) -> list[int]:
    """Pids of the processes whose command line names `folder` (a node's span processes)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def span_map(url: str):
    view = httpx.get(url + "/v1/federation/spans", timeout=10).json()
    plan = view["plan"]
    server = view["node"]["server"]
    if plan and not plan["gaps"] and server and server["state"] == "serving" \
            and all(a["peer_id"] for a in plan["assignments"]):  # each server named in the plan
        return plan
    return None


def ask(url: str, strategy: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=300, json={
        "messages": QUESTION, "temperature": 0, "max_tokens": 24,
        "swarm": {"strategy": strategy}})


def test_two_capped_nodes_serve_the_model_as_spans_and_replan_when_one_leaves(tmp_path):
    prepare()  # the span runtime and the model folder, built once (CI: setup.sh --spans)
    key = SwarmKey.generate()
    ports = free_port(), free_port()
    caches = [node_cache(tmp_path, "a"), node_cache(tmp_path, "b")]
    nodes = [start_node("node-a", ports[0], ports[1], caches[0], key,
                        "--coordinator-priority", "10"),
             start_node("node-b", ports[1], ports[0], caches[1], key)]
    try:
        urls = [wait_for_url(node) for node in nodes]
        plan = wait_until(lambda: span_map(urls[0]) and span_map(urls[1]), 300,
                          "both nodes serving their spans")
        spans = {a["node_id"]: (a["start"], a["end"]) for a in plan["assignments"]}
        assert set(spans) == {"node-a", "node-b"}
        assert all(end - start <= 22 for start, end in spans.values())  # the cap holds
        covered = sorted(b for start, end in spans.values() for b in range(start, end))
        assert set(covered) == set(range(30))
        leader = httpx.get(urls[0] + "/v1/federation/peers", timeout=10).json()["coordinator"]
        lead, other = (0, 1) if leader == "node-a" else (1, 0)
        coordinator_plan = httpx.get(urls[lead] + "/v1/federation/plan", timeout=10).json()
        assert coordinator_plan["spans"]["assignments"] == plan["assignments"]

        alone = ask(urls[other], "route").json()
        through = ask(urls[other], "spans")
        assert through.status_code == 200, through.text
        body = through.json()
        assert body["swarm"]["strategy"] == "spans"
        assert body["choices"][0]["message"]["content"] == \
            alone["choices"][0]["message"]["content"]

        nodes[other].send_signal(signal.SIGKILL)  # a node is gone, its span server after it
        nodes[other].wait(timeout=30)
        wait_until(lambda: not processes_under(caches[other]), 30,
                   "the killed node's span server and client gone with it")
        replanned = wait_until(
            lambda: (v := httpx.get(urls[lead] + "/v1/federation/spans", timeout=10).json())
            ["plan"] and [a["node_id"] for a in v["plan"]["assignments"]] == [leader]
            and v["plan"], 60, "the coordinator re-planned without the lost node")
        assert replanned["gaps"]  # 22 blocks fit the survivor: the rest has no server now
        refused = ask(urls[lead], "spans")
        assert refused.status_code == 503
        assert "have no server" in refused.json()["error"]["message"]
    finally:
        for node in nodes:
            node.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
    wait_until(lambda: not processes_under(tmp_path), 30, "no span process left behind")
