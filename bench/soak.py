"""Soak: bounded concurrent load on a small swarm on loopback, with one node killed and restarted.

Starts `--nodes` real node processes (`main.serve`) on 127.0.0.1, each on its own port (macOS
loopback has no 127.0.0.2), with --federation --no-mdns and manual peers (no multicast leaves this
machine), all with one swarm key. With `--engine scripted` (default) their instances are scripted
(no model is loaded); with `--engine llamacpp` each node runs the embedded model on llama.cpp under
glibc's heap checker. `--clients` concurrent clients then send a mix of requests for `--duration`
seconds: route, streamed and consensus (weighted_vote over 3 candidates, drawn from the whole
swarm); with llama.cpp also first_valid over 4 (which cancels its losers) and streams the client
drops midway (which cancel their generation). At 40 % of the run node 1 is killed (SIGKILL) and
restarted `--down` seconds later. A client whose node fails (refused, reset, 5xx) sends the same
request to the next node; a 429 waits its Retry-After and tries again (bounded).

It prints requests sent, answered, failed (goal: 0, as a node always lives), how many answers
needed a fail-over or a retry after 429, latencies, the memory growth (RSS) of the nodes that
were never killed, from 25 % of the run (warmed up) to its end (goal: under 5 %), and crashes:
a node (other than the one killed on purpose) that did not exit 0 at the end, or wrote a heap
checker or fatal error line (goal: 0).

  python bench/soak.py                      # 32 clients, 3 nodes, 2 minutes, scripted
  python bench/soak.py --long               # 10 minutes
  python bench/soak.py --engine llamacpp --long --clients 6
  python bench/soak.py --clients 8 --duration 30
Every loop is bounded in time and count; all traffic stays on 127.0.0.0/8.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import soak_load  # noqa: E402
from bench.soak_load import MIXES, Stats, client, client_errors, timeout  # noqa: E402

ANSWER = "Paris is the capital of France."


# --- the node process --------------------------------------------------------------------------

def serve_node(argv: list[str]) -> int:
    """`--serve-node`: run `main.serve` with scripted instances; the rest of argv is main.py's."""
    import main
    from swarm.engine.scripted import ScriptedBackend
    from swarm.node import cli
    from swarm.node.loading import Engine
    from swarm.node.terminal import setup_logging

    class SoakBackend(ScriptedBackend):
        """A scripted backend that keeps no per-request record (a soak would grow it forever)."""

        def _script(self, request: Any) -> tuple[str, float]:
            return ANSWER, -0.2

    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--latency", type=float, default=0.02)
    own.add_argument("--token-latency", type=float, default=0.002)
    own.add_argument("--engine", default="scripted")
    ours, rest = own.parse_known_args(argv)
    _command, config = cli.parse(rest)
    setup_logging(config.log_level)
    if ours.engine != "scripted":  # the real thing: main.py's own loading (embedded model)
        asyncio.run(main.serve(config))
        return 0
    backends = [SoakBackend([ANSWER], first_token_latency_s=ours.latency,
                            token_latency_s=ours.token_latency, model_id="scripted")
                for _ in range(config.model.instances)]
    asyncio.run(main.serve(config, Engine.given(backends)))
    return 0


@dataclass
class Node:
    """One node process of the swarm."""

    index: int
    host: str
    port: int
    args: list[str]
    log: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    exits: list[int | str] = field(default_factory=list)  # per process: its code, or "killed"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve-node", *self.args],
                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.exits.append("killed")

    def stop(self) -> None:
        """SIGINT (graceful); its exit code is recorded (one that died earlier keeps its own)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.exits.append(self.proc.returncode)

    def rss(self) -> int:
        import psutil

        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free on `host` now."""
    ports: list[int] = []
    for _ in range(50 * count):
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError("no free port on loopback")


def swarm_key_env() -> dict[str, str]:
    """One shared swarm key for every node, through the environment (never a flag)."""
    from swarm.node.config import known_keys

    if "federation.swarm_key" not in known_keys():
        return {}
    from network.trust.swarm_key import SwarmKey

    return {"LOCAL_SWARM_FEDERATION_SWARM_KEY": SwarmKey.generate().text}


