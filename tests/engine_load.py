"""One stress cycle on a real engine: `main.py --instances 2` under glibc's heap checker, mixed
route, first_valid (which cancels its losers), weighted_vote and streams dropped midway, then
SIGTERM with work still in flight. Shared by tests/test_engine_stress.py and bench/soak.py.

A cycle fails on a crash (a signal or a non-zero exit), on any heap-checker or fatal-error line
in the node's output, or when SIGTERM takes longer than `EXIT_BOUND_S` to end the process (the
goal, `EXIT_GOAL_S`, is what bench/shutdown.py reports against: timings are measured in benches).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
EXIT_GOAL_S = 2.0  # SIGTERM to exit: the goal, reported by the benches
EXIT_BOUND_S = 10.0  # ... and what a test asserts on a machine shared with other runs
MALLOC_DEBUG = ("/usr/lib/x86_64-linux-gnu/libc_malloc_debug.so.0",
                "/usr/lib/aarch64-linux-gnu/libc_malloc_debug.so.0", "/lib64/libc_malloc_debug.so.0")
HEAP_ERROR = re.compile(r"malloc\(\)|free\(\)|malloc_consolidate|corrupted|double free|"
                        r"Segmentation fault|Fatal Python error|Aborted|unaligned", re.IGNORECASE)
ASK = [{"role": "user", "content": "Tell me a story about a dragon and a castle."}]
SHORT = [{"role": "user", "content": "Reply with one word: yes or no."}]


def heap_checker_env() -> dict[str, str]:
    """glibc's heap consistency checks (MALLOC_CHECK_=3 aborts on the first error); glibc 2.34+
    needs libc_malloc_debug preloaded for them. Empty where that library does not exist."""
    lib = next((p for p in MALLOC_DEBUG if os.path.exists(p)), None)
    return {} if lib is None else {"LD_PRELOAD": lib, "MALLOC_CHECK_": "3"}


@dataclass
class CycleResult:
    """What one cycle saw."""

    returncode: int | None
    exit_s: float
    heap_lines: list[str]
    statuses: dict[str, int] = field(default_factory=dict)
    output_tail: str = ""
    errors: list[str] = field(default_factory=list)  # bodies of 5xx answers

    @property
    def crashed(self) -> bool:
        return self.returncode != 0

    @property
    def ok(self) -> bool:
        return not self.crashed and not self.heap_lines and self.exit_s <= EXIT_BOUND_S


class Load:
    """Client threads against one node; counts statuses (a dropped stream counts as "dropped")."""

    def __init__(self, url: str, max_tokens: int) -> None:
        self.url = url
        self.max_tokens = max_tokens
        self.statuses: dict[str, int] = {}
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def _count(self, key: str) -> None:
        with self._lock:
            self.statuses[key] = self.statuses.get(key, 0) + 1

    def _post(self, body: dict) -> None:
        kind = body.get("swarm", {}).get("strategy", "route")
        try:
            response = httpx.post(self.url + "/v1/chat/completions", json=body, timeout=120)
            self._count(f"{kind} {response.status_code}")
            if response.status_code >= 500:
                self.errors.append(response.text[:300])
        except httpx.HTTPError as exc:
            self._count(f"{kind} {type(exc).__name__}")

    def route(self) -> None:
        self._post({"messages": ASK, "max_tokens": self.max_tokens // 2})

    def first_valid(self) -> None:
        # A short answer: the first candidate to finish wins, the others are cancelled mid-decode.
        self._post({"messages": SHORT, "max_tokens": 40,
                    "swarm": {"strategy": "first_valid", "n": 4}})

    def weighted_vote(self) -> None:
        self._post({"messages": ASK, "max_tokens": self.max_tokens // 2,
                    "swarm": {"strategy": "weighted_vote", "n": 3}})

    def dropped_stream(self) -> None:
        body = {"messages": ASK, "max_tokens": self.max_tokens * 4, "stream": True}
        try:
            with httpx.stream("POST", self.url + "/v1/chat/completions", json=body,
                              timeout=120) as response:
                for k, _line in enumerate(response.iter_lines()):
                    if k >= 6:
                        break  # the client goes away midway
            self._count("stream dropped")
        except httpx.HTTPError as exc:
            self._count(f"stream {type(exc).__name__}")

    def round(self) -> None:
        """One of each, side by side."""
        threads = [threading.Thread(target=f) for f in (self.route, self.first_valid,
                                                         self.weighted_vote, self.dropped_stream)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)


def start_node(backend: str, extra_env: dict[str, str], cache_dir: str | None = None,
               instances: int = 2) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`main.py` on 127.0.0.1 (ephemeral port); its URL and the list its output is pumped into."""
    args = [sys.executable, "main.py", "--port", "0", "--backend", backend,
            "--instances", str(instances), "--log-level", "warning"]
    if cache_dir:
        args += ["--cache-dir", cache_dir]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCAL_SWARM_")}
    env.update(COLUMNS="200", PYTHONPATH=str(ROOT), **extra_env)
    proc = subprocess.Popen(args, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, errors="replace")
    lines: list[str] = []
    url = None
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line)
        found = re.search(r"OpenAI URL\s+(http://\S+)/v1", line)
        if found:
            url = found.group(1)
            break
    if url is None:
        proc.wait(10)
        raise RuntimeError("node did not start:\n" + "".join(lines[-40:]))
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    return proc, url, lines


def cycle(backend: str, *, rounds: int = 2, max_tokens: int = 24, heap_check: bool = True,
          cache_dir: str | None = None) -> CycleResult:
    """Start a node, run `rounds` rounds of mixed load, SIGTERM it mid-round; see the module doc."""
    proc, url, lines = start_node(backend, heap_checker_env() if heap_check else {}, cache_dir)
    load = Load(url, max_tokens)
    try:
        for _ in range(rounds):
            load.round()
        inflight = [threading.Thread(target=f) for f in (load.first_valid, load.dropped_stream,
                                                          load.weighted_vote)]
        for t in inflight:
            t.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _busy(url):
            time.sleep(0.02)  # a condition under a deadline: both instances generating
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = proc.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        took = time.monotonic() - began
        for t in inflight:
            t.join(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = "".join(lines)
    heap = [ln.strip() for ln in lines if HEAP_ERROR.search(ln)]
    return CycleResult(code, took, heap, load.statuses, text[-3000:], load.errors)


def _busy(url: str) -> bool:
    """True once both instances are generating (so SIGTERM lands on running work)."""
    try:
        health = httpx.get(url + "/health", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    return float(health.get("load", 0.0)) >= 1.0
