"""Soak: bounded concurrent load on a small swarm on loopback, with one node killed and restarted.

Starts `--nodes` real node processes (`main.serve` with scripted instances, so no model is
loaded) on 127.0.0.1, each on its own port (macOS loopback has no 127.0.0.2), with --federation
--no-mdns and manual peers (no multicast leaves this machine), all with one swarm key.
`--clients` concurrent clients then send a mix of route, streamed and consensus (weighted_vote
over 3 candidates, drawn from the whole swarm) requests for `--duration` seconds. At 40 % of the
run node 1 is killed (SIGKILL) and restarted `--down` seconds later. A client whose node fails
(refused, reset, 5xx) sends the same request to the next node; a 429 waits its Retry-After and
tries again (bounded).

It prints requests sent, answered, failed (goal: 0, as a node always lives), how many answers
needed a fail-over or a retry after 429, latencies, and the memory growth (RSS) of the nodes that
were never killed, from 25 % of the run (warmed up) to its end (goal: under 5 %).

  python bench/soak.py                      # 32 clients, 3 nodes, 2 minutes
  python bench/soak.py --long               # 10 minutes
  python bench/soak.py --clients 8 --duration 30
Every loop is bounded in time and count; all traffic stays on 127.0.0.0/8.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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

ANSWER = "Paris is the capital of France."
ASK = [{"role": "user", "content": "What is the capital of France?"}]
REQUEST_TIMEOUT_S = 30.0
MAX_TRIES = 8  # per request: fail-overs and 429 retries together


# --- the node process --------------------------------------------------------------------------

def serve_node(argv: list[str]) -> int:
    """`--serve-node`: run `main.serve` with scripted instances; the rest of argv is main.py's."""
    import main
    from swarm.engine.scripted import ScriptedBackend
    from swarm.node import cli
    from swarm.node.terminal import setup_logging

    class SoakBackend(ScriptedBackend):
        """A scripted backend that keeps no per-request record (a soak would grow it forever)."""

        def _script(self, request: Any) -> tuple[str, float]:
            return ANSWER, -0.2

    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--latency", type=float, default=0.02)
    own.add_argument("--token-latency", type=float, default=0.002)
    ours, rest = own.parse_known_args(argv)
    _command, config = cli.parse(rest)
    setup_logging(config.log_level)
    backends = [SoakBackend([ANSWER], first_token_latency_s=ours.latency,
                            token_latency_s=ours.token_latency, model_id="scripted")
                for _ in range(config.model.instances)]
    asyncio.run(main.serve(config, main.Engine.given(backends)))
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

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

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
                latency: float) -> list[Node]:
    hosts = ["127.0.0.1"] * count
    ports = free_ports(count)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCAL_SWARM_")}
    env.update(swarm_key_env(), COLUMNS="200", PYTHONUNBUFFERED="1")
    nodes = []
    for i, (host, port) in enumerate(zip(hosts, ports, strict=True)):
        peers = [a for j, (h, p) in enumerate(zip(hosts, ports, strict=True)) if j != i
                 for a in ("--peer", f"{h}:{p}")]
        args = ["--latency", str(latency), "--federation", "--no-mdns", "--host", host,
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
            async with session.get(node.url + "/health", timeout=_timeout(1.0)) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except (TimeoutError, OSError, _client_errors()):
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
                                       timeout=_timeout(2.0)) as response:
                    rows = (await response.json())["data"]
                seen += any(r["node_id"] == f"soak-{node.index}" for r in rows)
            except (TimeoutError, OSError, ValueError, KeyError, _client_errors()):
                pass
        if seen == len(others):
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    return None


# --- the load ---------------------------------------------------------------------------------

def _client_errors() -> type[Exception]:
    import aiohttp

    return aiohttp.ClientError


def _timeout(total: float) -> Any:
    import aiohttp

    return aiohttp.ClientTimeout(total=total)


@dataclass
class Stats:
    """What the clients did."""

    sent: int = 0
    answered: int = 0
    failed: int = 0
    failed_over: int = 0  # answered, but not by the first node tried
    throttled: int = 0  # 429s waited out
    peer_candidates: int = 0  # consensus candidates generated by another node (votes)
    relayed: int = 0  # route answers a node forwarded to a less busy peer
    by_kind: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    reasons: dict[str, int] = field(default_factory=dict)

    def note(self, reason: str) -> None:
        key = reason[:160]
        self.reasons[key] = self.reasons.get(key, 0) + 1


class Refused(Exception):
    """A node did not answer this request properly: try the next one."""


