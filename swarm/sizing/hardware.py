"""What this machine has: cores, RAM and GPUs, probed once, fingerprinted and summarised.

The probe never imports torch just to look (1 to 2 s and about 300 MB): on Linux only when a GPU
driver is visible, on macOS never (Apple Silicon's GPU and its share of unified memory come from
`sysctl`, see `apple.py`; torch is asked only when something else already loaded it).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm.sizing import apple

log = logging.getLogger(__name__)

GIB = 1 << 30
_FINGERPRINT_VERSION = 1


@dataclass(frozen=True)
class HardwareInfo:
    """A snapshot of the machine; only `ram_available_bytes` changes from one run to the next."""

    cpu_count_logical: int
    cpu_count_physical: int
    cpu_model: str
    ram_total_bytes: int
    ram_available_bytes: int
    cuda_devices: tuple[tuple[str, int], ...] = ()
    mps_available: bool = False
    system: str = ""
    machine: str = ""
    platform: str = ""
    cpu_count_usable: int = 0
    performance_cores: int = 0  # Apple Silicon's fast cores (0: one kind of core, or unknown)
    efficiency_cores: int = 0
    apple_gpu_bytes: int = 0  # unified memory an Apple Silicon GPU may use (0: no Apple GPU)

    @property
    def cores(self) -> int:
        """Cores the planner may fill: physical cores (only the performance cores of a chip that
        also has efficiency cores), capped by the CPUs this process may use."""
        cores = self.performance_cores or self.cpu_count_physical or self.cpu_count_logical or 1
        if self.cpu_count_usable:
            cores = min(cores, self.cpu_count_usable)
        return max(1, cores)

    @property
    def gpu_memory_bytes(self) -> int:
        """GPU memory to report to peers and filters: every CUDA device's, else the Apple GPU's
        share of unified memory, else 0."""
        return sum(total for _name, total in self.cuda_devices) or self.apple_gpu_bytes


def _cpu_model(sysctl: dict[str, str]) -> str:
    """The CPU's marketing name, or the best the platform offers ("" when unknown)."""
    if apple.brand(sysctl):
        return apple.brand(sysctl)
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Hardware", "Processor", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    if apple.is_apple_silicon(platform.system(), platform.machine()):
        return "Apple Silicon"  # platform.processor() says only "arm"
    return platform.processor() or platform.machine()


