"""`--auto` and `main.py benchmark`: probe, benchmark once (cached), choose and explain a plan."""
from __future__ import annotations

import dataclasses
import importlib.metadata
import logging

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from swarm.engine.loader import (
    LoadPlan,
    llamacpp_available,
    load_backend,
    model_file,
    plan_from_config,
)
from swarm.models.store import ensure_transformers_folder
from swarm.node.config import Config
from swarm.node.terminal import console, progress_bar
from swarm.sizing.autoplan import Plan, choose_plan, render_plan
from swarm.sizing.benchmark import default_threads_options, run_benchmark
from swarm.sizing.hardware import HardwareInfo, fingerprint, probe, summary
from swarm.sizing.results import BenchmarkCache, BenchmarkResult, best, load_or_run

log = logging.getLogger(__name__)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _pinned(config: Config, key: str) -> str:
    """The configured value of model.<key> if the user set it, else "auto"."""
    return getattr(config.model, key) if f"model.{key}" in config.explicit else "auto"


def _choose(hw: HardwareInfo, base: LoadPlan, config: Config,
            bench: BenchmarkResult | None) -> Plan:
    return choose_plan(hw, llamacpp_available=llamacpp_available(),
                       model_is_gguf=base.source.is_gguf, model_bytes=base.source.size_bytes,
                       bench=bench, backend=_pinned(config, "backend"),
                       device=_pinned(config, "device"), dtype=_pinned(config, "dtype"),
                       quant=_pinned(config, "quant"), embedded=base.embedded)


def measure(config: Config, *, refresh: bool) -> tuple[HardwareInfo, LoadPlan, Plan,
                                                      list[BenchmarkResult], bool]:
    """Probe, then reuse or run the benchmark for the engine a first plan picks; plan again."""
    hw = probe()
    base = plan_from_config(config)
    first = _choose(hw, base, config, None)
    bench_plan = dataclasses.replace(base, backend=first.backend, device=first.device,
                                     dtype=first.dtype, instances=1, threads=1)
    key = fingerprint(hw, {"model": base.source.model_id, "size": base.source.size_bytes,
                           "backend": first.backend, "device": first.device,
                           "dtype": first.dtype, "torch": _version("torch"),
                           "llama_cpp": _version("llama-cpp-python")})
    cache = BenchmarkCache(config.cache_path / "benchmark.json")

    def run() -> list[BenchmarkResult]:
        if first.backend == "transformers":
            # Convert before timing, or the one-off conversion lands in the first-token time.
            with progress_bar("converting model") as report:
                ensure_transformers_folder(base.source, config.cache_path, report)
        else:  # the same for an F16/F32 copy
            with progress_bar("preparing model") as report:
                model_file(bench_plan, config, report)
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            return run_benchmark(
                lambda threads: load_backend(dataclasses.replace(bench_plan, threads=threads),
                                             config),
                default_threads_options(hw.cores), progress=progress)

    results, cached = load_or_run(cache, key, run, refresh=refresh)
    plan = _choose(hw, base, config, best(results))
    return hw, base, plan, results, cached


def _results_table(results: list[BenchmarkResult], cached: bool) -> Table:
    table = Table(title="first-run benchmark" + (" (cached)" if cached else ""))
    for column in ("backend", "threads", "first token", "decode", "memory", "score"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.backend, str(r.threads), f"{r.ttft_s * 1000:.0f} ms",
                      f"{r.decode_tok_s:.1f} tok/s", f"{r.peak_rss_bytes / 1e6:.0f} MB",
                      f"{r.score:.1f}")
    return table


def apply_auto_plan(base: LoadPlan, config: Config) -> tuple[LoadPlan, float]:
    """The load plan `--auto` chooses (keeping every key the user set) and the node's benchmark
    score (best single-instance score x instances); prints what and why."""
    hw, _base, plan, results, cached = measure(config, refresh=False)
    console.print(f"[bold]hardware:[/] {summary(hw)}")
    console.print(_results_table(results, cached))
    console.print(render_plan(plan))
    for warning in plan.warnings:
        log.warning("%s", warning)
    instances = base.instances if "model.instances" in config.explicit else plan.instances
    if "model.threads" in config.explicit:
        threads = base.threads
    elif "model.instances" in config.explicit:
        threads = max(1, hw.cores // instances)
    else:
        threads = plan.threads_per_instance
    chosen = dataclasses.replace(base, backend=plan.backend, device=plan.device, dtype=plan.dtype,
                                 instances=instances, threads=threads)
    top = best(results)
    return chosen, (top.score * instances if top else 0.0)


def run_benchmark_command(config: Config) -> None:
    """`main.py benchmark`: re-run the benchmark, replace the cached result, print the plan."""
    hw, _base, plan, results, cached = measure(config, refresh=True)
    console.print(f"[bold]hardware:[/] {summary(hw)}")
    console.print(_results_table(results, cached))
    console.print(render_plan(plan))
