"""The benchmark times a backend sanely, measures memory, and its cache is reused per fingerprint."""
from __future__ import annotations

import dataclasses
import io
import itertools
import json
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console
from rich.progress import Progress

from swarm.engine.backend import Backend, GenerationRequest, TokenEvent
from swarm.sizing.benchmark import MIN_TOKENS, default_threads_options, run_benchmark
from swarm.sizing.hardware import HardwareInfo, fingerprint
from swarm.sizing.results import (
    BenchmarkCache,
    BenchmarkResult,
    best,
    composite_score,
    load_or_run,
)

FIRST_S = 0.02
TOKEN_S = 0.002


class FakeBackend:
    """Yields `max_tokens` tokens, waiting on `cancel` before each (longer before the first)."""

    name = "fake"
    model_id = "fake-model"
    context_length = 512

    def __init__(self, threads: int, fail: bool = False) -> None:
        self.threads = threads
        self.fail = fail
        self.streams = 0
        self.closed = False

    def prompt_text(self, request: GenerationRequest) -> str:
        return request.prompt or request.messages[-1].content

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[TokenEvent]:
        self.streams += 1
        assert request.params.greedy
        for k in range(request.params.max_tokens):
            if cancel.wait(TOKEN_S + (FIRST_S if k == 0 else 0.0)):
                return
            if self.fail:
                raise RuntimeError("boom")
            yield TokenEvent(" tok", k, -0.5)

    def embed(self, texts):
        raise NotImplementedError("the benchmark never embeds")

    def close(self) -> None:
        self.closed = True


class Factory:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.made: list[FakeBackend] = []

    def __call__(self, threads: int) -> Backend:
        backend = FakeBackend(threads, self.fail)
        self.made.append(backend)
        return backend


def test_a_crawling_configuration_is_timed_within_its_budget():
    """A clock that moves one second per look: the first prompt is cut once the budget is spent
    and MIN_TOKENS are decoded, and the later prompts are skipped, so one configuration costs
    about its budget however slow it is; its rate is still what was measured (1 tok/s)."""
    ticks = itertools.count()
    factory = Factory()
    progress = Progress(console=Console(file=io.StringIO()))
    with progress:
        [measured] = run_benchmark(factory, (2,), prompts=("a", "b", "c"), max_tokens=64,
                                   budget_s=10.0, clock=lambda: float(next(ticks)),
                                   progress=progress)
        assert progress.tasks[0].finished
    assert factory.made[0].streams == 2  # warm-up and the first prompt only
    assert measured.decode_tok_s == pytest.approx(1.0)
    assert next(ticks) < 2 * (MIN_TOKENS + 10 + 5)  # warm-up + budget + a few looks


def result(**changes) -> BenchmarkResult:
    base = BenchmarkResult(backend="fake", model_id="m", threads=1, instances=1, ttft_s=0.1,
                           decode_tok_s=50.0, peak_rss_bytes=10**8, score=composite_score(50.0, 0.1),
                           measured_at="2025-01-01T00:00:00+00:00")
    return dataclasses.replace(base, **changes)


def test_fake_backend_satisfies_the_protocol():
    assert isinstance(FakeBackend(1), Backend)


def test_run_benchmark_measures_each_threads_option_and_closes_it():
    factory = Factory()
    results = run_benchmark(factory, (1, 2), prompts=("a", "b"), max_tokens=6)
    assert [r.threads for r in results] == [1, 2]
    assert [b.threads for b in factory.made] == [1, 2]
    assert all(b.closed and b.streams == 3 for b in factory.made)  # warm-up + 2 prompts
    for r in results:
        assert (r.backend, r.model_id, r.instances) == ("fake", "fake-model", 1)
        assert FIRST_S * 0.9 <= r.ttft_s < 5.0
        assert 0 < r.decode_tok_s <= 1.05 / TOKEN_S
        assert r.peak_rss_bytes >= 0
        assert r.score == pytest.approx(composite_score(r.decode_tok_s, r.ttft_s))
        assert datetime.fromisoformat(r.measured_at).tzinfo is not None


def test_run_benchmark_drives_a_progress_task_to_completion():
    progress = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    with progress:
        run_benchmark(Factory(), (1,), prompts=("a",), max_tokens=2, progress=progress)
    (task,) = progress.tasks
    assert task.finished and task.completed == task.total == 3


