"""Layer spans on loopback, measured: single-stream decode through 2 span servers and through one
server over the same model run locally (all in the span venv), the stall when a span server is
SIGKILLed mid-generation with a replica up, the time to re-plan after a loss, and per span server
its start time, memory (PSS of its process tree) and process count.

    python bench/spans.py [--tokens 48] [--reps 3] [--stall-reps 2] [--threads N] [--decode-only]

Prints numbers; asserts nothing. Ratios are measured in the same run; look at the load it prints.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from network.coordination.spans import Span, SpanNode, plan_spans  # noqa: E402
from network.petals.environment import READY_MARK  # noqa: E402
from network.petals.supervisor import SpanSupervisor  # noqa: E402
from tests.span_swarm import PREFIX, QUESTION, generate_timed, span_swarm  # noqa: E402


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def tree_memory(pid: int | None) -> tuple[float, int]:
    """PSS in MB of a process and its descendants, and how many processes."""
    import psutil

    assert pid is not None, "the process is not running"
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            pass
    return total / 2**20, len(procs)


def request(tokens: int) -> dict:
    return {"messages": QUESTION, "max_tokens": tokens, "temperature": 0, "ignore_eos": True}


async def decode_rates(clients: dict, tokens: int, reps: int) -> dict:
    """Median decode tokens/s after the first token per client, measured in interleaved rounds
    (so a change of load hits every client alike), and each client's tokens."""
    for client in clients.values():
        await client.complete({**request(tokens), "max_tokens": 4})  # warm-up
    rates: dict = {name: [] for name in clients}
    ids: dict = {}
    for _ in range(reps):
        for name, client in clients.items():
            ids[name], final = await client.complete(request(tokens))
            rates[name].append((final["completion_tokens"] - 1) / final["decode_s"])
    return {name: (statistics.median(r), ids[name]) for name, r in rates.items()}


async def stall(swarm, tokens: int) -> tuple[float, float, bool]:
    """(longest gap after the kill, median gap before it, tokens still equal) in seconds."""
    client = await swarm.client()
    reference, _ = await client.complete(request(tokens))
    killed_at: list[float] = []

    async def kill(n: int) -> None:
        if n == 10:
            swarm.server_on_route(client, 20).kill()
            killed_at.append(time.monotonic())

    ids, times, _final = await generate_timed(client, request(tokens), kill)
    before = [b - a for a, b in zip(times[1:10], times[2:10], strict=False)]
    after = max(b - a for a, b in zip(times[9:], times[10:], strict=False))
    await client.stop()
    return after, statistics.median(before), ids == reference


async def main(args: argparse.Namespace) -> None:
    print(load())
    log_dir = Path(tempfile.mkdtemp(prefix="bench-spans-"))
    async with span_swarm(log_dir) as swarm:
        mark = swarm.environment.root / READY_MARK
        print(f"span venv: {swarm.environment.root} ({mark.read_text().strip()}), "
              f"{swarm.environment.disk_bytes() / 2**20:.0f} MB")
        t0 = time.monotonic()
        await swarm.start_dht()
        print(f"DHT bootstrap up in {time.monotonic() - t0:.1f} s")
        # Two swarms on one DHT, apart by prefix: the model in 2 spans, and in one server.
        await swarm.add_servers([(0, 15), (15, 30)], threads=args.threads, prefix="bench-two")
        await swarm.add_servers([(0, 30)], threads=args.threads, prefix="bench-one")
        for server in swarm.servers:
            pss, count = tree_memory(server.pid)
            print(f"span server {server.spec.start}:{server.spec.end}: started in "
                  f"{server.start_s:.1f} s, PSS {pss:.0f} MB, {count} processes")
        clients = {"local": await swarm.client(local=True, threads=args.threads),
                   "2 spans": await swarm.client(prefix="bench-two", threads=args.threads),
                   "1 server": await swarm.client(prefix="bench-one", threads=args.threads)}
        print(load())
        results = await decode_rates(clients, args.tokens, args.reps)
        local_rate, local_ids = results["local"]
        print(f"local in-process: {local_rate:.1f} tok/s decode")
        for name in ("2 spans", "1 server"):
            rate, ids = results[name]
            print(f"{name}: {rate:.1f} tok/s decode ({rate / local_rate:.2f}x local), "
                  f"tokens equal local: {ids == local_ids}")
        pss, count = tree_memory(swarm.servers[0].pid)
        print(f"server 0:15 after use: PSS {pss:.0f} MB, {count} processes")
        for process in [*clients.values(), *swarm.servers]:
            await process.stop()
        swarm.servers.clear()
        swarm.clients.clear()
        if args.decode_only:
            print(load())
            return

        for rep in range(args.stall_reps):
            await swarm.add_servers([(0, 15), (15, 30), (15, 30)], threads=args.threads)
            gap, usual, same = await stall(swarm, args.tokens)
            print(f"SIGKILL with a replica (run {rep + 1}): longest gap {gap:.2f} s against a "
                  f"usual {usual:.3f} s, stall {gap - usual:.2f} s; tokens equal: {same}")
            for server in list(swarm.servers):
                await server.stop()
            swarm.servers.clear()

        await replan(swarm, args, log_dir)
    print(load())


async def replan(swarm, args: argparse.Namespace, log_dir: Path) -> None:
    """Node b (15:30) is lost without a replica: plan again, node a serves 0:30, first token."""
    peers = swarm.dht.initial_peers
    nodes = {n: SpanSupervisor(swarm.environment, swarm.model_dir, PREFIX,
                               threads=args.threads, log_dir=log_dir) for n in ("a", "b")}
    try:
        await asyncio.gather(nodes["a"].apply((0, 15), peers), nodes["b"].apply((15, 30), peers))
        client = await swarm.client(threads=args.threads)
        await client.complete({"messages": QUESTION, "max_tokens": 2, "temperature": 0})
        lost_server = nodes["b"].server
        assert lost_server is not None
        lost_server.kill()
        lost = time.monotonic()
        planned = plan_spans(30, [SpanNode("a", 1.0, 30)],
                             {"a": Span("a", 0, 15), "b": Span("b", 15, 30)})
        plan_s = time.monotonic() - lost
        await nodes["b"].close()
        await nodes["a"].apply((planned.spans[0].start, planned.spans[0].end), peers)
        serving_s = time.monotonic() - lost
        await client.refresh()  # the node does this when a new plan arrives
        ids, times, _ = await generate_timed(client, {"messages": QUESTION, "max_tokens": 2,
                                                      "temperature": 0})
        print(f"re-plan after a loss: plan {plan_s * 1000:.0f} ms, node a serving 0:30 after "
              f"{serving_s:.1f} s, first token after {times[0] - lost:.1f} s")
        await client.stop()
    finally:
        for supervisor in nodes.values():
            await supervisor.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stall-reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process")
    parser.add_argument("--decode-only", action="store_true",
                        help="only the decode rates (no SIGKILL stall, no re-plan)")
    parser.add_argument("--omp-passive", action="store_true",
                        help="OMP_WAIT_POLICY=PASSIVE in every span process (no spinning)")
    arguments = parser.parse_args()
    if arguments.omp_passive:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    asyncio.run(main(arguments))
