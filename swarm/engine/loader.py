"""Turn a configuration into loaded backends: pick the engine, convert once, load N instances."""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarm.engine.backend import Backend
from swarm.models.library import ModelLibrary
from swarm.models.precision import PRECISIONS, precision_copy
from swarm.models.store import (
    EMBEDDED_SHA256,
    ModelError,
    ModelSource,
    ensure_transformers_folder,
    resolve_model,
)
from swarm.node.config import SWARM_MODEL, Config

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class LoadPlan:
    """What to load: the model, the engine, its placement and how many instances.

    `dtype` is the torch dtype for transformers; for llama.cpp, "f16" or "f32" (a dequantized
    copy of the GGUF, computed in floating point) or "gguf" (the file's own quantization)."""

    source: ModelSource
    backend: str
    device: str  # transformers: cpu, cuda, mps; llama.cpp: cpu, or cuda, mps, metal, gpu (offload)
    dtype: str
    instances: int
    threads: int
    embedded: bool = False  # the embedded default model (its file's hash is known)


GPU_DEVICES = frozenset({"cuda", "mps", "metal", "gpu"})  # llama.cpp offloads every layer on these
TRANSFORMERS_MISSING = ("the transformers engine is not installed: pip install -e '.[transformers]' "
                        "(PyTorch has no build for Intel Macs that transformers 5 accepts: use "
                        "the llama.cpp engine there; see README)")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def llamacpp_available() -> bool:
    """True when llama-cpp-python is installed (it is an optional extra)."""
    return _installed("llama_cpp")


def transformers_available() -> bool:
    """True when torch and transformers are installed (the optional `transformers` extra)."""
    return _installed("torch") and _installed("transformers")


@functools.cache
def llamacpp_gpu_offload() -> bool:
    """True when the installed llama.cpp build can offload layers (CUDA or Metal); asks it."""
    if not llamacpp_available():
        return False
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as exc:  # a broken build must not stop --auto: plan for the CPU
        log.warning("cannot ask llama.cpp whether it can offload to a GPU: %s", exc)
        return False


def choose_backend(requested: str, source: ModelSource) -> str:
    """Resolve `auto`: llama.cpp for GGUF files when installed, transformers otherwise."""
    if requested == "llamacpp":
        if not llamacpp_available():
            raise ModelError("backend llamacpp needs llama-cpp-python: "
                             "pip install -e '.[llamacpp]' (see README)")
        if not source.is_gguf:
            raise ModelError(f"backend llamacpp needs a .gguf model, not {source.path}")
        return "llamacpp"
    if requested == "auto" and source.is_gguf and llamacpp_available():
        return "llamacpp"
    if not transformers_available():
        why = ("" if requested != "auto" else
               "llama-cpp-python is not installed, and " if source.is_gguf else
               "the model is not a GGUF file (llama.cpp reads only those), and ")
        raise ModelError(why + TRANSFORMERS_MISSING)
    return "transformers"


def llamacpp_quant(requested: str, embedded: bool) -> str:
    """The llama.cpp weights for `[model] quant`: auto is f16 for the embedded model (its Q4_1
    file flips greedy answers; F16 gives the float32 reference's tokens) and the file's own
    format ("gguf") for any other GGUF."""
    if requested == "auto":
        return "f16" if embedded else "gguf"
    return "gguf" if requested == "file" else requested


def model_library(config: Config) -> ModelLibrary:
    """This node's content-addressed model store (swarm/models/library.py)."""
    return ModelLibrary(config.cache_path / "store", int(config.model.store_limit_gb * 2**30))


def is_model_name(path: str) -> bool:
    """True when `--model` names a model (to find in the store, or fetch from peers) rather
    than a file or folder on this machine: no such file here, and no path separator in it
    (served model ids never have one). `swarm` always names the swarm's model (a folder of
    that name is `./swarm`)."""
    looks_like_path = any(sep in path for sep in ("/", "\\")) or path.startswith(("~", "."))
    return path == SWARM_MODEL or (bool(path) and not looks_like_path
                                   and not Path(path).expanduser().exists())


def model_source(config: Config) -> ModelSource:
    """The model `--model` means: a file or folder, a model the store holds by that name (or
    file stem, or digest), or the embedded default."""
    path = config.model.path
    if not is_model_name(path):
        return resolve_model(path or None)
    if path == SWARM_MODEL:
        raise ModelError(f"--model {SWARM_MODEL} serves the model the swarm's peers hold: start "
                         "the node with --federation (and the swarm key) to find and fetch it")
    entry = model_library(config).find(path)
    if entry is None:
        raise ModelError(f"--model {path}: no such file or folder, and no model of that name in "
                         f"this node's store ({config.cache_path / 'store'}); start it with "
                         "--federation to fetch the model from a peer that serves it")
    return model_library(config).source(entry)


def plan_from_config(config: Config, cores: int | None = None) -> LoadPlan:
    """The load plan that the configuration asks for, with `auto` values resolved; threads
    default to `cores` / instances (`cores`: the probe's, performance cores only on Apple
    Silicon; default every CPU)."""
    source = model_source(config)
    backend = choose_backend(config.model.backend, source)
    cores = cores or os.cpu_count() or 1
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
        device = "gpu" if llamacpp_gpu_offload() else "cpu"
    dtype = config.model.dtype
    # A copy of the embedded file fetched from a peer is run as the embedded model is.
    embedded = not config.model.path or source.digest == EMBEDDED_SHA256
    if backend == "llamacpp":
        dtype = llamacpp_quant(config.model.quant, embedded)
    elif dtype == "auto":
        dtype = "float32" if device == "cpu" else "float16"
    return LoadPlan(source, backend, device, dtype, instances, threads, embedded)


def model_file(plan: LoadPlan, config: Config, progress: Progress | None = None) -> Path:
    """The file llama.cpp loads: the GGUF itself, or its F16/F32 copy (made once, hash-checked)."""
    if plan.backend == "llamacpp" and plan.dtype in PRECISIONS:
        return precision_copy(plan.source, plan.dtype, config.cache_path, progress,
                              expected_sha256=EMBEDDED_SHA256 if plan.embedded else None)
    return plan.source.path


def load_backend(plan: LoadPlan, config: Config, progress: Progress | None = None, *,
                 path: Path | None = None) -> Backend:
    """Load one instance of the planned backend (llama.cpp from `path` when given)."""
    if plan.backend == "llamacpp":
        from swarm.engine.llamacpp_backend import LlamaCppBackend

        return LlamaCppBackend(path or model_file(plan, config, progress), plan.source.model_id,
                               threads=plan.threads, gpu=plan.device in GPU_DEVICES)
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
    path = model_file(plan, config, report) if plan.backend == "llamacpp" else None
    backends: list[Backend] = []
    for i in range(plan.instances):
        def sub(stage: str, fraction: float, i: int = i) -> None:
            report(f"instance {i + 1}/{plan.instances}: {stage}",
                   (i + fraction) / plan.instances)

        sub("loading", 0.0)
        backends.append(load_backend(plan, config, sub, path=path))
        sub("ready", 1.0)
    return backends
