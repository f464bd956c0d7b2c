"""What streaming costs the node per token, apart from the model: microseconds per SSE event.

A scripted backend that produces its tokens instantly stands in for the model, behind the real
pool, routes and aiohttp server on 127.0.0.1; a client reads the raw stream and counts events.
The time per event is what every real token pays on top of the engine (the thread-to-loop hop,
the stop matcher, the chunk's JSON, the socket write). Prints the median over --rounds streams
of --tokens tokens, and the load average. Run: python bench/sse_overhead.py [--tokens 2000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from network.api.app import build_app  # noqa: E402
from swarm.engine.pool import InstancePool  # noqa: E402
from swarm.engine.scripted import ScriptedBackend  # noqa: E402
from swarm.node.config import load_config  # noqa: E402
from tests.server import ServerThread  # noqa: E402


def main() -> None:
    """Serve a scripted model, stream from it, print microseconds per event."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    config = load_config(env={}, cli={"api.max_tokens_limit": args.tokens})
    pool = InstancePool([ScriptedBackend([" tok" * args.tokens], model_id="scripted")])
    server = ServerThread(lambda: build_app(pool, config.api)).start()
    body = {"messages": [{"role": "user", "content": "x"}], "max_tokens": args.tokens,
            "stream": True}
    per_event = []
    try:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            for _ in range(args.rounds):
                started, events = time.perf_counter(), 0
                with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    for chunk in response.iter_raw():
                        events += chunk.count(b"data: ")
                per_event.append((time.perf_counter() - started) / events * 1e6)
    finally:
        server.stop()
    print(f"{statistics.median(per_event):.1f} us per SSE event (median of {args.rounds} streams "
          f"of {args.tokens} tokens; min {min(per_event):.1f}); load average "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
