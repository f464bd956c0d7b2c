"""Federation discovery, liveness and route-mode scaling, measured on a namespace LAN.

Every node is a real node process (`main.py`, or bench/scripted_node.py: real mDNS, heartbeats
and HTTP with a scripted backend) inside a network namespace built by tests/netns.py; every HTTP
client runs in an agent process inside namespace n1. Nothing touches the host's interfaces.

Prints, over repeated runs:
  0. idle: N scripted nodes in a full mesh, nothing asked of them; each node process's CPU share
     (user + system, from /proc) over --idle-s (goal: below 1 % at N = 20, 2 % at N = 50), and
     the false deaths logged while measured;
  1. join: from a new node's first answered /health to every observer (the first --observers
     resident nodes) listing it alive in /v1/federation/peers (goal p95 <= 1.5 s, aim 0.5 s).
     N-1 scripted nodes run; each repetition starts one more (fresh namespace, fresh node id),
     measures, then
  2. crash: SIGKILLs it and times until every observer lists it not alive (goal p95 <= 1 s);
  3. false deaths under full load: N real nodes (embedded model, llama.cpp, --threads 1) kept
     busy by bounded concurrent streaming requests for a fixed time; counts "peer X left" lines
     (and "recovered" flickers) in the node logs (goal 0; at most 8 nodes: real models);
  4. route throughput: clients send plain route requests to node 1 of 1 scripted node, then of N
     (one instance each, fixed latency per answer); requests/s ratio (goal >= 0.9 N).

Run as root (or with user namespaces):
  python bench/discovery.py [--nodes 3] [--reps 20] [--load-s 25] [--route-requests 20]
  python bench/discovery.py --only idle,join --nodes 50 --reps 5   # up to 50 scripted nodes
  python bench/discovery.py --only join,route     # a subset of phases
  python bench/discovery.py --only load --load-threads 2   # heavier: 2 threads per node
Takes about 2.5 minutes with the defaults on 2 cores (join ~3 s per rep, load 25 s + model
load, route 160 requests at 5 req/s alone + the same over N nodes).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns_nodes import (  # noqa: E402
    AGENT_FLAG,
    PORT,
    Agent,
    NodeProcess,
    PercentileTable,
    add_phase_options,
    chosen_phases,
    finish,
    fmt,
    pct,
    scripted,
    serve_agent,
)
from network.trust.swarm_key import SwarmKey  # noqa: E402

PHASES = ("idle", "join", "load", "route")
MAX_NODES = 50  # scripted nodes; the load phase runs real models and stops at MAX_MODEL_NODES
MAX_MODEL_NODES = 8
RUN_KEY = SwarmKey.generate().text
START_BATCH = 5  # idle nodes start this many at a time, each batch answering before the next

# ---------------------------------------------------------------------------------------------
# The agent: runs inside namespace n1, reads one JSON command per line, answers "RESULT {json}".
# Every loop in it is bounded by a deadline (and the load loops by a request count too).
# ---------------------------------------------------------------------------------------------


async def _states(session: Any, url: str, timeout_s: float = 1.0) -> dict[str, str]:
    import aiohttp

    async with session.get(url + "/v1/federation/peers",
                           timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
        body = await response.json()
    return {row["node_id"]: row["state"] for row in body["data"] if not row.get("self")}


async def _until(session: Any, url: str, predicate: Any, deadline: float,
                 every_s: float = 0.02) -> float | None:
    """The monotonic time at which `predicate(states of url)` first held, or None by deadline."""
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate(await _states(session, url)):
                return time.monotonic()
        await asyncio.sleep(every_s)
    return None


async def op_wait_alive(session: Any, cmd: dict) -> dict:
    """Until every url lists every other id alive (a full mesh)."""
    deadline = time.monotonic() + cmd["timeout"]
    start = time.monotonic()
    nodes = cmd["nodes"]  # [[url, id], ...]

    every_s = 0.05 * max(1.0, len(nodes) / 3)  # the polling stays a small load at N = 50

    async def one(url: str, me: str) -> float | None:
        others = [i for _u, i in nodes if i != me]
        return await _until(session, url, lambda s: all(s.get(i) == "alive" for i in others),
                            deadline, every_s=every_s)

    seen = await asyncio.gather(*(one(u, i) for u, i in nodes))
    return {"ok": all(t is not None for t in seen), "elapsed": time.monotonic() - start}


async def op_health(session: Any, cmd: dict) -> dict:
    """Until url/health answers 200."""
    import aiohttp

    deadline = time.monotonic() + cmd["timeout"]
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            async with session.get(cmd["url"] + "/health",
                                   timeout=aiohttp.ClientTimeout(total=0.5)) as response:
                if response.status == 200:
                    return {"ok": True, "at": time.monotonic()}
        await asyncio.sleep(0.01)
    return {"ok": False}


async def op_join(session: Any, cmd: dict) -> dict:
    """First /health answer of the joiner, then when each observer lists it alive, and when
    the joiner lists every observer alive."""
    health = await op_health(session, {"url": cmd["url"], "timeout": cmd["timeout"]})
    if not health["ok"]:
        return {"ok": False, "why": "the new node's /health never answered"}
    deadline = time.monotonic() + cmd["timeout"]
    node_id, ids = cmd["node_id"], cmd["observer_ids"]
    seen = await asyncio.gather(
        *(_until(session, url, lambda s: s.get(node_id) == "alive", deadline)
          for url in cmd["observers"]),
        _until(session, cmd["url"], lambda s: all(s.get(i) == "alive" for i in ids), deadline))
    return {"ok": all(t is not None for t in seen), "health_at": health["at"],
            "observers_at": seen[:-1], "joiner_at": seen[-1]}


async def op_crash_watch(session: Any, cmd: dict) -> dict:
    """Look once (node must be alive everywhere), print WATCHING, then time not-alive and dead."""
    node_id, observers = cmd["node_id"], cmd["observers"]
    first = await asyncio.gather(*(_states(session, url) for url in observers),
                                 return_exceptions=True)
    alive = all(isinstance(s, dict) and s.get(node_id) == "alive" for s in first)
    print("WATCHING", json.dumps({"alive": alive}), flush=True)
    deadline = time.monotonic() + cmd["timeout"]
    watched = await asyncio.gather(
        *(_until(session, url, lambda s: s.get(node_id, "absent") != "alive", deadline)
          for url in observers),
        *(_until(session, url, lambda s: s.get(node_id, "absent") in ("dead", "absent"),
                 deadline) for url in observers))
    gone, dead = watched[:len(observers)], watched[len(observers):]
    return {"ok": alive and all(t is not None for t in gone), "not_alive_at": gone,
            "dead_at": dead}


async def _stream_once(session: Any, url: str, body: dict, timeout_s: float,
                       counts: dict[str, int]) -> None:
    """One streaming chat request; counts["chunks"] grows as content chunks arrive."""
    import aiohttp

    async with session.post(url + "/v1/chat/completions", json=body,
                            timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
        async for line in response.content:
            if line.startswith(b"data: {"):
                counts["chunks"] += 1
            elif line.startswith(b"data: [DONE]"):
                break


async def op_load(session: Any, cmd: dict) -> dict:
    """`concurrency` streaming requests in flight per target for `duration` seconds (at most
    `max_requests` in all), while sampling every observer's peer table every 0.1 s."""
    start = time.monotonic()
    end = start + cmd["duration"]
    counts = {"requests": 0, "finished": 0, "chunks": 0, "errors": 0, "started": 0}
    per_target = {url: 0 for url in cmd["targets"]}
    samples = {"looks": 0, "not_alive": 0, "slow": 0}
    not_alive: dict[str, int] = {}
    loads: list[float] = []
    errors: list[str] = []

    async def worker(url: str, k: int) -> None:
        seq = 0
        while time.monotonic() < end and counts["started"] < cmd["max_requests"]:
            counts["started"] += 1
            seq += 1
            body = {"messages": [{"role": "user", "content": cmd["prompt"]}],
                    "max_tokens": cmd["max_tokens"], "stream": True, "temperature": 0.8,
                    "seed": 1000 * k + seq}
            remaining = end - time.monotonic()
            try:
                await asyncio.wait_for(_stream_once(session, url, body, 120, counts),
                                       max(0.1, remaining))
                counts["finished"] += 1
                per_target[url] += 1
            except TimeoutError:  # the window closed mid-answer: cancelled, not an error
                pass
            except Exception as exc:  # noqa: BLE001 (counted and reported)
                counts["errors"] += 1
                if len(errors) < 5:
                    errors.append(f"{url}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(0.2)

    async def sampler() -> None:
        import aiohttp

        while time.monotonic() < end:
            for url, me in cmd["observers"]:
                samples["looks"] += 1
                try:
                    async with session.get(url + "/v1/federation/peers",
                                           timeout=aiohttp.ClientTimeout(total=2)) as response:
                        rows = (await response.json())["data"]
                except Exception:  # noqa: BLE001 (a slow answer is not a death; counted)
                    samples["slow"] += 1
                    continue
                for row in rows:
                    if row.get("self"):
                        loads.append(float(row.get("load") or 0))
                    elif row["state"] != "alive" and row["node_id"] in cmd["ids"]:
                        samples["not_alive"] += 1
                        key = f"{me} saw {row['node_id']} {row['state']}"
                        not_alive[key] = not_alive.get(key, 0) + 1
            await asyncio.sleep(0.1)

    tasks = [worker(url, k * 100 + j) for k, url in enumerate(cmd["targets"])
             for j in range(cmd["concurrency"])]
    await asyncio.gather(sampler(), *tasks)
    counts["requests"] = counts["started"]
    return {"ok": True, "elapsed": time.monotonic() - start, **counts, "per_target": per_target,
            "samples": samples, "not_alive": not_alive, "errors_seen": errors,
            "mean_self_load": sum(loads) / len(loads) if loads else None}


async def op_route(session: Any, cmd: dict) -> dict:
    """`clients` concurrent clients, each sending `per_client` plain route requests in turn."""
    import aiohttp

    served: dict[str, int] = {}
    first_wave: dict[str, int] = {}  # who served the first `clients` requests (one burst)
    errors: list[str] = []
    failed = [0]
    latencies: list[float] = []
    deadline = time.monotonic() + cmd["timeout"]

    async def client(k: int) -> None:
        for j in range(cmd["per_client"]):
            if time.monotonic() > deadline:
                return
            body = {"messages": [{"role": "user", "content": f"Capital of France? ({k}.{j})"}],
                    "max_tokens": 8}
            t = time.monotonic()
            try:
                async with session.post(cmd["url"] + "/v1/chat/completions", json=body,
                                        timeout=aiohttp.ClientTimeout(total=60)) as response:
                    reply = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {reply}")
            except Exception as exc:  # noqa: BLE001 (counted and reported)
                failed[0] += 1
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.monotonic() - t)
            swarm = reply.get("swarm") or {}
            who = swarm.get("node") or "local"
            served[who] = served.get(who, 0) + 1
            if j == 0:
                first_wave[who] = first_wave.get(who, 0) + 1

    start = time.monotonic()
    await asyncio.gather(*(client(k) for k in range(cmd["clients"])))
    elapsed = time.monotonic() - start
    ok = sum(served.values())
    return {"ok": True, "elapsed": elapsed, "done": ok, "rps": ok / elapsed if elapsed else 0.0,
            "served": served, "first_wave": first_wave, "errors": failed[0], "errors_seen": errors,
            "median_latency": sorted(latencies)[len(latencies) // 2] if latencies else None}


OPS = {"wait_alive": op_wait_alive, "health": op_health, "join": op_join,
       "crash_watch": op_crash_watch, "load": op_load, "route": op_route}


def agent() -> None:
    """Serve commands from stdin until it closes."""
    import aiohttp

    async def handle(cmd: dict) -> dict:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            return await OPS[cmd["op"]](session, cmd)

    serve_agent(handle)


# ---------------------------------------------------------------------------------------------
# The bench: builds namespace LANs, starts nodes and the agent, prints the table.
# ---------------------------------------------------------------------------------------------


class Node(NodeProcess):
    """One node process in namespace i, its output in a log file. Unless `shared_cache` (real
    models: their converted weights live in the user's cache), it has a cache dir of its own in
    `logdir` (its term and vote file: nodes sharing one would boot with each other's votes) and
    the run's swarm key."""

    def __init__(self, lan: Any, i: int, node_id: str, argv: list[str], logdir: Path,
                 shared_cache: bool = False) -> None:
        super().__init__(lan, i, node_id, logdir)
        self._log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        env = None
        if not shared_cache:
            argv = [*argv, "--cache-dir", str(logdir / "cache" / node_id)]
            env = {"LOCAL_SWARM_FEDERATION_SWARM_KEY": RUN_KEY}
        self.proc = self.spawn(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        self.kill_process()
        self._log.close()

    def stop(self) -> None:
        """SIGTERM (graceful: mDNS goodbye), SIGKILL if it lingers."""
        self.stop_process()
        self._log.close()


def real_model(threads: int) -> list[str]:
    return [str(ROOT / "main.py"), "--instances", "1", "--threads", str(threads)]


_LEFT = re.compile(r"peer (\S+) left \(")
_RECOVERED = re.compile(r"peer (\S+) recovered \(")


def transitions(text: str, ids: set[str]) -> tuple[int, int]:
    """("left", "recovered") lines about `ids` in a node log."""
    left = sum(1 for m in _LEFT.finditer(text) if m.group(1) in ids)
    back = sum(1 for m in _RECOVERED.finditer(text) if m.group(1) in ids)
    return left, back


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds the process `pid` has used so far (from /proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def start_batched(lan: Any, agent: Any, nodes: list[Node], count: int, prefix: str,
                  args: argparse.Namespace, logdir: Path) -> None:
    """Start `count` scripted nodes into `nodes`, START_BATCH at a time, each batch answering
    /health before the next (fifty imports at once starve a 2-core machine into flapping)."""
    for first in range(1, count + 1, START_BATCH):
        batch = [Node(lan, i, f"{prefix}{i}", scripted(args.latency), logdir)
                 for i in range(first, min(first + START_BATCH, count + 1))]
        nodes += batch
        for n in batch:
            if not agent.ask({"op": "health", "url": n.url, "timeout": 90}, 100)["ok"]:
                raise RuntimeError(f"{n.node_id} never answered /health")


def phase_idle(args: argparse.Namespace, logdir: Path) -> dict:
    """N idle scripted nodes in a full mesh: each node process's CPU share over --idle-s."""
    from tests.netns import NetnsLan

    with NetnsLan(args.nodes) as lan:
        agent = Agent(lan, __file__)
        nodes: list[Node] = []
        try:
            start_batched(lan, agent, nodes, args.nodes, "i", args, logdir)
            mesh = agent.ask({"op": "wait_alive", "timeout": 60 + 3 * args.nodes,
                              "nodes": [[n.url, n.node_id] for n in nodes]}, 90 + 3 * args.nodes)
            if not mesh["ok"]:
                raise RuntimeError(f"idle nodes never saw each other: {mesh}")
            time.sleep(args.settle_s + 2.0)  # past the joins' bursts, into the steady state
            offsets = [len(n.log_text()) for n in nodes]
            before = [cpu_seconds(n.proc.pid) for n in nodes]
            started = time.monotonic()
            time.sleep(args.idle_s)
            elapsed = time.monotonic() - started
            after = [cpu_seconds(n.proc.pid) for n in nodes]
            shares = [100 * (a[0] + a[1] - b[0] - b[1]) / elapsed
                      for a, b in zip(after, before, strict=True)]
            system = 100 * sum(a[1] - b[1] for a, b in zip(after, before, strict=True)) / (
                elapsed * len(nodes))
            ids = {n.node_id for n in nodes}
            idle_false = sum(transitions(n.log_text()[o:], ids)[0]
                             for n, o in zip(nodes, offsets, strict=True))
            startup_false = sum(transitions(n.log_text()[:o], ids)[0]
                                for n, o in zip(nodes, offsets, strict=True))
        finally:
            for n in nodes:
                n.stop()
            agent.close()
    return {"shares": shares, "system": system, "elapsed": elapsed, "mesh_s": mesh["elapsed"],
            "false_deaths": idle_false, "startup_false_deaths": startup_false,
            "load": os.getloadavg()}


def phase_join(args: argparse.Namespace, logdir: Path) -> dict:
    """Join and crash times: N-1 resident nodes; each repetition adds a node, then kills it."""
    from tests.netns import NetnsLan

    base = args.nodes - 1
    joins: list[float] = []
    joiner_sees: list[float] = []
    crashes: list[float] = []
    deads: list[float] = []
    failures: list[str] = []
    with NetnsLan(base + args.reps) as lan:
        agent = Agent(lan, __file__)
        nodes: list[Node] = []
        try:
            start_batched(lan, agent, nodes, base, "n", args, logdir)
            mesh = agent.ask({"op": "wait_alive", "timeout": 60 + 3 * base,
                              "nodes": [[n.url, n.node_id] for n in nodes]}, 90 + 3 * base)
            if not mesh["ok"]:
                raise RuntimeError(f"resident nodes never saw each other: {mesh}")
            watching = nodes[:args.observers]  # each polled every 20 ms: a few, not all 49
            observers = [n.url for n in watching]
            ids = [n.node_id for n in watching]
            for rep in range(args.reps):
                i = base + 1 + rep
                node_id = f"j{rep}-{secrets.token_hex(3)}"  # random id: mDNS probing skippable
                agent.send({"op": "join", "url": f"http://{lan.addr(i)}:{PORT}",
                            "node_id": node_id, "observers": observers, "observer_ids": ids,
                            "timeout": 30})
                joiner = Node(lan, i, node_id, scripted(args.latency), logdir)
                joined = agent.result(70)
                if not joined["ok"]:
                    failures.append(f"join {rep}: {joined}")
                    joiner.kill()
                    continue
                joins.append(max(joined["observers_at"]) - joined["health_at"])
                joiner_sees.append(joined["joiner_at"] - joined["health_at"])
                time.sleep(args.settle_s)  # a steady state before the crash
                agent.send({"op": "crash_watch", "node_id": node_id, "observers": observers,
                            "timeout": 15})
                watching = json.loads(agent.out.expect("WATCHING", 20).split(" ", 1)[1])
                joiner.kill()
                killed_at = joiner.killed_mono  # when the signal left (we may run late)
                gone = agent.result(40)
                if not (watching["alive"] and gone["ok"]):
                    failures.append(f"crash {rep}: watching={watching} result={gone}")
                    continue
                crashes.append(max(gone["not_alive_at"]) - killed_at)
                if all(t is not None for t in gone["dead_at"]):
                    deads.append(max(gone["dead_at"]) - killed_at)
                print(f"  rep {rep + 1}/{args.reps}: join {joins[-1]:.3f} s, "
                      f"crash->not alive {crashes[-1]:.3f} s", flush=True)
            resident = {n.node_id for n in nodes}
            idle_false = sum(transitions(n.log_text(), resident)[0] for n in nodes)
        finally:
            for n in nodes:
                n.stop()
            agent.close()
    return {"joins": joins, "joiner_sees": joiner_sees, "crashes": crashes, "deads": deads,
            "failures": failures, "idle_false_deaths": idle_false}


def phase_load(args: argparse.Namespace, logdir: Path) -> dict:
    """N real-model nodes, every instance kept busy; count deaths of peers that never died."""
    from tests.netns import NetnsLan

    with NetnsLan(args.nodes) as lan:
        agent = Agent(lan, __file__)
        nodes = [Node(lan, i, f"L{i}", real_model(args.load_threads), logdir, shared_cache=True)
                 for i in range(1, args.nodes + 1)]
        try:
            mesh = agent.ask({"op": "wait_alive", "timeout": 180,
                              "nodes": [[n.url, n.node_id] for n in nodes]}, 200)
            if not mesh["ok"]:
                raise RuntimeError(f"load nodes never saw each other: {mesh}")
            before = [len(n.log_text()) for n in nodes]
            ids = [n.node_id for n in nodes]
            result = agent.ask({
                "op": "load", "targets": [n.url for n in nodes],
                "concurrency": args.load_concurrency, "duration": args.load_s,
                "max_requests": args.load_max_requests, "max_tokens": args.load_tokens,
                "prompt": "Write a long, detailed story about a lighthouse keeper and the sea.",
                "observers": [[n.url, n.node_id] for n in nodes], "ids": ids,
            }, args.load_s + 60)
            time.sleep(1.0)  # let a LEFT caused by the last moments reach the logs
            left = back = 0
            for n, offset in zip(nodes, before, strict=True):
                a, b = transitions(n.log_text()[offset:], set(ids) - {n.node_id})
                left, back = left + a, back + b
        finally:
            for n in nodes:
                n.stop()
            agent.close()
    return {"load": result, "left": left, "recovered": back}


def phase_route(args: argparse.Namespace, logdir: Path) -> dict:
    """Requests/s of route requests to node 1 alone, then to node 1 of N."""
    from tests.netns import NetnsLan

    runs: list[dict] = []
    with NetnsLan(args.nodes) as lan:
        agent = Agent(lan, __file__)
        nodes = [Node(lan, 1, "r1", scripted(args.latency), logdir)]
        try:
            cmd = {"op": "route", "url": nodes[0].url, "clients": args.route_clients,
                   "per_client": args.route_requests,
                   "timeout": args.route_clients * args.route_requests * args.latency + 60}
            warm = {**cmd, "clients": 2, "per_client": 2}
            if not agent.ask({"op": "health", "url": nodes[0].url, "timeout": 60}, 70)["ok"]:
                raise RuntimeError("route node 1 never answered")
            for _rep in range(args.route_reps):
                agent.ask(warm, 60)
                one = agent.ask(cmd, cmd["timeout"] + 10)
                runs.append({"nodes": 1, **one})
            nodes += [Node(lan, i, f"r{i}", scripted(args.latency), logdir)
                      for i in range(2, args.nodes + 1)]
            mesh = agent.ask({"op": "wait_alive", "timeout": 60,
                              "nodes": [[n.url, n.node_id] for n in nodes]}, 70)
            if not mesh["ok"]:
                raise RuntimeError(f"route nodes never saw each other: {mesh}")
            for _rep in range(args.route_reps):
                agent.ask(warm, 60)
                time.sleep(1.0)  # let heartbeats report the peers idle again
                many = agent.ask(cmd, cmd["timeout"] + 10)
                runs.append({"nodes": args.nodes, **many})
        finally:
            for n in nodes:
                n.stop()
            agent.close()
    return {"runs": runs}


def report(args: argparse.Namespace, res: dict) -> None:
    print()
    table = PercentileTable(44)
    table.header()
    goals: list[str] = []

    if "idle" in res:
        idle = res["idle"]
        shares = idle["shares"]
        worst = max(shares)
        print(f"idle: {args.nodes} scripted nodes, CPU per node over {idle['elapsed']:.1f} s: "
              f"median {pct(shares, .5):.2f} %, worst {worst:.2f} % (of which kernel "
              f"{idle['system']:.2f} % on average; full mesh in "
              f"{idle['mesh_s']:.1f} s; false deaths {idle['false_deaths']} while measured, "
              f"{idle['startup_false_deaths']} while all started at once; load average "
              f"{idle['load'][0]:.2f})")
        goal = 1.0 if args.nodes <= 20 else 2.0
        goals.append(f"GOAL idle CPU per node {worst:.2f} % < {goal:.0f} % (worst of "
                     f"{args.nodes}): {'MET' if worst < goal else 'MISSED'}")
    if "join" in res:
        j = res["join"]
        table.row("join: /health up -> all others list alive", j["joins"])
        table.row("join: /health up -> joiner lists all alive", j["joiner_sees"])
        table.row("crash: SIGKILL -> all others list not alive", j["crashes"])
        table.row("crash: SIGKILL -> all others list dead", j["deads"])
        print(f"{'idle false deaths (resident nodes, logs)':<44} {j['idle_false_deaths']:>3}")
        for f in j["failures"]:
            print(f"  FAILED {f}")
        p95 = pct(j["joins"], .95)
        goals.append(f"GOAL join p95 {fmt(p95)} <= 1.5 s (aim 0.5 s): "
                     f"{'MET' if p95 <= 1.5 else 'MISSED'}"
                     f"{' (aim met)' if p95 <= 0.5 else ''} [{len(j['joins'])} runs]")
        p95 = pct(j["crashes"], .95)
        goals.append(f"GOAL crash-to-removed p95 {fmt(p95)} <= 1 s: "
                     f"{'MET' if p95 <= 1.0 else 'MISSED'} [{len(j['crashes'])} runs]")
    if "load" in res:
        ld, load = res["load"], res["load"]["load"]
        tok_s = load["chunks"] / load["elapsed"] if load.get("elapsed") else 0.0
        print(f"load: {args.nodes} nodes x 1 instance (--threads {args.load_threads}), "
              f"{args.load_concurrency} streams/node for {load.get('elapsed', 0):.1f} s: "
              f"{load.get('finished')} answers, {tok_s:.1f} tok/s total, "
              f"{load.get('errors')} errors, mean self load "
              f"{fmt(load.get('mean_self_load'), '')}")
        which = f" {load['not_alive']}" if load["not_alive"] else ""
        print(f"  peer-table looks {load['samples']['looks']}, not alive "
              f"{load['samples']['not_alive']}{which}, slow answers "
              f"{load['samples']['slow']}; log lines: left {ld['left']}, "
              f"recovered {ld['recovered']}")
        for e in load.get("errors_seen", []):
            print(f"  error: {e}")
        goals.append(f"GOAL false deaths under full load {ld['left']} == 0: "
                     f"{'MET' if ld['left'] == 0 else 'MISSED'} "
                     f"({ld['recovered']} suspect flickers)")
    if "route" in res:
        runs = res["route"]["runs"]
        for r in runs:
            print(f"route: {r['nodes']} node(s), {args.route_clients} clients x "
                  f"{args.route_requests}: {r['done']} ok, {r['errors']} errors in "
                  f"{r['elapsed']:.2f} s = {r['rps']:.2f} req/s, median latency "
                  f"{fmt(r['median_latency'])}, served {r['served']}, first burst "
                  f"of {args.route_clients} served {r['first_wave']}")
            for e in r.get("errors_seen", []):
                print(f"  error: {e}")
        one = [r["rps"] for r in runs if r["nodes"] == 1]
        many = [r["rps"] for r in runs if r["nodes"] == args.nodes]
        if one and many:
            ratio = (sum(many) / len(many)) / (sum(one) / len(one))
            goal = 0.9 * args.nodes
            goals.append(f"GOAL route throughput {args.nodes} nodes / 1 node = {ratio:.2f} "
                         f">= {goal:.1f} (0.9 N): {'MET' if ratio >= goal else 'MISSED'} "
                         f"(ideal {args.nodes}.0; 1 node {1 / args.latency:.1f} req/s ideal)")
    print()
    for g in goals:
        print(g)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="N (default 3)")
    parser.add_argument("--reps", type=int, default=20,
                        help="join + crash repetitions (default 20)")
    parser.add_argument("--latency", type=float, default=0.2,
                        help="scripted seconds per answer (default 0.2)")
    parser.add_argument("--settle-s", type=float, default=1.0,
                        help="pause between a join and the crash (default 1.0)")
    parser.add_argument("--observers", type=int, default=5,
                        help="resident nodes whose peer tables the join and crash times are "
                             "read from (default 5: polling all of 50 would load them)")
    parser.add_argument("--idle-s", type=float, default=20.0,
                        help="seconds of idle CPU sampling (default 20)")
    parser.add_argument("--load-s", type=float, default=25.0,
                        help="seconds of full load (default 25)")
    parser.add_argument("--load-threads", type=int, default=1)
    parser.add_argument("--load-concurrency", type=int, default=2,
                        help="streams in flight per node (default 2: one running, one queued)")
    parser.add_argument("--load-tokens", type=int, default=96)
    parser.add_argument("--load-max-requests", type=int, default=400)
    parser.add_argument("--route-clients", type=int, default=8)
    parser.add_argument("--route-requests", type=int, default=20,
                        help="route requests per client (default 20)")
    parser.add_argument("--route-reps", type=int, default=1)
    add_phase_options(parser, PHASES)
    args = parser.parse_args()
    phases = chosen_phases(parser, args, PHASES)
    if not 2 <= args.nodes <= MAX_NODES or not 1 <= args.reps <= 50 \
            or not 1 <= args.load_s <= 120 or not 1 <= args.idle_s <= 120:
        parser.error(f"keep it bounded: 2..{MAX_NODES} nodes, 1..50 reps, 1..120 s of load "
                     "and of idle sampling")
    if "load" in phases and args.nodes > MAX_MODEL_NODES:
        parser.error(f"the load phase runs real models: at most {MAX_MODEL_NODES} nodes")

    from tests.netns import netns_available

    ok, why = netns_available()
    if not ok:
        print(f"skipped: {why}")
        return 0
    started = time.monotonic()
    res: dict[str, Any] = {}
    logdir = Path(tempfile.mkdtemp(prefix="bench-discovery-"))
    for phase in phases:
        t = time.monotonic()
        print(f"[{phase}] ...", flush=True)
        try:
            run = {"idle": phase_idle, "join": phase_join, "load": phase_load,
                   "route": phase_route}[phase]
            res[phase] = run(args, logdir)
        except BaseException:
            print(f"[{phase}] failed; node logs kept in {logdir}", flush=True)
            raise
        print(f"[{phase}] done in {time.monotonic() - t:.1f} s", flush=True)
    report(args, res)
    if args.json:
        args.json.write_text(json.dumps({"nodes": args.nodes, **res}, default=str))
    finish(started, logdir, args.keep_logs)
    return 0


if __name__ == "__main__":
    if AGENT_FLAG in sys.argv[1:]:
        agent()
    else:
        sys.exit(main())