def test_a_failing_backend_is_closed_and_the_error_propagates():
    factory = Factory(fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        run_benchmark(factory, (1,), prompts=("a",), max_tokens=2)
    assert factory.made[0].closed


def test_run_benchmark_rejects_empty_inputs():
    with pytest.raises(ValueError):
        run_benchmark(Factory(), (), prompts=("a",), max_tokens=2)
    with pytest.raises(ValueError):
        run_benchmark(Factory(), (1,), prompts=(), max_tokens=2)


@pytest.mark.parametrize("kernel_peak", [True, False])
def test_peak_rss_sees_an_allocation(kernel_peak):
    # In a fresh interpreter: in the long test process, memory that earlier tests free on
    # background threads inside the window can offset the growth (CI saw growth 0).
    import subprocess
    import sys

    code = (
        "from swarm.sizing.benchmark import PeakRss\n"
        "size = 64 * 2**20\n"
        f"with PeakRss(kernel_peak={kernel_peak}) as peak:\n"
        "    block = b'\\x01' * size\n"
        "assert len(block) == size\n"
        "print(peak.growth)\n"
    )
    root = str(Path(__file__).resolve().parent.parent)
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True, timeout=60)
    assert int(out.stdout.strip()) >= 64 * 2**20 * 0.9


@given(st.floats(0.01, 1e4), st.floats(0.01, 1e4), st.floats(0.0, 10.0))
def test_score_rises_with_decode_speed_and_falls_with_latency(slow, fast, ttft):
    slow, fast = sorted((slow, fast))
    assert composite_score(slow, ttft) <= composite_score(fast, ttft)
    assert composite_score(fast, ttft + 0.5) < composite_score(fast, ttft)
    assert composite_score(0.0, ttft) == 0.0
    assert 0 < composite_score(fast, ttft) <= fast * (1 + 1e-12)


def test_best_and_default_threads_options():
    assert best([]) is None
    assert best([result(threads=2, score=5.0), result(threads=1, score=9.0)]).threads == 1
    assert default_threads_options(1) == (1,)
    assert default_threads_options(8) == (1, 8)


def test_cache_round_trips_and_keeps_other_fingerprints(tmp_path):
    cache = BenchmarkCache(tmp_path / "sub" / "bench.json")
    assert cache.load("a") is None
    cache.save("a", [result(threads=1), result(threads=2)])
    cache.save("b", [result(backend="other")])
    assert cache.load("a") == [result(threads=1), result(threads=2)]
    assert cache.load("b") == [result(backend="other")]
    assert cache.load("c") is None
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["bench.json"]  # no tmp file left


def test_cache_ignores_corrupt_old_or_malformed_files(tmp_path):
    path = tmp_path / "bench.json"
    cache = BenchmarkCache(path)
    path.write_text("{not json")
    assert cache.load("a") is None
    cache.save("a", [result()])  # overwrites the corrupt file
    assert cache.load("a") == [result()]
    path.write_text(json.dumps({"version": 0, "entries": {"a": {"results": [result().to_dict()]}}}))
    assert cache.load("a") is None
    path.write_text(json.dumps({"version": 1, "entries": {"a": {"results": [{"backend": "x"}]}}}))
    assert cache.load("a") is None


def test_cache_ignores_unknown_fields(tmp_path):
    path = tmp_path / "bench.json"
    entry = dict(result().to_dict(), future_field=42)
    path.write_text(json.dumps({"version": 1, "entries": {"a": {"results": [entry]}}}))
    assert BenchmarkCache(path).load("a") == [result()]


def test_load_or_run_reuses_results_while_the_fingerprint_matches(tmp_path):
    hw = HardwareInfo(cpu_count_logical=2, cpu_count_physical=2, cpu_model="cpu",
                      ram_total_bytes=8 * 2**30, ram_available_bytes=6 * 2**30)
    cache = BenchmarkCache(tmp_path / "bench.json")
    factory = Factory()

    def run():
        return run_benchmark(factory, (1,), prompts=("a",), max_tokens=2)

    extra = {"model": "fake-model", "backend": "fake"}
    first, cached = load_or_run(cache, fingerprint(hw, extra), run)
    assert not cached and len(factory.made) == 1
    later = dataclasses.replace(hw, ram_available_bytes=1 * 2**30)  # free RAM is not hardware
    again, cached = load_or_run(cache, fingerprint(later, extra), run)
    assert cached and again == first and len(factory.made) == 1
    _, cached = load_or_run(cache, fingerprint(hw, extra), run, refresh=True)
    assert not cached and len(factory.made) == 2
    bigger = dataclasses.replace(hw, cpu_count_logical=4, cpu_count_physical=4)
    _, cached = load_or_run(cache, fingerprint(bigger, extra), run)
    assert not cached and len(factory.made) == 3
