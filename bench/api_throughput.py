"""Decode speed through the HTTP streaming API against the same backend called in-process.

Prints, for each backend available: in-process tok/s and time to first token, the same through
`python main.py` over loopback SSE, their ratio (goal >= 0.95), the added TTFT, and llama.cpp over
transformers tok/s. Run: python bench/api_throughput.py [--tokens 64] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from swarm.backend import ChatMessage, GenerationRequest, SamplingParams  # noqa: E402
from swarm.config import load_config  # noqa: E402
from swarm.loader import llamacpp_available, load_backends, plan_from_config  # noqa: E402

PROMPTS = ["Write a short poem about the sea.", "Explain what a CPU does.",
           "List some fruits and describe them."]


def in_process(backend_name: str, tokens: int, rounds: int, threads: int) -> tuple[float, float]:
    """Median (tok/s after the first token, TTFT seconds) calling backend.stream directly."""
    config = load_config(cli={"model.backend": backend_name, "model.threads": threads})
    backend = load_backends(plan_from_config(config), config)[0]
    rates, ttfts = [], []
    for _ in range(rounds):
        for prompt in PROMPTS:
            request = GenerationRequest(messages=(ChatMessage("user", prompt),),
                                        params=SamplingParams(max_tokens=tokens, temperature=0))
            started = time.perf_counter()
            stamps = [time.perf_counter() for _ in backend.stream(request, threading.Event())]
            ttfts.append(stamps[0] - started)
            if len(stamps) > 1:
                rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    backend.close()
    return statistics.median(rates), statistics.median(ttfts)


def over_http(backend_name: str, tokens: int, rounds: int, threads: int) -> tuple[float, float]:
    """The same measurement through `python main.py` and the streaming chat API on loopback."""
    proc = subprocess.Popen(
        [sys.executable, "main.py", "--port", "0", "--backend", backend_name,
         "--threads", str(threads), "--log-level", "info"],
        cwd=ROOT, text=True, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "200"})
    try:
        url = None
        for line in proc.stderr:  # type: ignore[union-attr]
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                url = match.group(1)
                break
        if url is None:
            raise RuntimeError("the node did not start")
        threading.Thread(target=proc.stderr.read, daemon=True).start()  # type: ignore[union-attr]
        rates, ttfts = [], []
        with httpx.Client(base_url=url, timeout=120) as client:
            for _ in range(rounds):
                for prompt in PROMPTS:
                    body = {"messages": [{"role": "user", "content": prompt}],
                            "max_tokens": tokens, "temperature": 0, "stream": True}
                    started = time.perf_counter()
                    stamps = []
                    with client.stream("POST", "/v1/chat/completions", json=body) as response:
                        for line in response.iter_lines():
                            if line.startswith("data: {"):
                                delta = json.loads(line[6:])["choices"][0].get("delta", {})
                                if delta.get("content"):
                                    stamps.append(time.perf_counter())
                    ttfts.append(stamps[0] - started)
                    if len(stamps) > 1:
                        rates.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
        return statistics.median(rates), statistics.median(ttfts)
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    backends = ["transformers"] + (["llamacpp"] if llamacpp_available() else [])
    results = {}
    for name in backends:
        direct_rate, direct_ttft = in_process(name, args.tokens, args.rounds, args.threads)
        http_rate, http_ttft = over_http(name, args.tokens, args.rounds, args.threads)
        results[name] = direct_rate
        print(f"{name:12s} in-process {direct_rate:7.1f} tok/s ttft {direct_ttft * 1000:6.0f} ms"
              f" | HTTP SSE {http_rate:7.1f} tok/s ttft {http_ttft * 1000:6.0f} ms"
              f" | ratio {http_rate / direct_rate:.3f} (goal >= 0.95)"
              f" | added ttft {(http_ttft - direct_ttft) * 1000:+.0f} ms")
    if "llamacpp" in results:
        print(f"llama.cpp / transformers decode: "
              f"{results['llamacpp'] / results['transformers']:.2f}x")
    else:
        print("llama.cpp not installed: pip install -e '.[llamacpp]' to compare")


if __name__ == "__main__":
    main()