def build_nodes(count: int, work: Path, instances: int, queue_depth: int,
                latency: float, engine: str = "scripted") -> list[Node]:
    hosts = ["127.0.0.1"] * count
    ports = free_ports(count)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCAL_SWARM_")}
    env.update(swarm_key_env(), COLUMNS="200", PYTHONUNBUFFERED="1")
    if engine != "scripted":
        from tests.engine_load import heap_checker_env

        env.update(heap_checker_env(), PYTHONPATH=str(ROOT))
    nodes = []
    for i, (host, port) in enumerate(zip(hosts, ports, strict=True)):
        peers = [a for j, (h, p) in enumerate(zip(hosts, ports, strict=True)) if j != i
                 for a in ("--peer", f"{h}:{p}")]
        engine_args = ["--engine", engine] + (["--backend", engine] if engine != "scripted" else [])
        args = [*engine_args, "--latency", str(latency), "--federation", "--no-mdns", "--host", host,
                "--port", str(port), "--node-id", f"soak-{i}", "--instances", str(instances),
                "--queue-depth", str(queue_depth), "--cache-dir", str(work / f"node{i}"),
                "--log-level", "warning", *peers]
        nodes.append(Node(i, host, port, args, work / f"node{i}.log", env))
    return nodes


async def wait_healthy(session: Any, node: Node, within_s: float = 60.0) -> float:
    """Seconds until `node` answers /health (bounded; polls: a fresh process has no event)."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if node.proc is not None and node.proc.poll() is not None:
            raise RuntimeError(f"node {node.index} exited; see {node.log}")
        try:
            async with session.get(node.url + "/health", timeout=timeout(1.0)) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (TimeoutError, OSError, client_errors()):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"node {node.index} did not start within {within_s:.0f} s; see {node.log}")


async def alive_in_peer_tables(session: Any, node: Node, others: list[Node],
                               within_s: float = 30.0) -> float | None:
    """Seconds until every other node lists `node` as alive again (None past the bound)."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        seen = 0
        for other in others:
            try:
                async with session.get(other.url + "/v1/federation/peers?status=alive",
                                       timeout=timeout(2.0)) as response:
                    rows = (await response.json())["data"]
                seen += any(r["node_id"] == f"soak-{node.index}" for r in rows)
            except (TimeoutError, OSError, ValueError, KeyError, client_errors()):
                pass
        if seen == len(others):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    return None


# --- the run ----------------------------------------------------------------------------------

async def soak(args: argparse.Namespace) -> int:
    import aiohttp

    work = Path(tempfile.mkdtemp(prefix="local-swarm-soak-"))
    nodes = build_nodes(args.nodes, work, args.instances, args.queue_depth, args.latency,
                        args.engine)
    victim = nodes[1 % len(nodes)]
    survivors = [n for n in nodes if n is not victim]
    stats = Stats()
    report: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:
        try:
            for node in nodes:
                node.start()
            for node in nodes:
                await wait_healthy(session, node)
            for node in nodes:
                await alive_in_peer_tables(session, node, [n for n in nodes if n is not node])
            print(f"{len(nodes)} nodes up: {', '.join(n.url for n in nodes)}; logs in {work}",
                  flush=True)
            rss_start = {n.index: n.rss() for n in survivors}
            started = time.monotonic()
            deadline = started + args.duration
            down_until: dict[int, float] = {}
            load = [asyncio.create_task(client(i, session, nodes, down_until, deadline, stats,
                                               args.seed, args.max_requests, args.engine))
                    for i in range(args.clients)]
            try:
                await asyncio.sleep(0.25 * args.duration)
                rss_base = {n.index: n.rss() for n in survivors}
                sent_at_base = stats.sent
                await asyncio.sleep(max(0.0, started + 0.4 * args.duration - time.monotonic()))
                victim.kill()
                killed_at = time.monotonic() - started
                failed_before = stats.failed
                print(f"t={killed_at:.0f}s: killed node {victim.index} ({victim.url}) with "
                      f"SIGKILL", flush=True)
                await asyncio.sleep(args.down)
                victim.start()
                ready = await wait_healthy(session, victim)
                rejoined = await alive_in_peer_tables(session, victim, survivors)
                restarted_at = time.monotonic() - started
                print(f"t={restarted_at:.0f}s: node {victim.index} restarted (serving after "
                      f"{ready:.1f}s; alive in every peer table after "
                      f"{'-' if rejoined is None else f'{rejoined:.1f}s'})", flush=True)
                failed_during = stats.failed - failed_before
                await asyncio.wait_for(asyncio.gather(*load),
                                       timeout=args.duration + 4 * soak_load.REQUEST_TIMEOUT_S)
            finally:
                for task in load:
                    task.cancel()
                await asyncio.gather(*load, return_exceptions=True)
            elapsed = time.monotonic() - started
            rss_end = {n.index: n.rss() for n in survivors}
            report = {"elapsed": elapsed, "rss_start": rss_start, "rss_base": rss_base,
                      "rss_end": rss_end, "failed_during_outage": failed_during,
                      "sent_at_base": sent_at_base}
        finally:
            for node in nodes:
                node.stop()
    crashes = crash_report(nodes)
    print_report(args, stats, report, survivors)
    print(f"  crashes            {len(crashes)}  (a node that did not exit 0, or logged a heap or "
          f"fatal error; the SIGKILL on purpose excepted)")
    for line in crashes[:8]:
        print(f"    {line}")
    growth_ok = all((report["rss_end"][i] - report["rss_base"][i]) / report["rss_base"][i] < 0.05
                    for i in report["rss_base"])
    return 0 if stats.failed == 0 and growth_ok and not crashes else 1


