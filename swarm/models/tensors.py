"""The byte ranges of chosen tensors inside a safetensors file, from its header alone.

A safetensors file is an 8-byte little-endian header length, a JSON header mapping each tensor
name to its dtype, shape and `data_offsets` [begin, end) relative to the end of the header, then
the data. So a span server that runs blocks 10 to 19 needs only the header (fetched first) and
the ranges `block_ranges` names: `tensor_ranges` merges adjacent ones into as few ranged
requests as it can. Pure: bytes in, ranges out.
"""
from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from swarm.models.manifest import ManifestError

MAX_HEADER_BYTES = 100 << 20  # the format's own limit
_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks|block)\.(\d+)\.")


@dataclass(frozen=True)
class TensorSpan:
    """One tensor's absolute byte range [start, end) in the file."""

    name: str
    start: int
    end: int


def header_length(prefix: bytes) -> int:
    """The length of the JSON header, read from the file's first 8 bytes."""
    if len(prefix) < 8:
        raise ManifestError("safetensors: fewer than 8 bytes")
    (length,) = struct.unpack("<Q", prefix[:8])
    if not 2 <= length <= MAX_HEADER_BYTES:
        raise ManifestError(f"safetensors: header length {length} out of range")
    return int(length)


def tensor_spans(head: bytes, file_size: int) -> list[TensorSpan]:
    """Every tensor's absolute range, from the file's first 8 + header-length bytes."""
    length = header_length(head)
    if len(head) < 8 + length:
        raise ManifestError("safetensors: the header is cut short")
    try:
        header = json.loads(head[8:8 + length])
    except ValueError as exc:
        raise ManifestError(f"safetensors: the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ManifestError("safetensors: the header is not an object")
    base = 8 + length
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] and base + offsets[1] <= file_size):
            raise ManifestError(f"safetensors: tensor {name!r} has bad data_offsets")
        spans.append(TensorSpan(name, base + offsets[0], base + offsets[1]))
    return sorted(spans, key=lambda s: s.start)


def block_of(name: str) -> int | None:
    """The transformer block a tensor belongs to ("model.layers.12.mlp..." is 12), else None."""
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


def block_ranges(spans: Iterable[TensorSpan], blocks: range, *,
                 shared: bool = False) -> list[tuple[int, int]]:
    """The merged byte ranges of the tensors of `blocks` (plus, with `shared`, the tensors of no
    block: embeddings, final norm, head), in file order."""
    ranges: list[tuple[int, int]] = []
    for span in sorted(spans, key=lambda s: s.start):
        block = block_of(span.name)
        if (block in blocks) if block is not None else shared:
            if ranges and ranges[-1][1] == span.start:
                ranges[-1] = (ranges[-1][0], span.end)
            else:
                ranges.append((span.start, span.end))
    return ranges
