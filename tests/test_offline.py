"""The embedded model converts and loads with the network forbidden: nothing is fetched."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.engines import needs_transformers

ROOT = Path(__file__).resolve().parent.parent

GUARDED = textwrap.dedent("""
    import socket, sys
    sys.path.insert(0, {root!r})
    attempts = []
    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted: %r" % (args,))
    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    socket.socket.connect = refuse
    import os
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.pop(key, None)  # prove the loader sets them itself
    from swarm.node.config import load_config
    from swarm.engine.loader import load_backends, plan_from_config
    config = load_config(env={{}}, cli={{"model.backend": "transformers",
                                          "model.cache_dir": {cache!r}}})
    backend = load_backends(plan_from_config(config), config)[0]
    import threading
    from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
    request = GenerationRequest(messages=(ChatMessage("user", "Hi"),),
                                params=SamplingParams(max_tokens=2, temperature=0))
    tokens = list(backend.stream(request, threading.Event()))
    assert tokens, "no token generated"
    assert not attempts, attempts
    print("OFFLINE-OK", len(tokens))
""")


@pytest.mark.slow
@needs_transformers
def test_conversion_and_generation_never_touch_the_network(tmp_path):
    script = GUARDED.format(root=str(ROOT), cache=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=600)
    assert "OFFLINE-OK" in result.stdout, result.stderr[-3000:]
    assert any((tmp_path / "cache" / "models").glob("*/model.safetensors"))
