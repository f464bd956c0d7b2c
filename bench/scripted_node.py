"""A real node process with a scripted backend: real mDNS, heartbeats and HTTP, fixed latency.

Takes every flag of `python main.py` (parsed by swarm.node.cli.parse, so config, environment and
flags merge exactly as for a real node) plus two of its own, and runs `main.serve` with
`--instances` ScriptedBackends instead of loading a model:

  --latency S   seconds each answer takes (before its first token; default 0.2)
  --answer TXT  the canned answer (default "Paris")

Example (inside a namespace built by tests/netns.py, never on the host's LAN):
  python bench/scripted_node.py --federation --node-id n1 --instances 1 --latency 0.2
"""
from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import main  # noqa: E402
from swarm.engine.scripted import ScriptedBackend  # noqa: E402
from swarm.node import cli  # noqa: E402
from swarm.node.loading import Engine  # noqa: E402
from swarm.node.terminal import setup_logging  # noqa: E402


def run(argv: list[str] | None = None) -> int:
    """Parse the bench flags, hand the rest to swarm.node.cli.parse and serve scripted instances."""
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--latency", type=float, default=0.2)
    own.add_argument("--answer", default="Paris")
    ours, rest = own.parse_known_args(argv)
    command, config = cli.parse(rest)
    if command != "serve":
        raise SystemExit("scripted_node.py only serves")
    setup_logging(config.log_level)
    backends = [ScriptedBackend([ours.answer], first_token_latency_s=ours.latency,
                                model_id="scripted")
                for _ in range(config.model.instances)]
    asyncio.run(main.serve(config, Engine.given(backends)))
    return 0


if __name__ == "__main__":
    sys.exit(run())
