"""The node's content-addressed model store: every model it holds, by digest, with its manifest.

    <cache>/store/index/<digest>.json     manifest, where the files are, when last used
    <cache>/store/models/<digest>/<name>  the files of a model fetched from peers
    <cache>/store/partial/<digest>/       a download under way: its files and the pieces done

A model the user points at (`--model PATH`) is indexed where it lies (hashed once; the hash is
reused while its size and mtime stay), never copied. Files are served by sha256 only (`blob`),
never by a path a peer names. Fetched models count against `limit_bytes`: making room evicts the
least recently used ones, never one that is pinned (in use by this process) and never the user's
own files.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from swarm.models.manifest import FileEntry, Manifest, ManifestError, hash_file, model_files
from swarm.models.schedule import Piece
from swarm.models.store import ModelError, ModelSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Entry:
    """A model the store holds: its manifest, its user-owned location (None: inside the store),
    the (size, mtime_ns) of each user-owned file when hashed, and when it was last used."""

    manifest: Manifest
    root: Path | None
    stamps: tuple[tuple[int, int], ...] = ()
    used: float = 0.0

    @property
    def owned(self) -> bool:
        """True for a fetched model (the store may evict it), False for the user's own files."""
        return self.root is None


def evictions(entries: Iterable[Entry], pinned: set[str], limit: int, incoming: int) -> list[str]:
    """The digests to evict, least recently used first, so that the store's own models plus
    `incoming` bytes fit in `limit`; pinned and user-owned models are never chosen. Raises
    `ModelError` when even evicting every candidate leaves too little room."""
    owned = [e for e in entries if e.owned]
    held = sum(e.manifest.size for e in owned)
    chosen: list[str] = []
    for entry in sorted(owned, key=lambda e: (e.used, e.manifest.digest)):
        if held + incoming <= limit:
            break
        if entry.manifest.digest in pinned:
            continue
        chosen.append(entry.manifest.digest)
        held -= entry.manifest.size
    if held + incoming > limit:
        raise ModelError(f"the model store's limit ({limit / 2**30:.1f} GiB) leaves no room for "
                         f"{incoming / 2**30:.2f} GiB next to the models in use: raise "
                         "[model] store_limit_gb or --store-limit-gb")
    return chosen


