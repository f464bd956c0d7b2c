"""The install an Intel Mac gets (no torch, no transformers: setup.sh leaves the `transformers`
extra out there) still plans, loads and answers with llama.cpp: the real embedded model in a
child process where importing torch or transformers fails as it would there."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra [llamacpp])")

CHILD = textwrap.dedent("""
    import importlib.abc, json, sys, threading

    ABSENT = ("torch", "transformers", "accelerate", "safetensors")

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ABSENT:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Absent())

    from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
    from swarm.engine.constraint import Constraint
    from swarm.engine.loader import load_backend, plan_from_config, transformers_available
    from swarm.node.config import load_config
    from swarm.sizing.hardware import probe

    config = load_config(env={k: v for k, v in __import__("os").environ.items()
                              if k == "LOCAL_SWARM_MODEL_CACHE_DIR"},
                         cli={"model.instances": 1, "model.threads": 1})
    hw = probe()
    plan = plan_from_config(config, cores=hw.cores)
    backend = load_backend(plan, config)
    request = GenerationRequest(
        messages=(ChatMessage("user", "Is the sun hot?"),),
        params=SamplingParams(max_tokens=8, temperature=0),
        constraint=Constraint("regex", "^(yes|no) \\ufffd$"))
    text = "".join(e.text for e in backend.stream(request, threading.Event()))
    backend.close()
    print(json.dumps({"transformers": transformers_available(), "backend": plan.backend,
                      "dtype": plan.dtype, "text": text,
                      "imported": sorted(m for m in sys.modules if m.split(".")[0] in ABSENT)}))
""")


def test_llamacpp_plans_loads_and_answers_without_torch():
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["transformers"] is False and seen["imported"] == []
    assert (seen["backend"], seen["dtype"]) == ("llamacpp", "f16")
    assert seen["text"] in ("yes \ufffd", "no \ufffd")  # llguidance enforced it; U+FFFD kept
