"""Turn a configuration into loaded backends: pick the engine, convert once, load N instances."""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from swarm.engine.backend import Backend
from swarm.models.store import ModelError, ModelSource, ensure_transformers_folder, resolve_model
from swarm.node.config import Config

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class LoadPlan:
    """What to load: the model, the engine, its placement and how many instances."""

    source: ModelSource
    backend: str
    device: str
    dtype: str
    instances: int
    threads: int


def llamacpp_available() -> bool:
    """True when llama-cpp-python is installed (it is an optional extra)."""
    return importlib.util.find_spec("llama_cpp") is not None


def choose_backend(requested: str, source: ModelSource) -> str:
    """Resolve `auto`: llama.cpp for GGUF files when installed, transformers otherwise."""
    if requested == "llamacpp":
        if not llamacpp_available():
            raise ModelError("backend llamacpp needs llama-cpp-python: "
                             "pip install -e '.[llamacpp]' (see README)")
        if not source.is_gguf:
            raise ModelError(f"backend llamacpp needs a .gguf model, not {source.path}")
        return "llamacpp"
    if requested == "auto":
        return "llamacpp" if source.is_gguf and llamacpp_available() else "transformers"
    return requested


def plan_from_config(config: Config) -> LoadPlan:
    """The load plan that the configuration asks for, with `auto` values resolved."""
    source = resolve_model(config.model.path or None)
    backend = choose_backend(config.model.backend, source)
    cores = os.cpu_count() or 1
    instances = config.model.instances
    threads = config.model.threads or max(1, cores // instances)
    if instances * threads > cores:
        log.warning("%d instances x %d threads exceed %d cores: throughput will collapse",
                    instances, threads, cores)
    device = config.model.device
    if backend == "transformers":
        from swarm.engine.transformers_backend import pick_device

        device = pick_device(device)
    elif device == "auto":
        import llama_cpp

        device = "gpu" if llama_cpp.llama_supports_gpu_offload() else "cpu"
    dtype = config.model.dtype
    if backend == "llamacpp":
        dtype = "gguf"  # llama.cpp runs the file's own quantization
    elif dtype == "auto":
        dtype = "float32" if device == "cpu" else "float16"
    return LoadPlan(source, backend, device, dtype, instances, threads)


def load_backend(plan: LoadPlan, config: Config, progress: Progress | None = None) -> Backend:
    """Load one instance of the planned backend."""
    if plan.backend == "llamacpp":
        from swarm.engine.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(plan.source.path, plan.source.model_id, threads=plan.threads,
                               gpu=plan.device in ("cuda", "mps", "gpu"))
    from swarm.engine.transformers_backend import TransformersBackend

    folder = ensure_transformers_folder(plan.source, config.cache_path, progress)
    import torch

    # torch's intra-op pool is process-wide: every instance shares this setting.
    torch.set_num_threads(plan.threads)
    return TransformersBackend(folder, plan.source.model_id, device=plan.device, dtype=plan.dtype)


def load_backends(plan: LoadPlan, config: Config,
                  progress: Progress | None = None) -> list[Backend]:
    """Load `plan.instances` instances, reporting progress as (stage, fraction)."""
    report = progress or (lambda _s, _f: None)
    backends: list[Backend] = []
    for i in range(plan.instances):
        def sub(stage: str, fraction: float, i: int = i) -> None:
            report(f"instance {i + 1}/{plan.instances}: {stage}",
                   (i + fraction) / plan.instances)

        sub("loading", 0.0)
        backends.append(load_backend(plan, config, sub))
        sub("ready", 1.0)
    return backends
