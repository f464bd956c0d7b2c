"""A model's manifest: its files, each with its size, sha256 and the sha256 of every piece.

A manifest names a model by content: its `digest` is the sha256 over the format and every file's
(name, size, sha256), so two nodes holding the same bytes hold the same digest whatever they call
the model. Pieces (`PIECE_BYTES` each, the last one shorter) let a downloader check every range it
gets as it arrives and name the peer that sent a bad one, long before the whole file is read.

Manifests come from peers: `Manifest.from_wire` checks every field (names are relative paths
inside the model folder, never absolute, never `..`) and raises `ManifestError` naming the field.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from swarm.errors import PeerError

PIECE_BYTES = 4 << 20  # one ranged request, checked on arrival
FORMATS = ("gguf", "hf")
MAX_FILES = 4096
MAX_FILE_BYTES = 1 << 42  # 4 TiB
MAX_NAME_CHARS = 256
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}", re.ASCII)
_NAME_PATTERN = re.compile(r"[A-Za-z0-9._+-][A-Za-z0-9._+/-]{0,255}", re.ASCII)
_READ_BYTES = 1 << 20


class ManifestError(PeerError, ValueError):
    """A manifest (from a peer or the store's index) that is not valid: the message names the field."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a model: its path inside the model folder, size, sha256 and piece hashes."""

    name: str
    size: int
    sha256: str
    pieces: tuple[str, ...]

    def piece_span(self, index: int, piece_bytes: int = PIECE_BYTES) -> tuple[int, int]:
        """The byte range [start, end) of piece `index`."""
        start = index * piece_bytes
        return start, min(start + piece_bytes, self.size)


def piece_count(size: int, piece_bytes: int = PIECE_BYTES) -> int:
    """How many pieces a file of `size` bytes has (an empty file has none)."""
    return -(-size // piece_bytes)


@dataclass(frozen=True)
class Manifest:
    """A model: the id it is served under (`name`), its format and its files."""

    name: str
    format: str
    files: tuple[FileEntry, ...]
    piece_bytes: int = PIECE_BYTES

    @property
    def digest(self) -> str:
        """The model's content address: sha256 over format, piece size and each file's
        (name, size, sha256), in name order. A single GGUF's own file name does not count."""
        lines = [f"local-swarm-model/1 {self.format} {self.piece_bytes}"]
        for f in sorted(self.files, key=lambda e: e.name):
            name = "model.gguf" if self.format == "gguf" else f.name
            lines.append(f"{name} {f.size} {f.sha256}")
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    @property
    def size(self) -> int:
        """Total bytes of the model's files."""
        return sum(f.size for f in self.files)

    def matches(self, wanted: str) -> bool:
        """Whether `wanted` names this model: its name, a file's stem, or 12+ hex of its digest."""
        if wanted == self.name or any(PurePosixPath(f.name).stem == wanted for f in self.files):
            return True
        return len(wanted) >= 12 and self.digest.startswith(wanted.lower())

    def to_wire(self) -> dict[str, Any]:
        """The JSON object of `GET /v1/federation/models` (and of the store's index)."""
        return {"name": self.name, "format": self.format, "digest": self.digest,
                "piece_bytes": self.piece_bytes, "size": self.size,
                "files": [{"name": f.name, "size": f.size, "sha256": f.sha256,
                           "pieces": list(f.pieces)} for f in self.files]}

    @classmethod
    def from_wire(cls, data: object) -> Manifest:
        """Check and build a manifest; `ManifestError` names the first bad field."""
        if not isinstance(data, dict):
            raise ManifestError("manifest: not an object")
        name = _text(data.get("name"), "manifest.name")
        fmt = data.get("format")
        if fmt not in FORMATS:
            raise ManifestError(f"manifest.format: {fmt!r} is not one of {FORMATS}")
        piece_bytes = data.get("piece_bytes")
        if not isinstance(piece_bytes, int) or isinstance(piece_bytes, bool) \
                or not 1 << 16 <= piece_bytes <= 1 << 30:
            raise ManifestError(f"manifest.piece_bytes: {piece_bytes!r} out of range")
        raw_files = data.get("files")
        if not isinstance(raw_files, list) or not 1 <= len(raw_files) <= MAX_FILES:
            raise ManifestError(f"manifest.files: 1 to {MAX_FILES} files expected")
        files = tuple(_file(f, i, piece_bytes) for i, f in enumerate(raw_files))
        if len({f.name for f in files}) != len(files):
            raise ManifestError("manifest.files: a name appears twice")
        if fmt == "gguf" and (len(files) != 1 or not files[0].name.endswith(".gguf")):
            raise ManifestError("manifest.files: a gguf model is one .gguf file")
        manifest = cls(name, fmt, files, piece_bytes)
        claimed = data.get("digest")
        if claimed is not None and claimed != manifest.digest:
            raise ManifestError("manifest.digest does not match its files")
        return manifest


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME_CHARS \
            or not value.isprintable():
        raise ManifestError(f"{where}: 1 to {MAX_NAME_CHARS} printable characters expected")
    return value


def safe_name(name: str) -> bool:
    """A relative path inside a model folder: no leading '/', no '..' or '.' parts, no '//'."""
    if _NAME_PATTERN.fullmatch(name) is None:
        return False
    return all(part not in ("", ".", "..") for part in name.split("/"))


def _file(data: object, i: int, piece_bytes: int) -> FileEntry:
    where = f"manifest.files[{i}]"
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: not an object")
    name = data.get("name")
    if not isinstance(name, str) or not safe_name(name):
        raise ManifestError(f"{where}.name: {name!r} is not a relative path inside the model")
    size = data.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FILE_BYTES:
        raise ManifestError(f"{where}.size: {size!r} out of range")
    sha = data.get("sha256")
    if not isinstance(sha, str) or SHA256_PATTERN.fullmatch(sha) is None:
        raise ManifestError(f"{where}.sha256: 64 lowercase hex digits expected")
    pieces = data.get("pieces")
    if not isinstance(pieces, list) or len(pieces) != piece_count(size, piece_bytes) \
            or not all(isinstance(p, str) and SHA256_PATTERN.fullmatch(p) for p in pieces):
        raise ManifestError(f"{where}.pieces: one sha256 per {piece_bytes}-byte piece expected")
    return FileEntry(name, size, sha, tuple(pieces))


def hash_file(path: Path, name: str, piece_bytes: int = PIECE_BYTES) -> FileEntry:
    """Read `path` once: its size, sha256 and the sha256 of each piece."""
    whole = hashlib.sha256()
    pieces: list[str] = []
    size = 0
    with path.open("rb") as fh:
        while True:
            piece = hashlib.sha256()
            left = piece_bytes
            while left:
                chunk = fh.read(min(_READ_BYTES, left))
                if not chunk:
                    break
                whole.update(chunk)
                piece.update(chunk)
                left -= len(chunk)
            got = piece_bytes - left
            if got == 0:
                break
            size += got
            pieces.append(piece.hexdigest())
            if left:
                break
    return FileEntry(name, size, whole.hexdigest(), tuple(pieces))


def model_files(path: Path) -> Iterable[tuple[Path, str]]:
    """The files that make a model: a .gguf file itself, or every regular file of an HF folder
    (relative names, sorted; hidden files and folders left out)."""
    if path.is_file():
        yield path, path.name
        return
    for item in sorted(path.rglob("*")):
        rel = item.relative_to(path).as_posix()
        if item.is_file() and not any(part.startswith(".") for part in rel.split("/")):
            yield item, rel
