"""How fast a node stops: Ctrl-C on an idle node, and SIGTERM with work in flight.

For each `--backend` (a real engine: transformers or llama.cpp with the embedded model), `--cycles`
times each:

- idle: `main.py --port 0` starts, answers one short chat request, gets SIGINT (Ctrl-C); the time
  from the signal to the process's exit is measured (tests/test_node_process.py checks the same
  stop with a bound loose enough for a loaded CI machine);
- busy: tests/engine_load.py's stress cycle, `--instances 2` with route, first_valid (losers
  cancelled), weighted_vote and a stream dropped midway in flight when SIGTERM arrives, glibc's
  heap checker on.

It prints the median and the worst stop of each, beside the goal (2 s, exit code 0), and the load
average before and after (the machine is shared: report it with the numbers).

  python bench/shutdown.py                                   # both engines, 5 cycles each
  python bench/shutdown.py --backend llamacpp --cycles 20 --no-busy
Every node listens on 127.0.0.1 only; every wait is bounded.
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.engine_load import EXIT_GOAL_S, cycle  # noqa: E402

START_TIMEOUT_S = 300.0  # loading a model on a busy machine


def idle_stop(backend: str) -> tuple[int | None, float]:
    """Start a node, ask it one thing, Ctrl-C it: (exit code, seconds from SIGINT to exit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCAL_SWARM_")}
    proc = subprocess.Popen([sys.executable, "main.py", "--port", "0", "--backend", backend],
                            cwd=ROOT, env={**env, "COLUMNS": "200", "PYTHONPATH": str(ROOT)},
                            text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            errors="replace")
    try:
        url = _url(proc)
        reply = httpx.post(url + "/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 3})
        reply.raise_for_status()
        began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            code: int | None = proc.wait(30)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _url(proc: subprocess.Popen[str]) -> str:
    """The node's URL from its log; the rest of its output is drained so it never blocks."""
    deadline = time.monotonic() + START_TIMEOUT_S
    seen: list[str] = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return found.group(1)
        if time.monotonic() > deadline:
            break
    raise RuntimeError("node did not start:\n" + "".join(seen[-30:]))


def report(label: str, runs: list[tuple[int | None, float]]) -> None:
    stops = sorted(took for _code, took in runs)
    bad = sum(1 for code, took in runs if code != 0 or took > EXIT_GOAL_S)
    print(f"  {label:<40} {len(runs)} cycles: median {statistics.median(stops):.2f} s, "
          f"max {stops[-1]:.2f} s (goal {EXIT_GOAL_S:.0f} s, exit 0); over the goal or not 0: {bad}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", action="append", choices=["transformers", "llamacpp"],
                        help="engine to stop (repeatable; default both)")
    parser.add_argument("--cycles", type=int, default=5, help="cycles of each kind (default 5)")
    parser.add_argument("--no-busy", action="store_true", help="only the idle Ctrl-C stop")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    for backend in args.backend or ["transformers", "llamacpp"]:
        print(backend, flush=True)
        report("Ctrl-C, idle, 1 instance", [idle_stop(backend) for _ in range(args.cycles)])
        if not args.no_busy:
            results = [cycle(backend, rounds=1, max_tokens=12) for _ in range(args.cycles)]
            report("SIGTERM, busy, 2 instances, heap checker",
                   [(r.returncode, r.exit_s) for r in results])
            crashes = sum(r.crashed or bool(r.heap_lines) for r in results)
            print(f"  {'':<40} crashes or heap errors: {crashes}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
