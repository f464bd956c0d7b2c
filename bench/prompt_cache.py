"""What keeping the cached start of a prompt saves on llama.cpp (the default engine).

In-process, on the embedded model's default file, one instance: each scenario runs with the
prompt cache and without it (the baseline of the same run, alternating, so background load hits
both alike), and prints seconds, time to the first token and their ratio:
- `choices`: n choices of one request offering two tools (a long prompt), as `n=5` asks;
- `chat`: a conversation of several turns, each turn's prompt the whole history so far.
Answers are greedy where it matters, so both runs generate the same tokens.
Run: python bench/prompt_cache.py [--rounds 3] [--choices 5] [--turns 6] [--max-tokens 40]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from network.api.openai.schema import parse_chat  # noqa: E402
from swarm.engine.backend import GenerationRequest  # noqa: E402
from swarm.engine.llamacpp_backend import LlamaCppBackend  # noqa: E402
from swarm.engine.loader import llamacpp_available, load_backends, plan_from_config  # noqa: E402
from swarm.node.config import load_config  # noqa: E402

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city",
    "parameters": {"type": "object", "required": ["city"],
                   "properties": {"city": {"type": "string"},
                                  "unit": {"enum": ["celsius", "fahrenheit"]}}}}},
         {"type": "function", "function": {
             "name": "get_time", "description": "Get the local time in a time zone",
             "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}]
QUESTIONS = ["What is the capital of France?", "And its population?", "Name a famous museum there.",
             "What river flows through it?", "Name a dish it is known for.",
             "Which season is best to visit?", "Say goodbye in French."]


def request(body: dict) -> GenerationRequest:
    return parse_chat({"model": "default", **body}, max_tokens_limit=4096, max_n=8).generation


def timed(backend, req: GenerationRequest) -> tuple[float, float, str]:
    """(seconds, time to first token, text) of one generation."""
    started = time.perf_counter()
    first, text = None, []
    for event in backend.stream(req, threading.Event()):
        first = first if first is not None else time.perf_counter() - started
        text.append(event.text)
    return time.perf_counter() - started, first or 0.0, "".join(text)


def choices(backend, n: int, max_tokens: int) -> tuple[float, float]:
    total, ttfts = 0.0, []
    for seed in range(n):
        seconds, ttft, _ = timed(backend, request({
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
            "tools": TOOLS, "tool_choice": "required", "temperature": 0.8, "seed": seed,
            "max_tokens": max_tokens}))
        total += seconds
        ttfts.append(ttft)
    return total, statistics.median(ttfts)


def chat(backend, turns: int, max_tokens: int) -> tuple[float, float]:
    messages: list[dict[str, str]] = []
    total, ttfts = 0.0, []
    for question in QUESTIONS[:turns]:
        messages.append({"role": "user", "content": question})
        seconds, ttft, answer = timed(backend, request({
            "messages": messages, "temperature": 0, "max_tokens": max_tokens}))
        messages.append({"role": "assistant", "content": answer})
        total += seconds
        ttfts.append(ttft)
    return total, statistics.median(ttfts[1:] or ttfts)  # turn 1 has nothing cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--choices", type=int, default=5)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=40)
    args = parser.parse_args()
    if not llamacpp_available():
        sys.exit("llama-cpp-python is not installed (bash setup.sh installs it)")
    config = load_config(env={}, cli={"model.backend": "llamacpp", "model.instances": 1})
    backend = load_backends(plan_from_config(config), config)[0]
    assert isinstance(backend, LlamaCppBackend)
    scenarios = {"choices": lambda: choices(backend, args.choices, args.max_tokens),
                 "chat": lambda: chat(backend, args.turns, args.max_tokens)}
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    scenarios["choices"]()  # warm up (the tool grammar's tokenizer is built once)
    for _ in range(args.rounds):
        for name, run in scenarios.items():
            for cached in (True, False):
                backend._reuses_prefix = cached
                backend.llm.reset()
                results.setdefault((name, cached), []).append(run())
    backend.close()
    print(f"llama.cpp, 1 instance, {args.rounds} rounds, load {os.getloadavg()[0]:.1f}")
    print(f"{'scenario':<34}{'cached s':>10}{'fresh s':>10}{'speedup':>9}"
          f"{'TTFT cached':>13}{'TTFT fresh':>12}")
    labels = {"choices": f"{args.choices} choices, two tools offered",
              "chat": f"{args.turns}-turn chat (TTFT: turns 2+)"}
    for name, label in labels.items():
        on = [statistics.median(v) for v in zip(*results[(name, True)], strict=True)]
        off = [statistics.median(v) for v in zip(*results[(name, False)], strict=True)]
        print(f"{label:<34}{on[0]:>10.2f}{off[0]:>10.2f}{off[0] / on[0]:>8.2f}x"
              f"{on[1] * 1000:>11.0f}ms{off[1] * 1000:>10.0f}ms")


if __name__ == "__main__":
    main()