def crash_report(nodes: list[Node]) -> list[str]:
    """Every node process that ended other than by SIGINT's exit 0 or the SIGKILL on purpose, and
    every heap-checker or fatal-error line in the node logs."""
    from tests.engine_load import HEAP_ERROR

    found = [f"node {n.index}: exit {code}" for n in nodes for code in n.exits
             if code not in (0, "killed")]
    for n in nodes:
        text = n.log.read_text(errors="replace") if n.log.exists() else ""
        found += [f"node {n.index}: {line.strip()[:160]}" for line in text.splitlines()
                  if HEAP_ERROR.search(line)]
    return found


def print_report(args: argparse.Namespace, stats: Stats, report: dict[str, Any],
                 survivors: list[Node]) -> None:
    lat = sorted(stats.latencies) or [0.0]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    print(f"\nsoak: {args.clients} clients x {report['elapsed']:.0f} s against {args.nodes} "
          f"nodes ({args.instances} {args.engine} instance(s) each), node 1 killed at 40 % and "
          f"restarted {args.down:.0f} s later")
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(stats.by_kind.items()))
    print(f"  requests sent      {stats.sent}  ({kinds})")
    print(f"  answered           {stats.answered}  ({stats.answered / report['elapsed']:.1f}/s)")
    print(f"  failed             {stats.failed}  (during the outage: "
          f"{report['failed_during_outage']})")
    print(f"  failed over        {stats.failed_over}  (answered by another node than the first "
          f"tried)")
    print(f"  429 waited out     {stats.throttled}")
    print(f"  across machines    {stats.peer_candidates} consensus candidates voted by peers, "
          f"{stats.relayed} route answers relayed from a less busy peer")
    print(f"  latency ms         p50 {pct(0.5):.0f}  p95 {pct(0.95):.0f}  p99 {pct(0.99):.0f}  "
          f"max {lat[-1] * 1000:.0f}  mean {statistics.fmean(lat) * 1000:.0f}")
    for node in survivors:
        start, base, end = (report[k][node.index] for k in ("rss_start", "rss_base", "rss_end"))
        print(f"  RSS node {node.index}         {start / 2**20:.1f} MiB at start, "
              f"{base / 2**20:.1f} MiB at 25 %, {end / 2**20:.1f} MiB at the end: "
              f"{(end - base) / base * 100:+.2f} % (goal < 5 %)")
    for reason, count in sorted(stats.reasons.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  failure x{count}: {reason}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--long", action="store_true", help="run 10 minutes")
    parser.add_argument("--nodes", type=int, default=3, choices=[2, 3, 4])
    parser.add_argument("--instances", type=int, default=2, help="instances per node")
    parser.add_argument("--engine", choices=sorted(MIXES), default="scripted",
                        help="scripted instances, or the embedded model on llama.cpp")
    parser.add_argument("--request-timeout", type=float, default=0.0,
                        help="seconds per try (default 30 scripted, 120 llamacpp)")
    parser.add_argument("--queue-depth", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.02,
                        help="seconds before each answer's first token")
    parser.add_argument("--down", type=float, default=10.0,
                        help="seconds the killed node stays down")
    parser.add_argument("--max-requests", type=int, default=100_000, help="per client")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.long:
        args.duration = 600.0
    soak_load.REQUEST_TIMEOUT_S = args.request_timeout or (30.0 if args.engine == "scripted"
                                                           else 120.0)
    soak_load.CONSENSUS_TIMEOUT_S = soak_load.REQUEST_TIMEOUT_S * 2 / 3
    if not 5 <= args.duration <= 3600 or not 1 <= args.clients <= 256:
        parser.error("--duration must be 5..3600 s and --clients 1..256")
    args.down = min(args.down, 0.3 * args.duration)
    return args


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-node":
        sys.exit(serve_node(sys.argv[2:]))
    sys.exit(asyncio.run(soak(parse_args(None))))
