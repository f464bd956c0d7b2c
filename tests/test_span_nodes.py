"""Three real nodes started as a user starts them (`main.py --federation --spans`, manual peers on
loopback, no mDNS), each capped by --max-memory-gb so that none holds all 30 blocks: the span
map, the same greedy answer through spans as a node gives alone, the chain as a consensus
candidate, a node SIGKILLed mid-generation whose blocks a replica also holds (the generation
completes with the same tokens), the re-plan without it, and a clear 503 once blocks have no
server left."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from network.trust.swarm_key import SwarmKey
from tests.span_swarm import QUESTION, cache_dir, prepare

pytestmark = [pytest.mark.petals, pytest.mark.slow, pytest.mark.timeout(1200)]
ROOT = Path(__file__).resolve().parent.parent
CAP_GB = "0.75"  # 22 of SmolLM2's 30 blocks (14 MB each) after a span server's own 0.45 GB
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to cook."}]
_ROUTE = re.compile(r"Route found: (.*)")
_HOP = re.compile(r"(\d+):(\d+) via …(\w+)")


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


class Node:
    """One `main.py` process; a thread of ours reads its log (so the pipe never fills) and
    notes the URL it listens on."""

    def __init__(self, name: str, port: int, peers: list[int], cache: Path, key: SwarmKey,
                 *extra: str) -> None:
        self.name, self.cache = name, cache
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.url = ""
        self.process = subprocess.Popen(
            [sys.executable, "main.py", "--federation", "--spans", "--no-mdns",
             "--host", "127.0.0.1", "--port", str(port),
             *(a for p in peers for a in ("--peer", f"127.0.0.1:{p}")), "--node-id", name,
             "--cache-dir", str(cache), "--max-memory-gb", CAP_GB, "--backend", "transformers",
             *extra],
            cwd=ROOT, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env={**os.environ, "COLUMNS": "200", "LOCAL_SWARM_FEDERATION_SWARM_KEY": key.text})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            match = re.search(r"listening on (http://\S+)", line)
            if match and not self.url:
                self.url = match.group(1)
                self.listening.set()
        self.listening.set()

    def wait_listening(self, within_s: float = 240) -> str:
        assert self.listening.wait(within_s) and self.url, \
            f"{self.name} did not start:\n{''.join(self.lines[-40:])}"
        return self.url

    def spans(self) -> dict[str, Any]:
        return httpx.get(self.url + "/v1/federation/spans", timeout=10).json()

    def kill_machine(self) -> None:
        """SIGKILL the node and every span process it runs, at once: its machine is gone."""
        for pid in [self.process.pid, *processes_under(self.cache)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def wait_until(check, within_s: float, what: str):
    """Ask `check()` once a second until it returns something true (HTTP round trips to the
    nodes: their plan changes on its own schedule, there is nothing to wait on here)."""
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


def serving(node: Node, members: set[str]) -> dict[str, Any] | None:
    """The plan `node` follows once exactly `members` serve every block, each span server is
    named in it, and `node`'s own server is serving the span the plan gives it, under the id
    the plan names."""
    view = node.spans()
    plan, server = view["plan"], view["node"]["server"]
    if plan and not plan["gaps"] and server and server["state"] == "serving" \
            and {a["node_id"] for a in plan["assignments"]} == members \
            and all(a["peer_id"] for a in plan["assignments"]):
        mine = [a for a in plan["assignments"] if a["node_id"] == node.name]
        if mine and (mine[0]["start"], mine[0]["end"], mine[0]["peer_id"]) == \
                (server["start"], server["end"], server["peer_id"]):
            return plan
    return None


def ask(url: str, strategy: str, messages: list[dict[str, str]] = QUESTION,
        max_tokens: int = 24, n: int = 1, **extra: Any) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", timeout=300, json={
        "messages": messages, "temperature": 0, "max_tokens": max_tokens,
        "swarm": {"strategy": strategy, "n": n}, **extra})


def route_of(cache: Path) -> list[tuple[int, int, str]]:
    """The last route the node's span client logged: (start, end, end of a server's peer id)."""
    routes = _ROUTE.findall((cache / "span-logs" / "client.log").read_text())
    return [(int(a), int(b), tail) for a, b, tail in _HOP.findall(routes[-1])] if routes else []


def test_three_capped_nodes_serve_spans_and_a_replica_carries_a_running_generation(tmp_path):
    prepare()  # the span runtime and the model folder, built once (CI: setup.sh --spans)
    key = SwarmKey.generate()
    ports = [free_port() for _ in range(3)]
    names = ["node-a", "node-b", "node-c"]
    caches = [node_cache(tmp_path, n) for n in "abc"]
    nodes: list[Node] = []

    def start(i: int, *extra: str) -> Node:
        node = Node(names[i], ports[i], [p for p in ports if p != ports[i]], caches[i], key,
                    *extra)
        nodes.append(node)
        node.wait_listening()
        return node

    try:
        # One at a time, so the plan grows a -> a+b -> a+b+c: b and c then replicate 0:20 and
        # a (the coordinator, and the entry node below) serves 20:30.
        a = start(0, "--coordinator-priority", "10")
        wait_until(lambda: (p := a.spans()["plan"]) and p["assignments"][0]["peer_id"], 300,
                   "node-a serving its span alone")
        b = start(1)
        wait_until(lambda: serving(a, {"node-a", "node-b"}), 300, "node-a and node-b serving")
        c = start(2)
        plan = wait_until(lambda: serving(a, set(names)) and serving(b, set(names))
                          and serving(c, set(names)), 300, "the three nodes serving")
        spans = {x["node_id"]: (x["start"], x["end"]) for x in plan["assignments"]}
        assert all(end - start <= 22 for start, end in spans.values())  # the cap holds
        coordinator_plan = httpx.get(a.url + "/v1/federation/plan", timeout=10).json()
        assert coordinator_plan["coordinator"] == "node-a"
        assert coordinator_plan["spans"]["assignments"] == plan["assignments"]
        replicated = [n for n in ("node-b", "node-c") if all(
            any(o != n and s <= blk < e for o, (s, e) in spans.items())
            for blk in range(*spans[n]))]
        assert replicated, f"no node's blocks are all held by a replica: {spans}"

        alone = ask(a.url, "route", logprobs=True, top_logprobs=2).json()["choices"][0]
        through = ask(a.url, "spans", logprobs=True, top_logprobs=2)
        assert through.status_code == 200, (through.text, a.spans()["plan"],
                                            "".join(a.lines[-40:]))
        assert through.json()["swarm"]["strategy"] == "spans"
        spanned = through.json()["choices"][0]
        assert spanned["message"]["content"] == alone["message"]["content"]
        for ours, theirs in zip(spanned["logprobs"]["content"], alone["logprobs"]["content"],
                                strict=True):  # the same tokens, bytes and alternatives
            assert ours["bytes"] == theirs["bytes"]
            assert ours["logprob"] == pytest.approx(theirs["logprob"], abs=0.02)
            assert [t["bytes"] for t in ours["top_logprobs"]] == \
                [t["bytes"] for t in theirs["top_logprobs"]]
        # The chain is one more candidate: after one on each machine, spread over the sources.
        # best_of_n waits for every candidate; weighted_vote may stop early once three of four
        # agree, and the cancelled fourth would then carry "cancelled: decided early".
        voted = ask(a.url, "best_of_n", n=4).json()
        assert sorted(c["source"] for c in voted["swarm"]["candidates"]) == \
            ["local/0", "node-b", "node-c", "spans"], voted["swarm"]
        assert all(c["valid"] and not c["error"] for c in voted["swarm"]["candidates"]), \
            voted["swarm"]

        reference = ask(a.url, "spans", STORY, max_tokens=48).json()
        assert reference["usage"]["completion_tokens"] >= 32, reference  # long enough to cut
        expected = reference["choices"][0]["message"]["content"]
        chunks: list[str] = []
        victim = None
        with httpx.stream("POST", a.url + "/v1/chat/completions", timeout=300, json={
                "messages": STORY, "temperature": 0, "max_tokens": 48, "stream": True,
                "swarm": {"strategy": "spans"}}) as reply:
            for line in reply.iter_lines():
                if not line.startswith("data: {"):
                    continue
                event = json.loads(line[6:])
                assert "error" not in event, event
                delta = event["choices"][0].get("delta", {}).get("content")
                if delta:
                    chunks.append(delta)
                if len(chunks) == 8 and victim is None:
                    tails = {tail for _s, _e, tail in route_of(caches[0])}
                    on_route = [n for n in replicated
                                if any(x["peer_id"].endswith(t) for t in tails
                                       for x in plan["assignments"] if x["node_id"] == n)]
                    assert on_route, (route_of(caches[0]), plan["assignments"])
                    victim = nodes[names.index(on_route[0])]
                    victim.kill_machine()  # mid-generation, its blocks held by a replica
        assert victim is not None and "".join(chunks) == expected
        survivor = b if victim is c else c

        replanned = wait_until(lambda: serving(a, {"node-a", survivor.name}), 120,
                               "the coordinator re-planned without the lost node")
        assert victim.name not in {x["node_id"] for x in replanned["assignments"]}
        again = ask(a.url, "spans", STORY, max_tokens=48).json()
        assert again["choices"][0]["message"]["content"] == expected

        survivor.kill_machine()  # node-a alone holds 22 blocks: the rest has no server now
        wait_until(lambda: (p := a.spans()["plan"]) and p["gaps"], 120,
                   "a plan with blocks nobody serves")
        refused = ask(a.url, "spans")
        assert refused.status_code == 503
        assert "have no server" in refused.json()["error"]["message"]
    finally:
        for node in nodes:
            node.stop()
    wait_until(lambda: not processes_under(tmp_path), 30, "no span process left behind")