class ModelLibrary:
    """The store under `root` (see the module docstring), `limit_bytes` for fetched models."""

    def __init__(self, root: Path, limit_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.limit_bytes = limit_bytes
        self.clock = clock
        self.pinned: set[str] = set()
        for sub in ("index", "models", "partial"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def entries(self) -> list[Entry]:
        """Every model the index lists (unreadable entries are logged and skipped)."""
        found = []
        for path in sorted((self.root / "index").glob("*.json")):
            try:
                found.append(_entry(json.loads(path.read_text())))
            except (OSError, ValueError, KeyError, TypeError, ManifestError) as exc:
                log.warning("model store: ignoring %s (%s)", path, exc)
        return found

    def manifests(self) -> list[Manifest]:
        """The manifests of every model held, whose files are all in place."""
        return [e.manifest for e in self.entries() if self._intact(e)]

    def find(self, wanted: str) -> Entry | None:
        """The most recently used intact model that `wanted` names (name, file stem, digest)."""
        hits = [e for e in self.entries() if e.manifest.matches(wanted) and self._intact(e)]
        return max(hits, key=lambda e: e.used) if hits else None

    def add_local(self, path: Path, name: str) -> Manifest:
        """Index the user's model at `path` (a .gguf file or an HF folder) under `name`; its
        files are hashed once and re-hashed only when their size or mtime changed."""
        files = list(model_files(path))
        stamps = tuple(_stamp(p) for p, _rel in files)
        fmt = "gguf" if path.is_file() else "hf"
        for entry in self.entries():
            if entry.root == path and entry.stamps == stamps and entry.manifest.name == name:
                self.touch(entry.manifest.digest)
                return entry.manifest
        log.info("model store: hashing %s (once)", path)
        manifest = Manifest(name, fmt, tuple(hash_file(p, rel) for p, rel in files))
        self._write(Entry(manifest, path, stamps, self.clock()))
        return manifest

    def share(self, source: ModelSource) -> Manifest:
        """Index the model this node serves (a fetched one is already in the store) and pin it."""
        models = self.root / "models"
        if models in source.path.parents:
            digest = source.path.relative_to(models).parts[0]
            entry = self.find(digest)
            if entry is None:
                raise ModelError(f"{source.path} is in the model store but not in its index")
            manifest = entry.manifest
        else:
            manifest = self.add_local(source.path, source.model_id)
        self.pin(manifest.digest)
        return manifest

    def file_path(self, entry: Entry, item: FileEntry) -> Path:
        """Where one file of a held model lies."""
        if entry.root is None:
            return self.root / "models" / entry.manifest.digest / item.name
        return entry.root if entry.root.is_file() else entry.root / item.name

    def blob(self, sha256: str) -> tuple[Path, int] | None:
        """The path and size of a held file with this sha256, if one is intact on disk."""
        for entry in self.entries():
            for item in entry.manifest.files:
                if item.sha256 == sha256 and self._intact(entry):
                    return self.file_path(entry, item), item.size
        return None

    def source(self, entry: Entry) -> ModelSource:
        """The model, as the loader takes it: served under its manifest's name."""
        manifest = entry.manifest
        if manifest.format == "gguf":
            item = manifest.files[0]
            return ModelSource(self.file_path(entry, item), manifest.name, digest=item.sha256)
        folder = self.root / "models" / manifest.digest if entry.root is None else entry.root
        return ModelSource(folder, manifest.name, digest=manifest.digest)

    def pin(self, digest: str) -> None:
        """Mark a model in use by this process: never evicted while pinned."""
        self.pinned.add(digest)
        self.touch(digest)

    def touch(self, digest: str) -> None:
        """Record a use of the model (eviction goes least recently used first)."""
        path = self.root / "index" / f"{digest}.json"
        try:
            entry = _entry(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError, ManifestError):
            return
        self._write(Entry(entry.manifest, entry.root, entry.stamps, self.clock()))

    def make_room(self, manifest: Manifest) -> None:
        """Evict least recently used fetched models until `manifest` fits the limit."""
        others = [e for e in self.entries() if e.manifest.digest != manifest.digest]
        for digest in evictions(others, self.pinned, self.limit_bytes, manifest.size):
            log.info("model store: evicting %s (least recently used) to make room", digest[:12])
            (self.root / "index" / f"{digest}.json").unlink(missing_ok=True)
            shutil.rmtree(self.root / "models" / digest, ignore_errors=True)

    def lock(self, manifest: Manifest) -> FileLock:
        """The lock one process holds while it downloads `manifest` into the store."""
        return FileLock(str(self.root / "partial" / f"{manifest.digest}.lock"), thread_local=False)

    def partial_dir(self, manifest: Manifest) -> Path:
        """Where a download of `manifest` keeps its files and progress."""
        folder = self.root / "partial" / manifest.digest
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def progress(self, manifest: Manifest) -> set[Piece]:
        """The pieces an earlier (interrupted) download already checked."""
        try:
            raw = json.loads((self.partial_dir(manifest) / "pieces.json").read_text())
            return {(int(f), int(p)) for f, p in raw}
        except (OSError, ValueError, TypeError):
            return set()

    def save_progress(self, manifest: Manifest, done: Iterable[Piece]) -> None:
        """Record the checked pieces (atomically), so a crash resumes from here."""
        _atomic(self.partial_dir(manifest) / "pieces.json", json.dumps(sorted(done)))

    def commit(self, manifest: Manifest) -> Entry:
        """Move a finished, verified download into the store and index it."""
        partial = self.partial_dir(manifest)
        target = self.root / "models" / manifest.digest
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for item in manifest.files:
            dest = target / item.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial / item.name, dest)
        shutil.rmtree(partial, ignore_errors=True)
        entry = Entry(manifest, None, (), self.clock())
        self._write(entry)
        return entry

    def _intact(self, entry: Entry) -> bool:
        """The files are where the index says, with the sizes (and, for the user's own files,
        the mtimes) they were hashed with."""
        for i, item in enumerate(entry.manifest.files):
            try:
                stamp = _stamp(self.file_path(entry, item))
            except OSError:
                return False
            if stamp[0] != item.size or (entry.root is not None and entry.stamps
                                         and stamp != entry.stamps[i]):
                return False
        return True

    def _write(self, entry: Entry) -> None:
        data: dict[str, Any] = {"manifest": entry.manifest.to_wire(),
                                "root": str(entry.root) if entry.root is not None else None,
                                "stamps": [list(s) for s in entry.stamps], "used": entry.used}
        _atomic(self.root / "index" / f"{entry.manifest.digest}.json", json.dumps(data))


def _entry(data: dict[str, Any]) -> Entry:
    root = data["root"]
    return Entry(Manifest.from_wire(data["manifest"]), Path(root) if root else None,
                 tuple((int(a), int(b)) for a, b in data.get("stamps", ())),
                 float(data.get("used", 0.0)))


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
