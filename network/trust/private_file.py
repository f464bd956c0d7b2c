"""A small file only this user may read, written so that a reader sees it whole or not at all."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO


def write_private(path: Path, data: bytes, *, replace: bool = True) -> bool:
    """Write `data` to `path` with mode 0600 through a temporary file beside it (fsynced first),
    creating the folder. With `replace` an existing file is swapped atomically; without it the
    file is only created, and False means another process created it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            _write_synced(fh, data)
        if replace:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)  # appears complete or not at all: no reader sees half a file
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: exclusive create, then write
            return _create_exclusive(path, data)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _create_exclusive(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        _write_synced(fh, data)
    return True


def _write_synced(fh: BinaryIO, data: bytes) -> None:
    fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())
