"""Full-precision copies of quantized GGUF files: made once with the `gguf` package, hash-checked.

llama.cpp multiplies 4-bit (and 8-bit) weights against 8-bit activations, which changes greedy
answers (the embedded Q4_1 model answers "What is the capital of France?" with "L'Étoile, ...").
The same weights dequantized into an F16 or F32 GGUF (metadata unchanged) are computed in floating
point and give the tokens of the float32 reference. `precision_copy` makes that copy once in the
cache folder, beside a manifest with both files' SHA-256, and checks the copy's hash each time it
is reused; a copy that fails the check is made again. Several processes starting at once (three
nodes on one machine, `--instances`) take a file lock, so one converts and the others reuse its copy.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from swarm.models.store import ModelError, ModelSource, source_key

log = logging.getLogger(__name__)

PRECISIONS = ("f16", "f32")
Progress = Callable[[str, float], None]


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, hex (about 0.4 s for a 270 MB file here)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def copy_path(source: ModelSource, precision: str, cache_dir: Path) -> Path:
    """Where the `precision` copy of a GGUF source lives (or will)."""
    return cache_dir / "models" / f"{source.model_id}-{precision}-{source_key(source.path)}.gguf"


def _manifest_path(copy: Path) -> Path:
    return copy.with_suffix(".json")


def _read_manifest(copy: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(_manifest_path(copy).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def verified_copy(copy: Path) -> bool:
    """True when `copy` exists and its SHA-256 matches the manifest written beside it."""
    manifest = _read_manifest(copy)
    if manifest is None or not copy.is_file():
        return False
    if sha256_of(copy) == manifest.get("sha256"):
        return True
    log.warning("%s does not match its recorded SHA-256: making it again", copy.name)
    return False


def precision_copy(source: ModelSource, precision: str, cache_dir: Path,
                   progress: Progress | None = None, *, expected_sha256: str | None = None) -> Path:
    """An F16 or F32 GGUF holding `source`'s weights dequantized, made once (about 10 s) and
    reused after a hash check. `expected_sha256` (the embedded model's) is checked before
    converting; a mismatch raises `ModelError`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    if not source.is_gguf:
        raise ModelError(f"{source.path} is not a GGUF file: nothing to dequantize")
    report = progress or (lambda _stage, _fraction: None)
    target = copy_path(source, precision, cache_dir)
    report(f"checking the {precision} copy", 0.0)
    if verified_copy(target):
        report("ready", 1.0)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.with_suffix(".lock")):
        if verified_copy(target):  # made by another process while this one waited
            report("ready", 1.0)
            return target
        _make_copy(source, precision, target, report, expected_sha256)
    report("ready", 1.0)
    return target


def _make_copy(source: ModelSource, precision: str, target: Path, report: Progress,
               expected_sha256: str | None) -> None:
    report(f"checking {source.path.name}", 0.02)
    source_sha = sha256_of(source.path)
    if expected_sha256 is not None and source_sha != expected_sha256:
        raise ModelError(f"{source.path} has SHA-256 {source_sha[:16]}..., not the expected "
                         f"{expected_sha256[:16]}...: the file is damaged; reinstall it "
                         "(bash setup.sh)")
    log.info("writing an %s copy of %s to %s (once)", precision.upper(), source.path.name, target)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    manifest_partial = partial.with_suffix(".json")
    try:
        _write_dequantized(source.path, partial, precision,
                           lambda f: report(f"writing the {precision} copy", 0.05 + 0.85 * f))
        report(f"checking the {precision} copy", 0.92)
        manifest = {"source": str(source.path), "source_sha256": source_sha,
                    "precision": precision, "sha256": sha256_of(partial)}
        manifest_partial.write_text(json.dumps(manifest, indent=1) + "\n")
        os.replace(partial, target)
        os.replace(manifest_partial, _manifest_path(target))
    finally:
        partial.unlink(missing_ok=True)
        manifest_partial.unlink(missing_ok=True)


def _write_dequantized(src: Path, dst: Path, precision: str,
                       progress: Callable[[float], None]) -> None:
    """Copy every metadata field; write quantized tensors as `precision`, float ones as they are.
    Tensors are dequantized one at a time, so memory stays near one tensor."""
    import gguf
    import numpy as np

    float_types = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16,
                   gguf.GGMLQuantizationType.BF16}
    out_dtype = np.float16 if precision == "f16" else np.float32
    file_type = gguf.LlamaFileType.MOSTLY_F16 if precision == "f16" else gguf.LlamaFileType.ALL_F32
    reader = gguf.GGUFReader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        value = int(file_type) if field.name == gguf.Keys.General.FILE_TYPE else field.contents()
        writer.add_key_value(field.name, value, kind, sub_type=sub)
    plans = []
    for tensor in reader.tensors:
        keep = tensor.tensor_type in float_types
        shape = tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists dimensions innermost first
        dtype = np.dtype(tensor.data.dtype) if keep else np.dtype(out_dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        writer.add_tensor_info(tensor.name, shape, dtype, nbytes)
        plans.append((tensor, keep))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for i, (tensor, keep) in enumerate(plans):
        data = (np.asarray(tensor.data) if keep
                else gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(out_dtype))
        writer.write_tensor_data(data)
        progress((i + 1) / len(plans))
    writer.close()