class Busy(Exception):
    """429: wait `retry_after` and try again."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"429, retry after {retry_after} s")
        self.retry_after = retry_after


def _body(kind: str, rng: random.Random) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": ASK, "max_tokens": 16, "seed": rng.randrange(1 << 30)}
    if kind == "stream":
        body["stream"] = True
    elif kind == "consensus":
        body["swarm"] = {"strategy": "weighted_vote", "n": 3, "timeout_s": 20}
    return body


async def _ask(session: Any, node: Node, kind: str, body: dict[str, Any],
               stats: Stats) -> None:
    """One request to one node; returns when answered correctly, else raises Refused or Busy."""
    url = node.url + "/v1/chat/completions"
    async with session.post(url, json=body, timeout=_timeout(REQUEST_TIMEOUT_S)) as response:
        if response.status == 429:
            raise Busy(min(float(response.headers.get("Retry-After", "1")), 2.0))
        raw = await response.read()
        if response.status != 200:
            raise Refused(f"{response.status}: {raw[:120]!r}")
    text = raw.decode("utf-8", "replace")
    if kind == "stream":
        events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        if not events or events[-1] != "[DONE]":
            raise Refused("stream without [DONE]")
        chunks = [json.loads(e) for e in events[:-1]]
        if any("error" in c for c in chunks):
            raise Refused(f"stream error {chunks[-1]}")
        content = "".join(c["choices"][0]["delta"].get("content") or ""
                          for c in chunks if c.get("choices"))
    else:
        reply = json.loads(text)
        content = reply["choices"][0]["message"]["content"]
        swarm = reply.get("swarm") or {}
        if kind == "consensus":
            if swarm.get("strategy") != "weighted_vote":
                raise Refused("consensus reply without its swarm report")
            stats.peer_candidates += sum(not c["source"].startswith("local/")
                                         for c in swarm["candidates"] if c.get("tokens"))
        stats.relayed += "node" in swarm
    if "Paris" not in content:
        raise Refused(f"wrong answer {content!r}")


async def one_request(session: Any, nodes: list[Node], down_until: dict[int, float],
                      first: int, kind: str, body: dict[str, Any], stats: Stats) -> None:
    """Send one request, failing over to the next node and waiting out 429s (bounded)."""
    order = [nodes[(first + k) % len(nodes)] for k in range(len(nodes))]
    now = time.monotonic()
    order.sort(key=lambda n: down_until.get(n.index, 0.0) > now)  # known-down nodes last
    started = time.monotonic()
    tries = 0
    position = 0
    last = "no node tried"
    while tries < MAX_TRIES and time.monotonic() - started < 2 * REQUEST_TIMEOUT_S:
        node = order[position % len(order)]
        tries += 1
        try:
            await _ask(session, node, kind, body, stats)
        except Busy as exc:
            stats.throttled += 1
            await asyncio.sleep(exc.retry_after)
            continue
        except (TimeoutError, Refused, OSError, ValueError, KeyError, IndexError, _client_errors()) as exc:
            last = f"{node.host}: {type(exc).__name__}: {exc}"
            if isinstance(exc, OSError | _client_errors()) and not isinstance(exc, Refused):
                down_until[node.index] = time.monotonic() + 1.0
            position += 1
            continue
        stats.answered += 1
        stats.failed_over += position > 0
        stats.latencies.append(time.monotonic() - started)
        return
    stats.failed += 1
    stats.note(f"{kind}: {last}")


async def client(index: int, session: Any, nodes: list[Node], down_until: dict[int, float],
                 deadline: float, stats: Stats, seed: int, max_requests: int) -> None:
    rng = random.Random(seed * 1000 + index)
    for _ in range(max_requests):
        if time.monotonic() >= deadline:
            return
        kind = rng.choices(["route", "stream", "consensus"], weights=[70, 15, 15])[0]
        stats.sent += 1
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
        await one_request(session, nodes, down_until, index % len(nodes), kind,
                          _body(kind, rng), stats)


# --- the run ----------------------------------------------------------------------------------

async def soak(args: argparse.Namespace) -> int:
    import aiohttp

    work = Path(tempfile.mkdtemp(prefix="local-swarm-soak-"))
    nodes = build_nodes(args.nodes, work, args.instances, args.queue_depth, args.latency)
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
                                               args.seed, args.max_requests))
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
                                       timeout=args.duration + 4 * REQUEST_TIMEOUT_S)
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
    print_report(args, stats, report, survivors)
    growth_ok = all((report["rss_end"][i] - report["rss_base"][i]) / report["rss_base"][i] < 0.05
                    for i in report["rss_base"])
    return 0 if stats.failed == 0 and growth_ok else 1


def print_report(args: argparse.Namespace, stats: Stats, report: dict[str, Any],
                 survivors: list[Node]) -> None:
    lat = sorted(stats.latencies) or [0.0]

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    print(f"\nsoak: {args.clients} clients x {report['elapsed']:.0f} s against {args.nodes} "
          f"nodes ({args.instances} scripted instance(s) each), node 1 killed at 40 % and "
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
    parser.add_argument("--instances", type=int, default=2, help="scripted instances per node")
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
    if not 5 <= args.duration <= 3600 or not 1 <= args.clients <= 256:
        parser.error("--duration must be 5..3600 s and --clients 1..256")
    args.down = min(args.down, 0.3 * args.duration)
    return args


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-node":
        sys.exit(serve_node(sys.argv[2:]))
    sys.exit(asyncio.run(soak(parse_args(None))))
