"""A download in progress: the files of a model in the store's partial folder, written piece by
piece, each piece checked against the manifest before it is written.

Every file's whole sha256 is kept as the download goes: a running hash of the file's in-order
prefix takes each piece that arrives in order straight from the received buffers, and a piece
that arrives ahead of the prefix is read back from the (page-cached) file once, when the prefix
reaches it. So the final check costs no second read of the whole model, and `finish` only hashes
what never arrived in order (pieces kept from an interrupted download, the last out-of-order
tails). Hashing and writing run in worker threads (hashlib releases the GIL on big buffers); one
lock per file keeps the running hash in order.
"""
from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from swarm.models.manifest import FileEntry, Manifest
from swarm.models.schedule import Piece
from swarm.models.store import ModelError

Buffer = bytes | bytearray | memoryview
_IOV_MAX = os.sysconf("SC_IOV_MAX")  # buffers one pwritev call takes


class _Prefix:
    """One file's running sha256 over its pieces [0, `next`), and the pieces written past it."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.next = 0
        self.ahead: set[int] = set()
        self.lock = threading.Lock()


class PartialModel:
    """The partial folder of `manifest`'s download: files at full (sparse) size, checked pieces
    written in place, and (with `whole`) each file's whole sha256 built as the pieces come; a
    span server's sparse download of some pieces passes `whole=False`."""

    def __init__(self, manifest: Manifest, folder: Path, *, whole: bool = True) -> None:
        self.manifest = manifest
        self.folder = folder
        self.whole = whole
        self._prefixes = [_Prefix() for _ in manifest.files]

    def path(self, item: FileEntry) -> Path:
        return self.folder / item.name

    def prepare(self, claimed: set[Piece]) -> set[Piece]:
        """Make every file its full (sparse) size; of the `claimed` pieces (an interrupted
        download's record), those that still check out on disk, now counted as written."""
        kept: set[Piece] = set()
        for fi, item in enumerate(self.manifest.files):
            path = self.path(item)
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists() or path.stat().st_size != item.size:
                with path.open("wb") as fh:
                    fh.truncate(item.size)
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                for pi, expected in enumerate(item.pieces):
                    if (fi, pi) in claimed and \
                            hashlib.sha256(self._pread(fd, item, pi)).hexdigest() == expected:
                        kept.add((fi, pi))
                        self._prefixes[fi].ahead.add(pi)
            finally:
                os.close(fd)
        return kept

    def write(self, piece: Piece, chunks: Sequence[Buffer]) -> bool:
        """Check one piece's received `chunks` against the manifest and write them in place
        (no join); False, and nothing written, when they do not match."""
        fi, pi = piece
        item = self.manifest.files[fi]
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        if digest.hexdigest() != item.pieces[pi]:
            return False
        start, _end = item.piece_span(pi, self.manifest.piece_bytes)
        fd = os.open(self.path(item), os.O_RDWR)
        try:
            _pwrite_all(fd, chunks, start)
            if not self.whole:
                return True
            prefix = self._prefixes[fi]
            with prefix.lock:
                if pi == prefix.next:
                    for chunk in chunks:
                        prefix.digest.update(chunk)
                    prefix.next += 1
                else:
                    prefix.ahead.add(pi)
                self._advance(fd, fi)
        finally:
            os.close(fd)
        return True

    def finish(self) -> None:
        """Every file's whole sha256 against the manifest, before the model may enter the store
        (every piece must have been written); `ModelError` naming the file otherwise."""
        for fi, item in enumerate(self.manifest.files):
            prefix = self._prefixes[fi]
            fd = os.open(self.path(item), os.O_RDONLY)
            try:
                with prefix.lock:
                    self._advance(fd, fi)
                    complete = prefix.next == len(item.pieces)
                    whole = prefix.digest.hexdigest()
            finally:
                os.close(fd)
            if not complete or whole != item.sha256:
                raise ModelError(f"{self.manifest.name}: {item.name} does not match its sha256 "
                                 "after the download (the manifest's piece hashes disagree with "
                                 "it); not loaded")

    def _advance(self, fd: int, fi: int) -> None:
        """Hash the pieces already written just past the prefix (caller holds its lock)."""
        prefix, item = self._prefixes[fi], self.manifest.files[fi]
        while prefix.next in prefix.ahead:
            prefix.ahead.discard(prefix.next)
            prefix.digest.update(self._pread(fd, item, prefix.next))
            prefix.next += 1

    def _pread(self, fd: int, item: FileEntry, pi: int) -> bytes:
        start, end = item.piece_span(pi, self.manifest.piece_bytes)
        return os.pread(fd, end - start, start)


def _pwrite_all(fd: int, chunks: Iterable[Buffer], offset: int) -> None:
    """Write `chunks` back to back from `offset` (os.pwritev, short writes continued)."""
    pending = [memoryview(c) for c in chunks if len(c)]
    while pending:
        written = os.pwritev(fd, pending[:_IOV_MAX], offset)
        offset += written
        while pending and written >= len(pending[0]):
            written -= len(pending[0])
            pending.pop(0)
        if written:
            pending[0] = pending[0][written:]
