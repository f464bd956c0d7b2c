"""The model folder the span runtime reads: the node's converted safetensors folder (transformers 5)
made readable by the span venv's transformers 4.34 and tokenizers 0.14, without copying weights.

What 4.34 needs that 5.x writes differently: `rope_theta` at the top of config.json (4.34 ignores
`rope_parameters` and silently uses 10000: wrong tokens), `rope_scaling: null`, `torch_dtype`
(5.x writes `dtype`), a `PreTrainedTokenizerFast` tokenizer class, the chat template inline in
tokenizer_config.json, and BPE merges as "a b" strings. transformers 5 reads the result the same.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from swarm.models.store import ModelSource, ensure_transformers_folder

SUFFIX = "-span"
_MARK = ".local-swarm-span-ready"


def _patch_config(config: dict[str, Any]) -> dict[str, Any]:
    rope = config.get("rope_parameters") or {}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"rope scaling {rope} cannot be expressed for transformers 4.34")
    config["rope_theta"] = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
    config["rope_scaling"] = None
    config["torch_dtype"] = config.get("dtype") or config.get("torch_dtype") or "float32"
    config.setdefault("tie_word_embeddings", True)
    return config


def _patch_tokenizer_config(config: dict[str, Any], template: str | None) -> dict[str, Any]:
    config["tokenizer_class"] = "PreTrainedTokenizerFast"  # 'TokenizersBackend' is 5.x-only
    for key in ("backend", "is_local", "local_files_only"):
        config.pop(key, None)
    if template is not None:
        config["chat_template"] = template  # 4.34 reads it from tokenizer_config.json only
    return config


def _patch_tokenizer(tokenizer: dict[str, Any]) -> dict[str, Any]:
    model = tokenizer["model"]
    merges = model.get("merges") or []
    if merges and isinstance(merges[0], list):  # tokenizers >= 0.20 writes pairs; 0.14 wants "a b"
        model["merges"] = [f"{a} {b}" for a, b in merges]
    model.pop("ignore_merges", None)  # unknown to tokenizers 0.14
    return tokenizer


def patch_folder(folder: Path) -> None:
    """Rewrite a transformers-5 folder's config and tokenizer files for transformers 4.34."""
    def rewrite(name: str, change: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        path = folder / name
        if path.is_file():
            data = change(json.loads(path.read_text()))
            path.write_text(json.dumps(data, indent=2, ensure_ascii=False))

    template_file = folder / "chat_template.jinja"
    template = template_file.read_text() if template_file.is_file() else None
    rewrite("config.json", _patch_config)
    rewrite("tokenizer_config.json", lambda c: _patch_tokenizer_config(c, template))
    rewrite("tokenizer.json", _patch_tokenizer)


def span_model_folder(source: ModelSource, cache_dir: Path,
                      report: Callable[[str, float], None] | None = None) -> Path:
    """The span runtime's copy of `source` (weights hard-linked), made once in the cache."""
    converted = ensure_transformers_folder(source, cache_dir, report)
    if source.is_gguf:
        target = converted.with_name(converted.name + SUFFIX)
    else:
        target = cache_dir / "models" / f"{source.model_id}{SUFFIX}"
    if (target / _MARK).is_file():
        return target
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for item in converted.iterdir():
        if item.is_file():
            if item.suffix in (".safetensors", ".bin"):
                try:
                    os.link(item, partial / item.name)
                    continue
                except OSError:
                    pass  # another file system: copy
            shutil.copy2(item, partial / item.name)
    patch_folder(partial)
    (partial / _MARK).write_text("patched for transformers 4.34\n")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    return target


def block_bytes(model_dir: Path) -> tuple[int, int]:
    """(number of transformer blocks, bytes of the largest block's weights), read from the
    safetensors headers (tensors named `...layers.<i>....`)."""
    config = json.loads((model_dir / "config.json").read_text())
    blocks = int(config["num_hidden_layers"])
    sizes = [0] * blocks
    for path in model_dir.glob("*.safetensors"):
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for name, meta in header.items():
            parts = name.split(".")
            if "layers" in parts and isinstance(meta, dict):
                index = int(parts[parts.index("layers") + 1])
                start, end = meta["data_offsets"]
                sizes[index] += end - start
    return blocks, max(sizes)
