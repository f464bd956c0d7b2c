"""Where the model runs: the device and why, the memory pool it draws on, how many instances it
takes, and the cores behind them (pure functions; `autoplan.choose_plan` puts them together).

- llama.cpp offloads every layer to a CUDA or Apple Silicon (Metal) GPU when its build can; on
  Metal, and transformers on MPS, only while the first-run benchmark does not find the CPU faster
  (a small model can decode faster on the CPU than the GPU takes to launch its kernels);
- a GPU takes at most `GPU_MAX_INSTANCES` (it computes for one instance at a time; a second
  overlaps its sampling with the other's compute), MPS one (PyTorch aborts when two threads
  encode at once, pytorch#197805);
- GPU memory is the first CUDA device's, or on Apple Silicon the share of unified memory the GPU
  may use (and no more than the RAM available).
"""
from __future__ import annotations

from collections.abc import Sequence

from swarm.sizing.hardware import GIB, HardwareInfo
from swarm.sizing.results import BenchmarkResult, best

MIB = 1 << 20
GPU_MAX_INSTANCES = 2  # module doc: a GPU computes for one instance at a time
MPS_ISSUE = "pytorch#197805"
COMPARED_WITH_CPU = ("metal", "mps")  # GPUs a small model may run slower on than the CPU


def count(n: int, word: str) -> str:
    """"1 core", "2 cores"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def size(n: float) -> str:
    """Bytes as "1.5 GiB" or "200 MiB"."""
    return f"{n / GIB:.1f} GiB" if n >= GIB / 10 else f"{n / MIB:.0f} MiB"


def gpu_of(hw: HardwareInfo) -> str | None:
    """The GPU llama.cpp could offload to here: "cuda", "metal" (Apple Silicon) or None."""
    if hw.cuda_devices:
        return "cuda"
    return "metal" if hw.apple_gpu_bytes else None


def cpu_faster(backend: str, gpu: str, measured: Sequence[BenchmarkResult]) -> str | None:
    """Why the CPU is chosen over `gpu`, when the benchmark measured both and the CPU won."""
    on_gpu = best([r for r in measured if r.backend == backend and r.device == gpu])
    on_cpu = best([r for r in measured if r.backend == backend and r.device == "cpu"])
    if on_gpu is None or on_cpu is None or on_cpu.score <= on_gpu.score:
        return None
    return (f"device cpu: the benchmark found it faster than {gpu} for this model "
            f"(score {on_cpu.score:.1f} against {on_gpu.score:.1f})")


def _llamacpp_device(hw: HardwareInfo, llamacpp_gpu: bool,
                     measured: Sequence[BenchmarkResult]) -> tuple[str, str]:
    gpu = gpu_of(hw)
    if gpu is None:
        if llamacpp_gpu or hw.mps_available:
            return "cpu", "device cpu: no CUDA or Apple Silicon GPU that llama.cpp can offload to"
        return "cpu", "device cpu: no CUDA or Apple Silicon GPU found"
    if not llamacpp_gpu:
        flag = "-DGGML_METAL=on" if gpu == "metal" else "-DGGML_CUDA=on"
        return "cpu", ("device cpu: this llama-cpp-python build has no GPU offload (rebuild it with "
                       f"CMAKE_ARGS={flag})")
    if gpu in COMPARED_WITH_CPU and (why := cpu_faster("llamacpp", gpu, measured)):
        return "cpu", why
    if gpu == "cuda":
        name, total = hw.cuda_devices[0]
        return "cuda", f"device cuda: llama.cpp offloads every layer to {name} ({size(total)})"
    return "metal", ("device metal: llama.cpp offloads every layer to the Apple GPU "
                     f"({size(hw.apple_gpu_bytes)} of unified memory it may use)")


def choose_device(requested: str, backend: str, hw: HardwareInfo, llamacpp_gpu: bool,
                  measured: Sequence[BenchmarkResult]) -> tuple[str, str]:
    """(device, why): `requested` unless "auto", else the GPU the engine can use, or the CPU."""
    if requested != "auto":
        return requested, f"device {requested}: as configured"
    if backend == "llamacpp":
        return _llamacpp_device(hw, llamacpp_gpu, measured)
    if hw.cuda_devices:
        name, total = hw.cuda_devices[0]
        return "cuda", f"device cuda: {name} with {size(total)}"
    if hw.mps_available:
        if why := cpu_faster("transformers", "mps", measured):
            return "cpu", why
        return "mps", "device mps: Apple GPU (unified memory)"
    return "cpu", "device cpu: no CUDA or MPS GPU found"


def memory_pool(hw: HardwareInfo, device: str) -> tuple[int, str]:
    """(bytes available to instances on `device`, what that pool is called)."""
    if device == "cuda":
        return (hw.cuda_devices[0][1] if hw.cuda_devices else 0), "VRAM on the first GPU"
    if device in ("metal", "mps") and hw.apple_gpu_bytes:
        return (min(hw.apple_gpu_bytes, hw.ram_available_bytes),
                "of unified memory for the GPU (its share of RAM, within the RAM available)")
    return hw.ram_available_bytes, "RAM available"


def instance_cap(device: str, cores: int) -> tuple[int, str]:
    """(most instances `device` takes, why) before memory and `max_instances`."""
    if device == "mps":
        return 1, (f"one on MPS (PyTorch aborts when two threads encode at once, {MPS_ISSUE})")
    if device in ("cuda", "metal"):
        return GPU_MAX_INSTANCES, (f"at most {GPU_MAX_INSTANCES} on one GPU (it computes for one "
                                   "at a time; a second overlaps its sampling with the other)")
    return cores, ""


def cores_why(hw: HardwareInfo, cores: int) -> str:
    """The cores threads are counted on, said for a person."""
    if hw.performance_cores and hw.efficiency_cores:
        return (f"{count(cores, 'performance core')} (the {hw.efficiency_cores} efficiency cores "
                "are left out: a thread there holds back the others)")
    return count(cores, "core")


def bench_lines(bench: BenchmarkResult | None, measured: Sequence[BenchmarkResult],
                backend: str) -> list[str]:
    """The benchmark's result for the plan, and the other device it was compared with."""
    if bench is None:
        return []
    lines = [f"benchmark ({bench.backend} on {bench.device}, {count(bench.threads, 'thread')}): "
             f"{bench.decode_tok_s:.1f} tok/s, first token {bench.ttft_s * 1000:.0f} ms, "
             f"score {bench.score:.1f}"]
    other = best([r for r in measured if r.backend == backend and r.device != bench.device])
    if other is not None:
        lines.append(f"compared with {other.device} ({count(other.threads, 'thread')}): "
                     f"{other.decode_tok_s:.1f} tok/s, first token {other.ttft_s * 1000:.0f} ms, "
                     f"score {other.score:.1f}")
    return lines


def benchmark_devices(device: str) -> tuple[str, ...]:
    """Where the first-run benchmark runs for a first plan on `device`: there, and on the CPU too
    for a GPU a small model may run slower on (Metal, MPS)."""
    return (device, "cpu") if device in COMPARED_WITH_CPU else (device,)
