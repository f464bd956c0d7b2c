"""What a Mac tells `sysctl`, and what the planner makes of it: pure functions of the values.

No Mac is needed to test any of this: every decision takes the `sysctl` values (a dict of
strings, as `parse_sysctl` reads them) and the platform, never the machine it runs on. Only
`read_sysctl` runs a command, and only on macOS.

- Cores: Apple Silicon has performance and efficiency cores; psutil counts both. llama.cpp and
  torch wait on their slowest thread, so threads are counted on the performance cores
  (`hw.perflevel0.physicalcpu`, macOS 12 and later; absent on Intel Macs, which have one kind).
- GPU memory: the GPU shares RAM ("unified memory"), up to Metal's recommended working set. Where
  torch is already loaded, `torch.mps.recommended_max_memory()` says it exactly; otherwise it is
  estimated as Metal sizes it: two thirds of RAM up to 36 GiB, three quarters above, or the
  `iogpu.wired_limit_mb` the user set (`sudo sysctl iogpu.wired_limit_mb=N`, macOS 14 and later).
- Available RAM: psutil's "available" on macOS is free + inactive pages only and misses the file
  cache and purgeable memory the kernel gives back at once; `kern.memorystatus_level` is the share
  of memory the kernel itself counts as free (the figure `memory_pressure` prints), so the larger
  of the two is used.
"""
from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping

log = logging.getLogger(__name__)

GIB = 1 << 30
MIB = 1 << 20
PERFORMANCE_CORES = "hw.perflevel0.physicalcpu"
EFFICIENCY_CORES = "hw.perflevel1.physicalcpu"
BRAND = "machdep.cpu.brand_string"
WIRED_LIMIT_MB = "iogpu.wired_limit_mb"
MEMORY_FREE_PERCENT = "kern.memorystatus_level"
KEYS = (PERFORMANCE_CORES, EFFICIENCY_CORES, BRAND, WIRED_LIMIT_MB, MEMORY_FREE_PERCENT)
LARGE_MAC_BYTES = 36 * GIB  # above this, Metal lets the GPU use 3/4 of RAM instead of 2/3
SYSCTL = "/usr/sbin/sysctl"
_NAME = re.compile(r"[a-z0-9_]+(\.[A-Za-z0-9_]+)+")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl a b c` output ("name: value" lines) as a dict; other lines are skipped."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(": ")
        if sep and _NAME.fullmatch(name):
            values[name] = value.strip()
    return values


def read_sysctl(keys: Iterable[str] = KEYS, run: Runner = subprocess.run) -> dict[str, str]:
    """The values of `keys` on this Mac (one `sysctl` call; keys this macOS lacks are left out).

    Never raises: a missing or failing `sysctl` gives what it printed, or {}.
    """
    try:
        done = run([SYSCTL, *keys], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("sysctl failed: %s", exc)
        return {}
    return parse_sysctl(done.stdout or "")


def _int(values: Mapping[str, str], key: str) -> int:
    try:
        return max(0, int(values.get(key, "0")))
    except ValueError:
        return 0


def is_apple_silicon(system: str, machine: str) -> bool:
    """True on an arm64 Mac (a process under Rosetta reports x86_64 and cannot use Metal here)."""
    return system == "Darwin" and machine == "arm64"


def core_split(values: Mapping[str, str]) -> tuple[int, int]:
    """(performance, efficiency) physical cores; (0, 0) where the Mac has one kind or says nothing.

    An Intel Mac, or a macOS before 12, has no `hw.perflevel*`: then every core counts alike.
    """
    performance, efficiency = _int(values, PERFORMANCE_CORES), _int(values, EFFICIENCY_CORES)
    return (performance, efficiency) if performance and efficiency else (0, 0)


def brand(values: Mapping[str, str]) -> str:
    """The CPU's name as macOS gives it ("Apple M2 Pro", "Intel(R) Core(TM) i7-..."), or ""."""
    return values.get(BRAND, "").strip()


def unified_gpu_bytes(ram_total_bytes: int, values: Mapping[str, str],
                      recommended_bytes: int = 0) -> int:
    """RAM the Apple GPU may use: torch's `recommended_max_memory()` when known, else the user's
    `iogpu.wired_limit_mb`, else Metal's default share (2/3 of RAM, 3/4 above 36 GiB)."""
    if recommended_bytes > 0:
        return recommended_bytes
    limit = _int(values, WIRED_LIMIT_MB) * MIB
    if limit > 0:
        return min(limit, ram_total_bytes)
    share = 3 / 4 if ram_total_bytes > LARGE_MAC_BYTES else 2 / 3
    return int(ram_total_bytes * share)


def available_bytes(ram_total_bytes: int, psutil_available: int, values: Mapping[str, str]) -> int:
    """RAM the kernel would hand out now: the larger of psutil's count and the kernel's own free
    percentage (`kern.memorystatus_level`), never above the total."""
    level = _int(values, MEMORY_FREE_PERCENT)
    kernel = ram_total_bytes * min(level, 100) // 100
    return min(ram_total_bytes, max(psutil_available, kernel))
