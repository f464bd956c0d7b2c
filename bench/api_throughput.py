"""Decode speed through the HTTP streaming API against the same backend called in-process.

Prints, for each engine and file type (transformers float32; llama.cpp on the embedded Q4_1 file
and on its F16 copy, the default): in-process tok/s and time to first token, the same through
`python main.py` over loopback SSE (measured alternately with the in-process runs, so background
load hits both alike), their ratio (goal >= 0.95), the added TTFT, and llama.cpp over transformers
tok/s. Run: python bench/api_throughput.py [--tokens 64] [--rounds 3] [--configs ENGINE:WEIGHTS ...]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.node_process import start_node  # noqa: E402
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams  # noqa: E402
from swarm.engine.loader import llamacpp_available, load_backends, plan_from_config  # noqa: E402
from swarm.node.config import load_config  # noqa: E402

PROMPTS = ["Write a short poem about the sea.", "Explain what a CPU does.",
           "List some fruits and describe them."]


def _rate(stamps: list[float], started: float) -> tuple[float, float]:
    """(tok/s after the first token, time to first token) of one streamed answer."""
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    return rate, stamps[0] - started


def direct_once(backend, prompt: str, tokens: int) -> tuple[float, float]:
    """One greedy answer through backend.stream in this process."""
    request = GenerationRequest(messages=(ChatMessage("user", prompt),),
                                params=SamplingParams(max_tokens=tokens, temperature=0))
    started = time.perf_counter()
    stamps = [time.perf_counter() for _ in backend.stream(request, threading.Event())]
    return _rate(stamps, started)


def http_once(client: httpx.Client, prompt: str, tokens: int) -> tuple[float, float]:
    """The same answer through the streaming chat API of a `python main.py` node."""
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": tokens,
            "temperature": 0, "stream": True}
    started = time.perf_counter()
    stamps = []
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line[6:])["choices"][0].get("delta", {})
                if delta.get("content"):
                    stamps.append(time.perf_counter())
    return _rate(stamps, started)


def _flags(label: str) -> tuple[str, str, str]:
    """("--backend", "--dtype" or "--quant", weights) of an ENGINE:WEIGHTS label."""
    engine, weights = label.split(":")
    return engine, "--dtype" if engine == "transformers" else "--quant", weights


def start_configured(label: str, threads: int) -> tuple[subprocess.Popen[str], str]:
    """Start `python main.py` on a free loopback port for ENGINE:WEIGHTS and return its URL."""
    engine, flag, weights = _flags(label)
    return start_node(["--backend", engine, flag, weights, "--threads", str(threads)])


def compare(label: str, tokens: int, rounds: int, threads: int) -> dict[str, float]:
    """Median in-process and HTTP figures, measured alternately so background load hits both."""
    engine, flag, weights = _flags(label)
    key = "model.dtype" if flag == "--dtype" else "model.quant"
    config = load_config(cli={"model.backend": engine, key: weights, "model.threads": threads})
    backend = load_backends(plan_from_config(config), config)[0]
    proc, url = start_configured(label, threads)
    direct, http = [], []
    try:
        with httpx.Client(base_url=url, timeout=120) as client:
            http_once(client, PROMPTS[0], 4)  # warm both paths once
            direct_once(backend, PROMPTS[0], 4)
            for _ in range(rounds):
                for prompt in PROMPTS:
                    direct.append(direct_once(backend, prompt, tokens))
                    http.append(http_once(client, prompt, tokens))
    finally:
        proc.terminate()
        proc.wait(10)
        backend.close()
    med = statistics.median
    return {"direct_rate": med(r for r, _ in direct), "direct_ttft": med(t for _, t in direct),
            "http_rate": med(r for r, _ in http), "http_ttft": med(t for _, t in http)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    default = ["transformers:float32"]
    if llamacpp_available():
        default += ["llamacpp:file", "llamacpp:f16"]
    parser.add_argument("--configs", nargs="+", default=default,
                        help="ENGINE:WEIGHTS to measure (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write each config's medians as JSON (bench/report.py reads it)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at the start; {args.threads} threads")
    results = {}
    measured = {}
    for name in args.configs:
        m = measured[name] = compare(name, args.tokens, args.rounds, args.threads)
        direct_rate, direct_ttft = m["direct_rate"], m["direct_ttft"]
        http_rate, http_ttft = m["http_rate"], m["http_ttft"]
        results[name] = direct_rate
        print(f"{name:20s} in-process {direct_rate:7.1f} tok/s ttft {direct_ttft * 1000:6.0f} ms"
              f" | HTTP SSE {http_rate:7.1f} tok/s ttft {http_ttft * 1000:6.0f} ms"
              f" | ratio {http_rate / direct_rate:.3f} (goal >= 0.95)"
              f" | added ttft {(http_ttft - direct_ttft) * 1000:+.0f} ms")
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    base = results.get("transformers:float32")
    for name, rate in results.items():
        if base and name.startswith("llamacpp"):
            print(f"{name} / transformers:float32 decode: {rate / base:.2f}x")
    if not llamacpp_available():
        print("llama.cpp not installed: pip install -e '.[llamacpp]' to compare")
    if args.json:
        args.json.write_text(json.dumps(measured))


if __name__ == "__main__":
    main()
