"""PyTorch's MPS aborts the process when two threads encode work at once (pytorch#197805): every
transformers instance on MPS takes one process-wide lock per step. No Mac here, so the lock is
checked on the real model on the CPU, handed the MPS lock: two instances decoding in two threads
never run a step at the same time, and still answer what one alone answers."""
from __future__ import annotations

import contextlib
import threading
from typing import Any

from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.engine.loader import load_backend, plan_from_config
from swarm.engine.transformers_backend import MPS_LOCK, device_lock
from tests.engines import needs_transformers

ASK = GenerationRequest(messages=(ChatMessage("user", "Describe a walk in a forest."),),
                        params=SamplingParams(max_tokens=24, temperature=0.0))


class Overlap:
    """Wraps a model: counts how many threads are inside a forward pass at once."""

    def __init__(self, model: Any, counter: dict[str, int], lock: threading.Lock) -> None:
        self._model, self._counter, self._lock = model, counter, lock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self._counter["inside"] += 1
            self._counter["most"] = max(self._counter["most"], self._counter["inside"])
        try:
            return self._model(*args, **kwargs)
        finally:
            with self._lock:
                self._counter["inside"] -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)


def test_only_mps_work_takes_the_process_wide_lock():
    assert device_lock("mps") is MPS_LOCK
    assert isinstance(device_lock("cpu"), contextlib.nullcontext)
    assert isinstance(device_lock("cuda"), contextlib.nullcontext)


@needs_transformers
def test_two_instances_under_the_mps_lock_take_turns_and_answer_alike(node_config):
    plan = plan_from_config(node_config)
    backends = [load_backend(plan, node_config) for _ in range(2)]
    try:
        alone = "".join(e.text for e in backends[0].stream(ASK, threading.Event()))
        counter = {"inside": 0, "most": 0}
        guard = threading.Lock()
        for backend in backends:
            backend._gpu = MPS_LOCK  # what an instance on device "mps" holds
            backend.model = Overlap(backend.model, counter, guard)
        answers: list[str] = []
        start = threading.Barrier(2)

        def decode(backend: Any) -> None:
            start.wait()
            answers.append("".join(e.text for e in backend.stream(ASK, threading.Event())))

        threads = [threading.Thread(target=decode, args=(b,)) for b in backends]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert answers == [alone, alone]
        assert counter["most"] == 1
        assert not MPS_LOCK.locked()
    finally:
        for backend in backends:
            backend.close()
