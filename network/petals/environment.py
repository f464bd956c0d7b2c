"""The span runtime's own virtual environment: Petals 2.2 and hivemind 1.1.12 on transformers 4.34,
which cannot share a venv with the node's transformers 5. Built once into the cache folder from the
pinned files beside this module (`requirements.txt`, `constraints.txt`, `no-deps.txt`); its folder
name is a hash of those files and the Python version, so a change of pins builds a new one.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from swarm.errors import EngineError

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
RUNTIME_DIR = HERE / "runtime"  # our code that runs inside the span venv (launcher, fixes, worker)
PIN_FILES = ("requirements.txt", "constraints.txt", "no-deps.txt")
TORCH_PIN = "torch==2.13.0"  # the CPU build from the machine's wheel folder (docs/spans.md)
READY_MARK = ".local-swarm-ready"
# bitsandbytes 0.41 ships one library per CUDA version (280 MB); the span runtime's torch is the
# CPU build, which loads only libbitsandbytes_cpu.so, so the CUDA ones are removed after install.
UNUSED_LIBRARIES = "bitsandbytes/libbitsandbytes_cuda*.so"
# The import check that proves a build: petals with our hivemind shim, its server and client.
_CHECK = ("import sys; sys.path.insert(0, sys.argv[1]); import compat; compat.apply(); "
          "import petals, petals.server.server, petals.utils.peft; "
          "from petals import AutoDistributedModelForCausalLM; print(petals.__version__)")


class SpanRuntimeError(EngineError):
    """The span runtime cannot be built or started; the message says what to do."""


def reusable_torch() -> importlib.metadata.Distribution | None:
    """The node's own torch when it is the build the span venv pins (2.13.0, CPU: no CUDA
    packages required), to hard-link instead of installing again; None otherwise."""
    try:
        torch = importlib.metadata.distribution("torch")
    except importlib.metadata.PackageNotFoundError:
        return None
    wanted = TORCH_PIN.split("==", 1)[1]
    if torch.version.split("+", 1)[0] != wanted or torch.files is None \
            or any(r.startswith("nvidia") for r in torch.requires or ()):
        return None
    return torch


def link_torch(torch: importlib.metadata.Distribution, site_packages: Path) -> bool:
    """Hard-link every file of the node's `torch` (its RECORD, scripts left out) into the span
    venv's `site_packages`: 750 MB neither copied nor unpacked, and no disk. False (nothing left
    behind) when the two folders are on different file systems or a link fails."""
    source = Path(str(torch.locate_file("")))
    linked: list[Path] = []
    try:
        for entry in torch.files or ():
            if entry.parts and entry.parts[0] == "..":
                continue  # console scripts in bin/: the span runtime calls none
            target = site_packages / entry
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source / entry, target)
            linked.append(target)
    except OSError as exc:
        log.info("span runtime: torch not linked (%s); installing it instead", exc)
        for target in linked:
            target.unlink(missing_ok=True)
        return False
    return True


def pins_digest() -> str:
    """A short hash of the pin files and this Python's version: the venv's folder name."""
    h = hashlib.sha256(f"{sys.version_info.major}.{sys.version_info.minor}".encode())
    h.update(TORCH_PIN.encode())
    for name in PIN_FILES:
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class SpanEnvironment:
    """Where the span venv lives, and whether it is built."""

    root: Path

    @classmethod
    def in_cache(cls, cache_dir: Path) -> SpanEnvironment:
        """The span venv for the current pins under `cache_dir`."""
        return cls(cache_dir / "span-runtime" / f"venv-{pins_digest()}")

    @property
    def python(self) -> Path:
        """The venv's interpreter."""
        return self.root / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        """The venv's site-packages folder."""
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        return self.root / "lib" / version / "site-packages"

    @property
    def ready(self) -> bool:
        """True once a build finished and passed its import check."""
        return (self.root / READY_MARK).is_file() and self.python.is_file()

    def env(self) -> dict[str, str]:
        """The environment for processes run in the span venv: offline, no user site, quiet."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
                   PYTHONNOUSERSITE="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        return env

    def build(self, report: Callable[[str, float], None] | None = None,
              python: str = sys.executable) -> float:
        """Create the venv and install the pins (a no-op when ready); returns seconds spent.

        `report(stage, fraction)` drives a progress bar. A failed step raises SpanRuntimeError
        with pip's last lines; the half-built folder is removed so the next try starts clean.
        """
        if self.ready:
            return 0.0
        say = report or (lambda _stage, _fraction: None)
        started = time.monotonic()
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.parent.mkdir(parents=True, exist_ok=True)
        pip = [str(self.python), "-m", "pip", "install", "--disable-pip-version-check",
               "--progress-bar", "off", "-q"]
        # torch: the node's own 2.13.0 CPU build hard-linked when it can be, then pip installs
        # the pinned one (already there after a link: only its small dependencies come).
        steps: list[tuple[str, float, list[str]]] = [
            ("creating the venv", 0.02, [python, "-m", "venv", str(self.root)]),
            ("installing torch (CPU)", 0.10, [*pip, TORCH_PIN, "-c", str(HERE / "constraints.txt")]),
            ("installing hivemind and transformers 4.34", 0.45,
             [*pip, "-r", str(HERE / "requirements.txt"), "-c", str(HERE / "constraints.txt")]),
            ("installing petals", 0.85, [*pip, "--no-deps", "-r", str(HERE / "no-deps.txt")]),
            ("checking imports", 0.95, [str(self.python), "-c", _CHECK, str(RUNTIME_DIR)]),
        ]
        torch = reusable_torch() if python == sys.executable else None
        try:
            for stage, fraction, argv in steps:
                say(stage, fraction)
                log.info("span runtime: %s", stage)
                if stage == "installing torch (CPU)" and torch is not None:
                    linked = link_torch(torch, self.site_packages)
                    log.info("span runtime: torch %s", "hard-linked from this node's venv"
                             if linked else "installed by pip")
                if stage == "checking imports":
                    for unused in self.site_packages.glob(UNUSED_LIBRARIES):
                        unused.unlink()
                done = subprocess.run(argv, capture_output=True, text=True, env=self.env(),
                                      check=False)
                if done.returncode != 0:
                    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
                    raise SpanRuntimeError(f"building the span runtime failed at '{stage}' "
                                           f"(exit {done.returncode}):\n{tail}")
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        (self.root / READY_MARK).write_text(f"built in {time.monotonic() - started:.0f} s\n")
        say("ready", 1.0)
        return time.monotonic() - started

    def disk_bytes(self) -> int:
        """Bytes the venv alone takes on disk (files hard-linked from elsewhere, such as the
        node's torch, not counted)."""
        return sum(st.st_size for p in self.root.rglob("*") if p.is_file() and not p.is_symlink()
                   and (st := p.stat()).st_nlink == 1)


def ensure_environment(cache_dir: Path,
                       report: Callable[[str, float], None] | None = None) -> SpanEnvironment:
    """The ready span venv under `cache_dir`, built first when missing (about a minute)."""
    environment = SpanEnvironment.in_cache(cache_dir)
    if not environment.ready:
        log.info("building the span runtime in %s (once, about a minute)", environment.root)
        environment.build(report)
    return environment
