"""What the namespace-LAN benches share (bench/discovery.py, bench/failover.py).

Nodes are processes in the namespaces of a tests/netns.py `NetnsLan`, each serving on PORT with
its output in a log file. The root namespace cannot reach that LAN, so every HTTP client runs in
an agent process in namespace n1: the bench script itself started again with AGENT_FLAG, reading
one JSON command per stdin line and answering each with one line "RESULT {json}".
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PORT = 17615
AGENT_FLAG = "--agent"


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; nan when empty."""
    xs = sorted(v for v in values if v is not None and not math.isnan(v))
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def fmt(x: float | None, unit: str = " s") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}{unit}"


class PercentileTable:
    """A printed table of timings: n, p50, p95 and max per metric, names padded to `width`."""

    def __init__(self, width: int) -> None:
        self.width = width

    def header(self) -> None:
        print(f"{'metric':<{self.width}} {'n':>3} {'p50':>9} {'p95':>9} {'max':>9}")
        print("-" * (self.width + 34))

    def row(self, name: str, xs: list[float]) -> None:
        print(f"{name:<{self.width}} {len(xs):>3} {fmt(pct(xs, .5)):>9} {fmt(pct(xs, .95)):>9} "
              f"{fmt(max(xs) if xs else None):>9}")


def add_phase_options(parser: argparse.ArgumentParser, phases: tuple[str, ...]) -> None:
    """--only (a subset of `phases`) and --keep-logs."""
    parser.add_argument("--only", default=",".join(phases),
                        help=f"comma-separated phases of {', '.join(phases)}")
    parser.add_argument("--keep-logs", action="store_true", help="keep the node logs (else deleted)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the raw results as JSON (bench/report.py reads it)")


def chosen_phases(parser: argparse.ArgumentParser, args: argparse.Namespace,
                  phases: tuple[str, ...]) -> list[str]:
    """The phases --only names, in its order; an unknown one is a usage error."""
    chosen = [p.strip() for p in args.only.split(",") if p.strip()]
    if bad := set(chosen) - set(phases):
        parser.error(f"unknown phase(s) {', '.join(sorted(bad))}")
    return chosen


def finish(started: float, logdir: Path, keep: bool) -> None:
    """Print the total time; delete the node logs unless `keep` (then say where they are)."""
    if keep:
        print(f"\n(total {time.monotonic() - started:.0f} s; node logs in {logdir})")
    else:
        shutil.rmtree(logdir, ignore_errors=True)
        print(f"\n(total {time.monotonic() - started:.0f} s)")


def serve_agent(handle: Callable[[dict], Coroutine[Any, Any, dict]]) -> None:
    """The agent's side: serve commands from stdin until it closes; an exception in `handle`
    is reported to the bench as {"ok": false, "why": ...}."""
    print("AGENT READY", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            result = asyncio.run(handle(cmd))
        except Exception as exc:  # noqa: BLE001 (reported to the bench)
            result = {"ok": False, "why": f"{type(exc).__name__}: {exc}"}
        print("RESULT", json.dumps(result), flush=True)


class Agent:
    """The bench's side: the agent process (`script` run with AGENT_FLAG) in namespace n1."""

    def __init__(self, lan: Any, script: str) -> None:
        from tests.netns import NodeOutput

        self.proc = lan.spawn(1, [sys.executable, str(Path(script).resolve()), AGENT_FLAG],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.out = NodeOutput(self.proc)
        self.out.expect("AGENT READY", 30)

    def send(self, cmd: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def result(self, timeout_s: float) -> dict:
        return json.loads(self.out.expect("RESULT", timeout_s).split(" ", 1)[1])

    def ask(self, cmd: dict, timeout_s: float) -> dict:
        self.send(cmd)
        return self.result(timeout_s)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def scripted(latency_s: float) -> list[str]:
    """The argv (after python) of a bench/scripted_node.py node with one instance."""
    return [str(ROOT / "bench" / "scripted_node.py"), "--instances", "1",
            "--latency", str(latency_s)]


class NodeProcess:
    """One node process in namespace i, serving on PORT; how its log is written is the
    subclass's (it sets `proc` by `spawn`)."""

    proc: subprocess.Popen[Any]

    def __init__(self, lan: Any, i: int, node_id: str, logdir: Path) -> None:
        self.lan, self.i, self.node_id = lan, i, node_id
        self.url = f"http://{lan.addr(i)}:{PORT}"
        self.log_path = logdir / f"{node_id}.log"

    def spawn(self, argv: list[str], env: dict[str, str] | None = None,
              **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start `python argv --federation --node-id ID --port PORT` in namespace i."""
        return self.lan.spawn(
            self.i, [sys.executable, *argv, "--federation", "--node-id", self.node_id,
                     "--port", str(PORT)],
            env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1", **(env or {})},
            **popen_kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_process(self) -> None:
        """SIGKILL it; `killed_at` (wall) and `killed_mono` (monotonic) say when the signal left,
        which on a loaded machine may be well after the caller decided to kill."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.killed_at, self.killed_mono = time.time(), time.monotonic()
        self.proc.wait(timeout=10)

    def stop_process(self) -> None:
        """SIGTERM (graceful: mDNS goodbye), SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
