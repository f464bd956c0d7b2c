"""Hardware probing never fails, and fingerprints change only with what changes speed."""
from __future__ import annotations

import dataclasses
import sys

from hypothesis import given
from hypothesis import strategies as st

from swarm.sizing.hardware import GIB, HardwareInfo, fingerprint, probe, summary, summary_fields

BOX = HardwareInfo(
    cpu_count_logical=2, cpu_count_physical=2, cpu_model="AMD EPYC",
    ram_total_bytes=25_276_063_744, ram_available_bytes=24_000_000_000,
    system="Linux", machine="x86_64", platform="Linux-6.1-x86_64", cpu_count_usable=2,
)


def test_probe_reports_a_sane_machine():
    hw = probe(gpus=False)
    assert hw.cpu_count_logical >= 1 and hw.cpu_count_physical >= 1
    assert 1 <= hw.cores <= hw.cpu_count_logical
    assert 1 <= hw.cpu_count_usable <= hw.cpu_count_logical
    assert 0 < hw.ram_available_bytes <= hw.ram_total_bytes
    assert hw.cuda_devices == () and hw.mps_available is False
    assert hw.system and hw.machine


def test_probe_without_torch_finds_no_gpu_and_does_not_fail(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    hw = probe()
    assert hw.cuda_devices == () and hw.mps_available is False


def test_hardware_info_is_frozen():
    try:
        BOX.cpu_count_logical = 4
    except dataclasses.FrozenInstanceError:
        return
    raise AssertionError("HardwareInfo must be frozen")


def test_cores_are_physical_capped_by_usable():
    assert BOX.cores == 2
    ht = dataclasses.replace(BOX, cpu_count_logical=16, cpu_count_physical=8, cpu_count_usable=16)
    assert ht.cores == 8
    pinned = dataclasses.replace(ht, cpu_count_usable=3)
    assert pinned.cores == 3
    unknown = dataclasses.replace(BOX, cpu_count_usable=0)
    assert unknown.cores == 2


@given(st.integers(0, BOX.ram_total_bytes), st.text(max_size=20))
def test_fingerprint_ignores_available_ram_and_kernel_version(available, plat):
    other = dataclasses.replace(BOX, ram_available_bytes=available, platform=plat)
    assert fingerprint(other, {"model": "m"}) == fingerprint(BOX, {"model": "m"})


def test_fingerprint_is_a_stable_sha256_of_what_matters():
    base = fingerprint(BOX, {"model": "SmolLM2", "backend": "llamacpp"})
    assert len(base) == 64 and int(base, 16) >= 0
    assert base == fingerprint(BOX, {"backend": "llamacpp", "model": "SmolLM2"})  # key order
    changed = [
        fingerprint(BOX, {"model": "SmolLM2", "backend": "transformers"}),
        fingerprint(BOX),
        fingerprint(dataclasses.replace(BOX, cpu_model="Intel Xeon"), {"model": "SmolLM2",
                                                                       "backend": "llamacpp"}),
        fingerprint(dataclasses.replace(BOX, cpu_count_physical=1), {"model": "SmolLM2",
                                                                     "backend": "llamacpp"}),
        fingerprint(dataclasses.replace(BOX, ram_total_bytes=8 * GIB), {"model": "SmolLM2",
                                                                         "backend": "llamacpp"}),
        fingerprint(dataclasses.replace(BOX, cuda_devices=(("RTX", 24 * GIB),)),
                    {"model": "SmolLM2", "backend": "llamacpp"}),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_fingerprint_tolerates_ram_jitter_below_a_gib():
    jitter = dataclasses.replace(BOX, ram_total_bytes=BOX.ram_total_bytes + 50 * 2**20)
    assert fingerprint(jitter) == fingerprint(BOX)


def test_summary_is_one_short_line():
    assert summary(BOX) == "2 cores, 23.5 GiB RAM, no GPU"
    ht = dataclasses.replace(BOX, cpu_count_logical=16, cpu_count_physical=8, cpu_count_usable=16,
                             cuda_devices=(("NVIDIA A100", 40 * GIB),))
    assert summary(ht) == "8 cores (16 threads), 23.5 GiB RAM, NVIDIA A100 40.0 GiB"
    mac = dataclasses.replace(BOX, mps_available=True)
    assert summary(mac).endswith("Apple MPS")


def test_summary_fields_fit_a_txt_record():
    fields = summary_fields(BOX)
    assert fields == {"cores": "2", "ram": "23.5", "gpu": "none", "arch": "x86_64"}
    gpu = summary_fields(dataclasses.replace(BOX, cuda_devices=(("RTX 4090", 24 * GIB),)))
    assert gpu["gpu"] == "RTX 4090:24.0"
    assert all(len(k) + len(v) + 1 < 255 for k, v in gpu.items())


M2 = dataclasses.replace(BOX, cpu_count_logical=12, cpu_count_physical=12, cpu_count_usable=12,
                         cpu_model="Apple M2 Pro", ram_total_bytes=16 * GIB, system="Darwin",
                         machine="arm64", performance_cores=8, efficiency_cores=4,
                         apple_gpu_bytes=16 * GIB * 2 // 3)


def test_an_apple_silicon_mac_counts_performance_cores_and_reports_its_gpu_share():
    assert M2.cores == 8
    assert dataclasses.replace(M2, cpu_count_usable=6).cores == 6
    assert M2.gpu_memory_bytes == M2.apple_gpu_bytes  # what peers filter on as vram_gb
    assert summary(M2) == ("12 cores (8 performance, 4 efficiency), 16.0 GiB RAM, "
                           "Apple GPU (10.7 GiB of unified memory)")
    assert summary_fields(M2)["gpu"] == "apple:10.7"
    cuda = dataclasses.replace(BOX, cuda_devices=(("A", 8 * GIB), ("B", 16 * GIB)))
    assert cuda.gpu_memory_bytes == 24 * GIB and BOX.gpu_memory_bytes == 0


def test_apple_fields_change_the_fingerprint_only_where_they_are_set():
    assert fingerprint(BOX) == fingerprint(dataclasses.replace(BOX, performance_cores=0))
    assert fingerprint(M2) != fingerprint(dataclasses.replace(M2, performance_cores=0,
                                                              efficiency_cores=0))
    assert fingerprint(M2) != fingerprint(dataclasses.replace(M2, apple_gpu_bytes=0))


def test_the_probe_imports_torch_only_where_a_cuda_driver_is_visible():
    """Never on macOS or a Linux without a GPU driver (1 to 2 s and ~300 MB at every start)."""
    import platform
    import subprocess

    from swarm.sizing.hardware import _may_have_gpu

    code = ("import sys; from swarm.sizing.hardware import probe; probe(); "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    system = platform.system()
    expected = system == "Linux" and _may_have_gpu(system)
    assert done.stdout.strip() == str(expected)