def _cgroup_cpu_limit() -> int | None:
    """The cgroup (v2, else v1) CPU quota rounded up to whole CPUs; None when unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text().strip()
            period = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    return max(1, math.ceil(q / p)) if q > 0 and p > 0 else None


def _usable_cpus(logical: int) -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else logical
    limit = _cgroup_cpu_limit()
    return max(1, min(usable or logical, limit or logical))


def _may_have_gpu(system: str) -> bool:
    """False when no GPU driver is visible, so probing need not import torch (~2 s, ~300 MB)."""
    if system == "Linux":
        return any(os.path.exists(p) for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd"))
    return True


def _torch_installed() -> bool:
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def _apple_gpu(machine: str) -> tuple[bool, int]:
    """(MPS usable, torch's recommended GPU memory or 0) on a Mac, without importing torch: when
    torch is not loaded yet, an arm64 Mac with torch installed has MPS (macOS 12.3 and later)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return apple.is_apple_silicon("Darwin", machine) and _torch_installed(), 0
    try:
        if not torch.backends.mps.is_available():
            return False, 0
        return True, int(torch.mps.recommended_max_memory())
    except Exception as exc:  # an old or broken torch must not stop the node from starting
        log.debug("torch MPS probe failed: %s", exc)
        return apple.is_apple_silicon("Darwin", machine), 0


def _gpus(system: str) -> tuple[tuple[tuple[str, int], ...], bool]:
    """CUDA devices and MPS availability as torch sees them; nothing when torch is missing."""
    if sys.modules.get("torch") is None:
        try:
            if importlib.util.find_spec("torch") is None or not _may_have_gpu(system):
                return (), False
        except (ImportError, ValueError):
            return (), False
    try:
        import torch

        cuda: tuple[tuple[str, int], ...] = ()
        if torch.cuda.is_available():
            cuda = tuple((torch.cuda.get_device_name(i),
                          int(torch.cuda.get_device_properties(i).total_memory))
                         for i in range(torch.cuda.device_count()))
        mps_backend = getattr(torch.backends, "mps", None)
        mps = bool(mps_backend is not None and mps_backend.is_available())
        return cuda, mps
    except Exception as exc:  # a broken torch or driver must not stop the node from starting
        log.warning("GPU probe failed, assuming no GPU: %s", exc)
        return (), False


def _psutil(call: str, *args: Any, **kwargs: Any) -> Any:
    """`psutil.<call>(...)`, or None when it fails (psutil on macOS can raise around sleep)."""
    import psutil

    try:
        return getattr(psutil, call)(*args, **kwargs)
    except (OSError, RuntimeError) as exc:
        log.warning("psutil.%s failed: %s", call, exc)
        return None


def _memory() -> tuple[int, int]:
    """(total, available) RAM in bytes; from sysconf, with half counted available, if psutil fails."""
    memory = _psutil("virtual_memory")
    if memory is not None:
        return int(memory.total), int(memory.available)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        total = 0
    return total, total // 2


def probe(*, gpus: bool = True) -> HardwareInfo:
    """Probe cores, RAM and (with `gpus`) CUDA through torch if installed and a driver is
    visible, or an Apple GPU through sysctl; never raises."""
    system, machine = platform.system(), platform.machine()
    sysctl = apple.read_sysctl() if system == "Darwin" else {}
    logical = _psutil("cpu_count", logical=True) or os.cpu_count() or 1
    physical = _psutil("cpu_count", logical=False) or logical
    total, available = _memory()
    performance, efficiency = apple.core_split(sysctl)
    cuda: tuple[tuple[str, int], ...] = ()
    mps, apple_gpu = False, 0
    if system == "Darwin":
        available = apple.available_bytes(total, available, sysctl)
        if gpus and apple.is_apple_silicon(system, machine):
            mps, recommended = _apple_gpu(machine)
            apple_gpu = apple.unified_gpu_bytes(total, sysctl, recommended)
    elif gpus:
        cuda, mps = _gpus(system)
    info = HardwareInfo(
        cpu_count_logical=logical, cpu_count_physical=physical, cpu_model=_cpu_model(sysctl),
        ram_total_bytes=total, ram_available_bytes=available,
        cuda_devices=cuda, mps_available=mps, system=system, machine=machine,
        platform=platform.platform(), cpu_count_usable=_usable_cpus(logical),
        performance_cores=performance, efficiency_cores=efficiency, apple_gpu_bytes=apple_gpu,
    )
    log.debug("hardware: %s", info)
    return info


def fingerprint(hw: HardwareInfo, extra: Mapping[str, object] | None = None) -> str:
    """sha256 hex of the stable fields (CPU, cores, RAM to the GiB, GPUs, OS) plus `extra`.

    Available RAM and the kernel version are left out: they change without the speed changing.
    Put what the benchmark depends on in `extra`: model id and size, backend, library versions.
    """
    stable = {
        "v": _FINGERPRINT_VERSION,
        "cpu": hw.cpu_model,
        "logical": hw.cpu_count_logical,
        "physical": hw.cpu_count_physical,
        "usable": hw.cpu_count_usable,
        "ram_gib": round(hw.ram_total_bytes / GIB),
        "cuda": [[name, round(total / GIB)] for name, total in hw.cuda_devices],
        "mps": hw.mps_available,
        "system": hw.system,
        "machine": hw.machine,
        # Added for Apple Silicon; left out when 0 so other machines keep their fingerprint.
        **({"performance": hw.performance_cores} if hw.performance_cores else {}),
        **({"apple_gpu_gib": round(hw.apple_gpu_bytes / GIB)} if hw.apple_gpu_bytes else {}),
        "extra": {str(k): v for k, v in (extra or {}).items()},
    }
    blob = json.dumps(stable, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _gib(n: int) -> str:
    return f"{n / GIB:.1f}"


def _cores_text(hw: HardwareInfo) -> str:
    text = f"{hw.cpu_count_physical} cores"
    if hw.performance_cores:
        text += f" ({hw.performance_cores} performance, {hw.efficiency_cores} efficiency)"
    elif hw.cpu_count_logical != hw.cpu_count_physical:
        text += f" ({hw.cpu_count_logical} threads)"
    if hw.cpu_count_usable and hw.cpu_count_usable < min(hw.cpu_count_physical, hw.cpu_count_logical):
        text = f"{hw.cpu_count_usable} usable of {text}"
    return text


def _gpu_text(hw: HardwareInfo) -> str:
    if hw.cuda_devices:
        return ", ".join(f"{name} {_gib(total)} GiB" for name, total in hw.cuda_devices)
    if hw.apple_gpu_bytes:
        return f"Apple GPU ({_gib(hw.apple_gpu_bytes)} GiB of unified memory)"
    return "Apple MPS" if hw.mps_available else "no GPU"


def summary(hw: HardwareInfo) -> str:
    """One human line, e.g. "2 cores, 23.5 GiB RAM, no GPU"."""
    return f"{_cores_text(hw)}, {_gib(hw.ram_total_bytes)} GiB RAM, {_gpu_text(hw)}"


def summary_fields(hw: HardwareInfo) -> dict[str, str]:
    """Short string fields for an mDNS TXT record: cores, RAM in GiB, GPU ("none", "mps",
    "apple:<GiB>", names)."""
    if hw.cuda_devices:
        gpu = ";".join(f"{name}:{_gib(total)}" for name, total in hw.cuda_devices)
    elif hw.apple_gpu_bytes:
        gpu = f"apple:{_gib(hw.apple_gpu_bytes)}"
    else:
        gpu = "mps" if hw.mps_available else "none"
    return {"cores": str(hw.cores), "ram": _gib(hw.ram_total_bytes), "gpu": gpu,
            "arch": hw.machine or "?"}
