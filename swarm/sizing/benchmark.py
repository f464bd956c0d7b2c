"""The first-run benchmark: time to first token, decode speed and memory per configuration.

Memory: `peak_rss_bytes` is how far this process's resident set rose above its level just before
the backend was loaded, at its highest point during loading, warm-up and the timed prompts, i.e.
what one more instance costs. On Linux the kernel's high-water mark (VmHWM) is reset through
/proc/self/clear_refs and read back, so short spikes are counted; elsewhere a thread samples the
RSS with psutil every 20 ms. The loading spike is included on purpose: instances load one after
another, and the planner would rather over- than under-estimate.

Time: each configuration is timed for at most `DEFAULT_BUDGET_S` once `MIN_TOKENS` are decoded
(later prompts are skipped, a long answer is cut): a configuration that crawls (oversubscribed
cores on a busy machine; the CPU beside Metal on a Mac) has shown its rate by then, and the first
start of `--auto` stays bounded however many configurations it compares.

What is measured, its score and its cache are swarm/sizing/results.py's.
"""
from __future__ import annotations

import gc
import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING

from swarm.engine.backend import Backend, ChatMessage, GenerationRequest, SamplingParams
from swarm.sizing.results import BenchmarkResult, composite_score

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 64
DEFAULT_BUDGET_S = 10.0  # module doc: timing one configuration, once MIN_TOKENS are decoded
MIN_TOKENS = 8
DEFAULT_PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a bicycle works to a ten-year-old.",
    "Describe a walk through a forest in autumn.",
)


def default_threads_options(cores: int) -> tuple[int, ...]:
    """Threads to try: one (the per-instance setting on CPU) and all cores (one big instance)."""
    return tuple(sorted({1, max(1, cores)}))


class PeakRss:
    """Context manager measuring this process's peak RSS growth over its block (module doc).

    Use one at a time: on Linux it resets the process-wide kernel high-water mark.
    """

    def __init__(self, interval_s: float = 0.02, *, kernel_peak: bool = True) -> None:
        """`kernel_peak=False` forces the sampling thread even where VmHWM works."""
        import psutil

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm = False
        self._kernel_peak = kernel_peak
        self.baseline = 0
        self.peak = 0

    @property
    def growth(self) -> int:
        """Peak RSS above the baseline, in bytes (0 if RSS never rose)."""
        return max(0, self.peak - self.baseline)

    def _rss(self) -> int:
        return int(self._process.memory_info().rss)

    @staticmethod
    def _vm_hwm() -> int:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        raise OSError("no VmHWM in /proc/self/status")

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> PeakRss:
        self.baseline = self.peak = self._rss()
        if self._kernel_peak and sys.platform.startswith("linux"):
            try:
                with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
                    fh.write("5")  # reset the peak RSS to the current RSS
                self._vm_hwm()
                self._hwm = True
            except OSError:
                self._hwm = False
        if not self._hwm:
            self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self._rss(), self._vm_hwm() if self._hwm else 0)


def _request(prompt: str, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", prompt),),
                             params=SamplingParams(max_tokens=max_tokens, temperature=0.0))


def _time_stream(backend: Backend, request: GenerationRequest, clock: Callable[[], float],
                 deadline: float = float("inf"), decoded: int = 0,
                 ) -> tuple[float | None, int, float]:
    """(seconds to the first token or None, tokens after the first, seconds after the first);
    cut at `deadline` once `decoded` + the tokens after the first reach `MIN_TOKENS`."""
    cancel = threading.Event()
    started = clock()
    first: float | None = None
    last = started
    count = 0
    for event in backend.stream(request, cancel):
        if event.token_id < 0:
            continue  # held-back text at the end, no token
        last = clock()
        if first is None:
            first = last
        count += 1
        if last > deadline and decoded + count - 1 >= MIN_TOKENS:
            cancel.set()  # the backend stops at its next step
    if first is None:
        return None, 0, 0.0
    return first - started, count - 1, last - first


def _measure(backend: Backend, threads: int, prompts: Sequence[str], max_tokens: int,
             step: Callable[[str], None], budget_s: float,
             clock: Callable[[], float]) -> BenchmarkResult:
    """Warm up once, then time the prompts on one loaded backend, within `budget_s` (module doc)."""
    step("warming up")
    _time_stream(backend, _request(prompts[0], min(MIN_TOKENS, max_tokens)), clock)
    deadline = clock() + budget_s
    ttfts: list[float] = []
    decode_tokens = 0
    decode_s = 0.0
    for i, prompt in enumerate(prompts):
        if i > 0 and clock() > deadline and decode_tokens >= MIN_TOKENS:
            step("out of time")
            continue
        ttft, tokens, seconds = _time_stream(backend, _request(prompt, max_tokens), clock,
                                             deadline, decode_tokens)
        if ttft is not None:
            ttfts.append(ttft)
            decode_tokens += tokens
            decode_s += seconds
        step(f"prompt {i + 1}/{len(prompts)}")
    ttft_s = statistics.median(ttfts) if ttfts else 0.0
    tok_s = decode_tokens / decode_s if decode_s > 0 else 0.0
    return BenchmarkResult(
        backend=backend.name, model_id=backend.model_id, threads=threads, instances=1,
        ttft_s=ttft_s, decode_tok_s=tok_s, peak_rss_bytes=0, score=composite_score(tok_s, ttft_s),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def run_benchmark(
    backend_factory: Callable[[int], Backend],
    threads_options: Sequence[int],
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    progress: Progress | None = None,
    device: str = "cpu",
    budget_s: float = DEFAULT_BUDGET_S,
    clock: Callable[[], float] = time.perf_counter,
) -> list[BenchmarkResult]:
    """Load one instance per thread count, warm up, time greedy answers (for about `budget_s`
    each, module doc), close; one result each.

    `backend_factory(threads)` loads a backend running on `device` (recorded in each result).
    Errors propagate after the backend is closed. `progress`, if given, must already be started;
    one task is added and completed.
    """
    if not prompts or max_tokens < 1 or not threads_options:
        raise ValueError("run_benchmark needs prompts, threads options and max_tokens >= 1")
    total = len(threads_options) * (len(prompts) + 2)
    task = progress.add_task("benchmark", total=total) if progress is not None else None
    results: list[BenchmarkResult] = []
    for threads in threads_options:
        def step(stage: str, advance: int = 1, threads: int = threads) -> None:
            if progress is not None and task is not None:
                progress.update(task, advance=advance,
                                description=f"benchmark, {device}, {threads} thread(s): {stage}")

        step("loading", advance=0)
        gc.collect()  # let the previous configuration's memory go before taking the baseline
        with PeakRss() as peak:
            backend = backend_factory(threads)
            try:
                step("loaded")
                result = _measure(backend, threads, prompts, max_tokens, step, budget_s, clock)
            finally:
                backend.close()
        result = replace(result, peak_rss_bytes=peak.growth, device=device)
        log.info("benchmark %s on %s, %d thread(s): first token %.0f ms, %.1f tok/s, %.0f MB, "
                 "score %.1f", result.backend, device, threads, result.ttft_s * 1000, result.decode_tok_s,
                 result.peak_rss_bytes / 1e6, result.score)
        results.append(result)
    if progress is not None and task is not None:
        progress.update(task, completed=total, description="benchmark: done")
    return results
