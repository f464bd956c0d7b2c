"""Consensus overhead: each strategy's latency over the latency of the source it must wait for.

Three ScriptedBackend instances in an InstancePool (the API's real local path: one worker thread
each) answer in 0.2, 0.3 and 0.4 s. Prints median latencies and the ratios
  first_valid / fastest source alone   (goal <= 1.05)
  weighted_vote / slowest source alone (goal <= 1.10; a split vote, so it must wait for all)
  best_of_n / slowest source alone     (goal <= 1.10)
plus weighted_vote when the two fastest agree (decides early, so below 1 of the slowest).
Run: python bench/consensus_overhead.py [--rounds 5]; takes about 10 s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from consensus.runner import run_consensus  # noqa: E402
from swarm.engine.backend import GenerationRequest, SamplingParams  # noqa: E402
from swarm.engine.pool import Instance, InstancePool  # noqa: E402
from swarm.engine.scripted import ScriptedBackend  # noqa: E402

TOKENS = 10
TOTALS_S = (0.2, 0.3, 0.4)
REQUEST = GenerationRequest(prompt="Pick A or B.", params=SamplingParams(seed=1))


def answer(letter: str) -> str:
    """A TOKENS-word answer that normalises to the option `letter`."""
    return f"The answer is {letter} " + " ".join(["ok"] * (TOKENS - 4))


def build_pool(letters: tuple[str, str, str]) -> InstancePool:
    """One scripted instance per total latency, answering the matching letter."""
    return InstancePool([ScriptedBackend([answer(x)], token_latency_s=total / TOKENS)
                         for x, total in zip(letters, TOTALS_S, strict=True)])


async def timed(coro) -> float:
    """Seconds `coro` takes to finish."""
    start = time.perf_counter()
    await coro
    return time.perf_counter() - start


async def alone(instance: Instance) -> float:
    """One request straight to `instance`, no consensus."""
    return await timed(instance.complete(REQUEST))


async def strategy(pool: InstancePool, name: str) -> float:
    """One consensus request of n=3 over the pool's instances."""
    return await timed(run_consensus(
        name, pool.instances, REQUEST, n=3, timeout_s=10.0, rng=random.Random(0)))


async def measure(rounds: int) -> dict[str, float]:
    """Median seconds per measurement over `rounds` rounds."""
    split, agree = build_pool(("A", "B", "A")), build_pool(("A", "A", "B"))
    runs: dict[str, list[float]] = {}
    try:
        for _ in range(rounds):
            for key, coro in (
                ("fastest alone", alone(split.instances[0])),
                ("slowest alone", alone(split.instances[2])),
                ("first_valid", strategy(split, "first_valid")),
                ("weighted_vote (split)", strategy(split, "weighted_vote")),
                ("best_of_n", strategy(split, "best_of_n")),
                ("weighted_vote (agree)", strategy(agree, "weighted_vote")),
            ):
                runs.setdefault(key, []).append(await coro)
    finally:
        split.close()
        agree.close()
    return {key: statistics.median(values) for key, values in runs.items()}


def main() -> None:
    """Run the bench and print the table and the ratios against their goals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write the medians (seconds) as JSON (bench/report.py reads it)")
    args = parser.parse_args()
    med = asyncio.run(measure(args.rounds))
    if args.json:
        args.json.write_text(json.dumps(med))
    for key, value in med.items():
        print(f"{key:24s} {value * 1000:7.1f} ms")
    print()
    for key, target, goal in (("first_valid", "fastest", 1.05),
                              ("weighted_vote (split)", "slowest", 1.10),
                              ("best_of_n", "slowest", 1.10),
                              ("weighted_vote (agree)", "slowest", None)):
        ratio = med[key] / med[f"{target} alone"]
        line = f"{key} / {target} alone = {ratio:.3f}"
        if goal is not None:
            line += f" (goal <= {goal:.2f}) " + ("ok" if ratio <= goal else "OVER GOAL")
        print(line)

if __name__ == "__main__":
    main()
