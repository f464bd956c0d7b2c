"""What a Mac's sysctl says, read purely: cores, the GPU's share of unified memory, free RAM."""
from __future__ import annotations

import subprocess

from hypothesis import given
from hypothesis import strategies as st

from swarm.sizing import apple
from swarm.sizing.apple import GIB, MIB

# `sysctl hw.perflevel0.physicalcpu hw.perflevel1.physicalcpu machdep.cpu.brand_string
#  iogpu.wired_limit_mb kern.memorystatus_level` on an M2 Pro (stdout; unknown keys go to stderr)
M2_PRO = """hw.perflevel0.physicalcpu: 8
hw.perflevel1.physicalcpu: 4
machdep.cpu.brand_string: Apple M2 Pro
iogpu.wired_limit_mb: 0
kern.memorystatus_level: 71
"""
# The same on an Intel MacBook Pro (no perflevels, no iogpu)
INTEL = """machdep.cpu.brand_string: Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz
kern.memorystatus_level: 40
"""


def test_parse_reads_name_value_lines_and_skips_the_rest():
    values = apple.parse_sysctl(M2_PRO + "sysctl: unknown oid 'hw.perflevel2'\n\n")
    assert values[apple.BRAND] == "Apple M2 Pro"
    assert values[apple.PERFORMANCE_CORES] == "8"
    assert len(values) == 5


def test_an_m2_pro_has_eight_performance_and_four_efficiency_cores():
    values = apple.parse_sysctl(M2_PRO)
    assert apple.core_split(values) == (8, 4)
    assert apple.brand(values) == "Apple M2 Pro"


def test_an_intel_mac_has_one_kind_of_core():
    values = apple.parse_sysctl(INTEL)
    assert apple.core_split(values) == (0, 0)
    assert apple.brand(values).startswith("Intel(R) Core(TM) i7")
    assert apple.core_split({apple.PERFORMANCE_CORES: "8"}) == (0, 0)  # macOS 12 on an M1 Max? no
    assert apple.core_split({apple.PERFORMANCE_CORES: "x", apple.EFFICIENCY_CORES: "2"}) == (0, 0)


def test_only_arm64_macs_are_apple_silicon():
    assert apple.is_apple_silicon("Darwin", "arm64")
    assert not apple.is_apple_silicon("Darwin", "x86_64")  # Intel, or Python under Rosetta
    assert not apple.is_apple_silicon("Linux", "arm64")


def test_the_gpu_share_follows_metals_default_and_the_users_limit():
    values = apple.parse_sysctl(M2_PRO)
    assert apple.unified_gpu_bytes(16 * GIB, values) == int(16 * GIB * 2 / 3)
    assert apple.unified_gpu_bytes(36 * GIB, values) == 24 * GIB
    assert apple.unified_gpu_bytes(64 * GIB, values) == 48 * GIB
    assert apple.unified_gpu_bytes(16 * GIB, {apple.WIRED_LIMIT_MB: "12288"}) == 12 * GIB
    assert apple.unified_gpu_bytes(16 * GIB, {apple.WIRED_LIMIT_MB: "99999"}) == 16 * GIB
    assert apple.unified_gpu_bytes(16 * GIB, values, recommended_bytes=11 * GIB) == 11 * GIB


def test_available_ram_takes_the_kernels_free_share_when_psutil_undercounts():
    values = apple.parse_sysctl(M2_PRO)
    assert apple.available_bytes(16 * GIB, 3 * GIB, values) == 16 * GIB * 71 // 100
    assert apple.available_bytes(16 * GIB, 14 * GIB, values) == 14 * GIB
    assert apple.available_bytes(16 * GIB, 3 * GIB, {}) == 3 * GIB


@given(st.integers(0, 1 << 42), st.integers(0, 1 << 42),
       st.dictionaries(st.sampled_from(apple.KEYS), st.text(max_size=8) | st.integers(-5, 10**6)
                       .map(str)))
def test_the_answers_stay_in_bounds_whatever_sysctl_says(total, psutil_available, values):
    gpu = apple.unified_gpu_bytes(total, values)
    assert 0 <= gpu <= total
    assert min(total, psutil_available) <= apple.available_bytes(total, psutil_available,
                                                                  values) <= total
    performance, efficiency = apple.core_split(values)
    assert (performance == 0) == (efficiency == 0) and performance >= 0


def test_read_sysctl_runs_one_command_and_never_raises():
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, stdout=INTEL, stderr="unknown oid")

    assert apple.read_sysctl(run=run)[apple.BRAND].startswith("Intel")
    assert calls == [[apple.SYSCTL, *apple.KEYS]]

    def missing(argv, **kwargs):
        raise FileNotFoundError(argv[0])

    assert apple.read_sysctl(run=missing) == {}
    assert MIB * 1024 == GIB
