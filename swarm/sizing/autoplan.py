"""`--auto`: choose backend, device, dtype, threads and instances from the hardware, and say why.

`choose_plan` is a pure function of its arguments (no I/O, no clock). Rules, from facts.md:
- llama.cpp for a GGUF file when installed (about 7x faster than transformers on CPU); where the
  model runs (CPU, CUDA, Metal, MPS), the memory it draws on and how many instances a GPU takes
  are `placement.py`'s rules;
- for the embedded model, llama.cpp on an F16 copy of its Q4_1 file (exact: the float32
  reference's greedy tokens) unless only the Q4_1 file fits memory; any other GGUF as it is;
- instances x threads never exceed the cores: oversubscription collapses throughput
  (2 processes x 2 threads on 2 cores: 112 tok/s fell to 19-30); on Apple Silicon only the
  performance cores count (a thread on an efficiency core holds back the others);
- on CPU, one single-threaded instance per core (most total tok/s, and consensus fans out over
  local instances), up to `max_instances`, as many as fit available RAM less the headroom;
- on a GPU, as many as fit its memory less the headroom, within `placement.instance_cap`.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from swarm.models.store import ModelError
from swarm.sizing.hardware import HardwareInfo
from swarm.sizing.placement import (
    MIB,
    bench_lines,
    choose_device,
    cores_why,
    instance_cap,
    memory_pool,
)
from swarm.sizing.placement import count as _n
from swarm.sizing.placement import size as _gb
from swarm.sizing.results import BenchmarkResult, best

if TYPE_CHECKING:
    from rich.console import RenderableType

log = logging.getLogger(__name__)

GGUF_TO_FLOAT32 = 5.5  # a Q4 GGUF dequantizes to ~5.5x its size in float32 (98 MB -> 538 MB)
GGUF_TO_FLOAT16 = 2.75  # and to ~2.75x in float16 (98 MB -> 271 MB)


@dataclass(frozen=True)
class Plan:
    """What `--auto` chose, the memory arithmetic behind it, and one sentence per choice."""

    backend: str  # "transformers" | "llamacpp"
    device: str  # "cpu" | "cuda" | "mps" (transformers) | "metal" (llama.cpp on Apple Silicon)
    dtype: str  # transformers: "float32" | "bfloat16" | "float16"; llama.cpp: "f16" | "f32" | "gguf"
    threads_per_instance: int
    instances: int
    reasons: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    instance_bytes: int = 0  # memory one instance needs (RAM, or VRAM on CUDA)
    memory_budget_bytes: int = 0  # available RAM (or GPU memory) less the headroom


def _backend(requested: str, llamacpp_available: bool, model_is_gguf: bool,
             transformers_available: bool) -> tuple[str, str]:
    if requested != "auto":
        return requested, f"{requested}: as configured"
    if llamacpp_available and model_is_gguf:
        return "llamacpp", "llama.cpp: installed and the model is a GGUF file (about 7x faster on CPU)"
    why = ("the model is not a GGUF file" if llamacpp_available else
           "llama-cpp-python is not installed (pip install -e '.[llamacpp]' is about 7x faster on CPU)")
    if not transformers_available:
        raise ModelError(f"no engine here can run this model: {why}, and the transformers engine "
                         "is not installed (pip install -e '.[transformers]'; see README)")
    return "transformers", f"transformers: {why}"


def _quant(requested: str, embedded: bool, exact_fits: bool) -> tuple[str, str]:
    if requested != "auto":
        return ("gguf" if requested == "file" else requested), f"quant {requested}: as configured"
    if not embedded:
        return "gguf", "weights: your GGUF file as it is (its own quantization)"
    if not exact_fits:
        return "gguf", ("weights: the embedded Q4_1 file, as only it fits memory (faster and "
                        "smaller, but its greedy answers differ from the float32 reference)")
    return "f16", ("weights: an F16 copy of the embedded Q4_1 file (made once): the float32 "
                   "reference's greedy tokens, where Q4_1 flips answers such as \"What is the "
                   "capital of France?\" (greedy agreement 0.98 against 0.35 in bench/agreement.py), "
                   "for about 0.75x to 0.9x its speed; --quant file for speed")


def _dtype(requested: str, backend: str, device: str) -> tuple[str, str]:
    if backend == "llamacpp":
        return "gguf", "dtype does not apply to llama.cpp (see weights)"
    if requested != "auto":
        return requested, f"{requested}: as configured"
    if device == "cuda":
        return "float16", "float16 on CUDA: half the memory of float32, supported by every CUDA GPU"
    if device in ("mps", "metal"):
        return "float16", "float16 on MPS: Apple GPUs compute in half precision natively"
    return "float32", ("float32 on CPU: bfloat16 decodes up to 1.5x faster but shifts "
                       "log-probabilities and can change greedy answers, which consensus compares; "
                       "set dtype = \"bfloat16\" to trade accuracy for speed")


def estimate_instance_bytes(backend: str, device: str, dtype: str, model_bytes: int,
                            model_is_gguf: bool) -> int:
    """Rough memory of one loaded instance (VRAM on CUDA, RAM otherwise); errs on the high side."""
    model_bytes = max(0, model_bytes)
    if backend == "llamacpp":
        # mmapped weights (a dequantized copy is larger) plus the KV cache at full context
        grow = {"f16": GGUF_TO_FLOAT16, "f32": GGUF_TO_FLOAT32}.get(dtype, 1.0)
        return int(model_bytes * grow * 1.1) + (256 if device == "cuda" else 192) * MIB
    weights = model_bytes * GGUF_TO_FLOAT32 if model_is_gguf else float(model_bytes)
    if model_is_gguf and dtype != "float32":
        weights /= 2
    if device == "cuda":
        return int(weights * 1.2) + 512 * MIB  # plus the CUDA context
    return int(weights * 1.5) + 256 * MIB  # activations, tokenizer and Python objects


def choose_plan(
    hw: HardwareInfo,
    *,
    llamacpp_available: bool,
    model_is_gguf: bool,
    model_bytes: int,
    bench: BenchmarkResult | None = None,
    measured: Sequence[BenchmarkResult] = (),
    llamacpp_gpu: bool = False,
    transformers_available: bool = True,
    backend: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    quant: str = "auto",
    embedded: bool = False,
    headroom_fraction: float = 0.25,
    max_instances: int = 8,
) -> Plan:
    """The plan for this machine; "auto" arguments are chosen, others kept (pinned by the user).

    `measured`: every first-run benchmark result (GPU and CPU, compared on Metal and MPS);
    `bench` defaults to the best of them on the chosen backend and device. A `bench` run on CPU
    replaces the memory estimate with the measured per-instance peak. `llamacpp_gpu`: the
    llama.cpp build supports GPU offload. `embedded`: the model is the embedded Q4_1 file, which
    llama.cpp runs as an F16 copy. Raises `ModelError` when no installed engine can run the
    model. Guarantees: 1 <= instances <= max_instances, threads_per_instance * instances <=
    hw.cores, and instances * instance_bytes <= memory_budget_bytes unless instances == 1
    (then warned).
    """
    if not 0.0 <= headroom_fraction < 1.0:
        raise ValueError(f"headroom_fraction must be in [0, 1), not {headroom_fraction}")
    reasons: list[str] = []
    warnings: list[str] = []
    chosen_backend, why = _backend(backend, llamacpp_available, model_is_gguf,
                                   transformers_available)
    reasons.append(why)
    chosen_device, why = choose_device(device, chosen_backend, hw, llamacpp_gpu, measured)
    reasons.append(why)
    chosen_dtype, why = _dtype(dtype, chosen_backend, chosen_device)
    if chosen_backend == "llamacpp":
        ram, _pool = memory_pool(hw, chosen_device)
        exact = estimate_instance_bytes("llamacpp", chosen_device, "f16", model_bytes, True)
        chosen_dtype, why = _quant(quant, embedded, exact <= ram * (1.0 - headroom_fraction))
    reasons.append(why)
    if chosen_backend == "transformers" and chosen_device == "cpu" and chosen_dtype == "float16":
        warnings.append("float16 on CPU is slow and unsupported by many kernels; prefer float32")
    if bench is None:
        bench = best([r for r in measured
                      if r.backend == chosen_backend and r.device == chosen_device])

    if (bench is not None and bench.backend == chosen_backend and chosen_device == "cpu"
            and bench.device == "cpu" and bench.peak_rss_bytes > 0):
        per = bench.peak_rss_bytes
        source = f"measured at {_n(bench.threads, 'thread')}"
    else:
        per = estimate_instance_bytes(chosen_backend, chosen_device, chosen_dtype, model_bytes,
                                      model_is_gguf)
        source = f"estimated from the {_gb(model_bytes)} model file"
    per = max(per, 1)
    available, pool = memory_pool(hw, chosen_device)
    budget = max(0, int(available * (1.0 - headroom_fraction)))
    fits = budget // per
    cores = hw.cores
    cap, cap_why = instance_cap(chosen_device, cores)
    instances = max(1, min(cap, cores, max_instances, fits))
    threads = max(1, cores // instances)

    reasons.append(
        f"memory: each instance ~{_gb(per)} ({source}), {_gb(available)} {pool}, "
        f"{headroom_fraction:.0%} headroom: room for {fits}")
    limits = [cap_why] if cap < cores else []
    limits.append(cores_why(hw, cores))
    if max_instances < min(cap, cores):
        limits.append(f"at most {max_instances} instances")
    if fits < min(cap, cores, max_instances):
        limits.append(f"memory for {max(fits, 1)}")
    reasons.append(
        f"{_n(instances, 'instance')} x {_n(threads, 'thread')}: {', '.join(limits)}; "
        "threads x instances never exceed the cores (oversubscription collapses throughput)")
    if fits < 1:
        warnings.append(f"one instance needs ~{_gb(per)} but only {_gb(budget)} fits after "
                        f"{headroom_fraction:.0%} headroom: starting one anyway, expect swapping "
                        "or out-of-memory errors")
    reasons.extend(bench_lines(bench, measured, chosen_backend))
    return Plan(backend=chosen_backend, device=chosen_device, dtype=chosen_dtype,
                threads_per_instance=threads, instances=instances, reasons=tuple(reasons),
                warnings=tuple(warnings), instance_bytes=per, memory_budget_bytes=budget)


def render_plan(plan: Plan) -> RenderableType:
    """A rich Panel: the choices in a table, then the reasons and any warnings."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan")
    table.add_column()
    table.add_row("backend", f"{plan.backend} on {plan.device}")
    table.add_row("weights" if plan.backend == "llamacpp" else "dtype", plan.dtype)
    table.add_row("instances", f"{plan.instances} x {_n(plan.threads_per_instance, 'thread')}")
    table.add_row("memory", f"~{_gb(plan.instance_bytes)} each, "
                            f"{_gb(plan.memory_budget_bytes)} usable")
    lines = [Text(f"- {reason}") for reason in plan.reasons]
    lines += [Text(f"! {warning}", style="bold yellow") for warning in plan.warnings]
    return Panel(Group(table, Text(""), *lines), title="[bold]--auto[/] plan", expand=False)
