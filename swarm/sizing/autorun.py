"""`--auto` and `main.py benchmark`: probe, benchmark once (cached), choose and explain a plan."""
from __future__ import annotations

import dataclasses
import importlib.metadata
import logging

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from swarm.engine.backend import Backend
from swarm.engine.loader import (
    LoadPlan,
    llamacpp_available,
    llamacpp_gpu_offload,
    load_backend,
    model_file,
    plan_from_config,
    transformers_available,
)
from swarm.models.store import ensure_transformers_folder
from swarm.node.config import Config
from swarm.node.terminal import console, progress_bar
from swarm.sizing.autoplan import Plan, choose_plan, render_plan
from swarm.sizing.benchmark import default_threads_options, run_benchmark
from swarm.sizing.hardware import HardwareInfo, fingerprint, probe, summary
from swarm.sizing.placement import benchmark_devices
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
            measured: list[BenchmarkResult]) -> Plan:
    gguf = base.source.is_gguf
    return choose_plan(hw, llamacpp_available=llamacpp_available(), model_is_gguf=gguf,
                       model_bytes=base.source.size_bytes, measured=measured,
                       llamacpp_gpu=gguf and llamacpp_gpu_offload(),
                       transformers_available=transformers_available(),
                       backend=_pinned(config, "backend"), device=_pinned(config, "device"),
                       dtype=_pinned(config, "dtype"), quant=_pinned(config, "quant"),
                       embedded=base.embedded)


def measure(config: Config, *, refresh: bool) -> tuple[HardwareInfo, LoadPlan, Plan,
                                                      list[BenchmarkResult], bool]:
    """Probe, then reuse or run the benchmark for the engine a first plan picks (on its device,
    and on the CPU too where a GPU may lose: Metal, MPS); plan again with what was measured."""
    hw = probe()
    base = plan_from_config(config, cores=hw.cores)
    first = _choose(hw, base, config, [])
    devices = benchmark_devices(first.device)
    key = fingerprint(hw, {"model": base.source.model_id, "size": base.source.size_bytes,
                           "backend": first.backend, "device": "+".join(devices),
                           "dtype": first.dtype, "torch": _version("torch"),
                           "llama_cpp": _version("llama-cpp-python")})
    cache = BenchmarkCache(config.cache_path / "benchmark.json")

    def run() -> list[BenchmarkResult]:
        if first.backend == "transformers":
            # Convert before timing, or the one-off conversion lands in the first-token time.
            with progress_bar("converting model") as report:
                ensure_transformers_folder(base.source, config.cache_path, report)
        else:  # the same for an F16/F32 copy (the CPU and the GPU run the same file)
            with progress_bar("preparing model") as report:
                model_file(dataclasses.replace(base, backend=first.backend, dtype=first.dtype),
                           config, report)
        results: list[BenchmarkResult] = []
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            for device in devices:
                on = dataclasses.replace(base, backend=first.backend, device=device,
                                         dtype=first.dtype if device != "cpu" else
                                         _cpu_dtype(first), instances=1, threads=1)
                # On a GPU the threads only feed it: time it with all of them, once.
                options = (hw.cores,) if device != "cpu" else default_threads_options(hw.cores)

                def load(threads: int, on: LoadPlan = on) -> Backend:
                    return load_backend(dataclasses.replace(on, threads=threads), config)

                results += run_benchmark(load, options, progress=progress, device=device)
        return results

    results, cached = load_or_run(cache, key, run, refresh=refresh)
    plan = _choose(hw, base, config, results)
    return hw, base, plan, results, cached


def _cpu_dtype(plan: Plan) -> str:
    """The dtype a CPU run of `plan` uses (float16 on the CPU is slow: compare with float32)."""
    return "float32" if plan.backend == "transformers" else plan.dtype


def _results_table(results: list[BenchmarkResult], cached: bool) -> Table:
    table = Table(title="first-run benchmark" + (" (cached)" if cached else ""))
    for column in ("backend", "device", "threads", "first token", "decode", "memory", "score"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(r.backend, r.device, str(r.threads), f"{r.ttft_s * 1000:.0f} ms",
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
    top = best([r for r in results if r.device == plan.device]) or best(results)
    return chosen, (top.score * instances if top else 0.0)


def run_benchmark_command(config: Config) -> None:
    """`main.py benchmark`: re-run the benchmark, replace the cached result, print the plan."""
    hw, _base, plan, results, cached = measure(config, refresh=True)
    console.print(f"[bold]hardware:[/] {summary(hw)}")
    console.print(_results_table(results, cached))
    console.print(render_plan(plan))
