"""`choose_plan` never oversubscribes cores, fits memory or warns, and explains every choice."""
from __future__ import annotations

import dataclasses
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from swarm.models.store import ModelError
from swarm.sizing import apple
from swarm.sizing.autoplan import Plan, choose_plan, estimate_instance_bytes, render_plan
from swarm.sizing.hardware import GIB, HardwareInfo
from swarm.sizing.placement import benchmark_devices
from swarm.sizing.results import BenchmarkResult

MB = 10**6
BOX = HardwareInfo(cpu_count_logical=2, cpu_count_physical=2, cpu_model="AMD EPYC",
                   ram_total_bytes=25_276_063_744, ram_available_bytes=24_000_000_000,
                   system="Linux", machine="x86_64", cpu_count_usable=2)


def bench(backend: str = "llamacpp", peak: int = 200 * MB, threads: int = 1) -> BenchmarkResult:
    return BenchmarkResult(backend=backend, model_id="m", threads=threads, instances=1, ttft_s=0.08,
                           decode_tok_s=70.0, peak_rss_bytes=peak, score=60.0,
                           measured_at="2025-01-01T00:00:00+00:00")


@st.composite
def hardware(draw) -> HardwareInfo:
    logical = draw(st.integers(1, 256))
    physical = draw(st.integers(1, logical))
    total = draw(st.integers(128 * 2**20, 2**40))
    if draw(st.booleans()):  # an Apple Silicon Mac: no CUDA, maybe split cores, a GPU share
        performance = draw(st.integers(0, physical))
        efficiency = physical - performance if performance else 0
        gpus: list[tuple[str, int]] = []
        apple_gpu = draw(st.integers(0, total))
    else:
        performance = efficiency = apple_gpu = 0
        gpus = draw(st.lists(st.tuples(st.sampled_from(["RTX", "A100"]),
                                       st.integers(0, 80 * GIB)), max_size=2))
    return HardwareInfo(
        cpu_count_logical=logical, cpu_count_physical=physical,
        cpu_model="cpu", ram_total_bytes=total, ram_available_bytes=draw(st.integers(0, total)),
        cuda_devices=tuple(gpus), mps_available=draw(st.booleans()),
        cpu_count_usable=draw(st.integers(0, logical)), performance_cores=performance,
        efficiency_cores=efficiency, apple_gpu_bytes=apple_gpu,
    )


def measured_on(device: str, score: float, backend: str = "llamacpp",
                threads: int = 1) -> BenchmarkResult:
    return dataclasses.replace(bench(backend, threads=threads), device=device, score=score)


plan_args = st.fixed_dictionaries({
    "llamacpp_available": st.booleans(),
    "model_is_gguf": st.booleans(),
    "model_bytes": st.integers(0, 50 * 10**9),
    "bench": st.none() | st.builds(bench, st.sampled_from(["llamacpp", "transformers"]),
                                   st.integers(0, 20 * 10**9), st.integers(1, 8)),
    "measured": st.lists(st.builds(measured_on, st.sampled_from(["cpu", "metal", "mps", "cuda"]),
                                   st.floats(0, 500),
                                   st.sampled_from(["llamacpp", "transformers"])), max_size=4),
    "llamacpp_gpu": st.booleans(),
    "headroom_fraction": st.floats(0.0, 0.95),
    "max_instances": st.integers(1, 16),
    "embedded": st.booleans(),
    "quant": st.sampled_from(["auto", "f16", "f32", "file"]),
})


def budget(hw: HardwareInfo, plan: Plan, headroom: float) -> int:
    if plan.device == "cuda":
        available = hw.cuda_devices[0][1] if hw.cuda_devices else 0
    elif plan.device in ("metal", "mps") and hw.apple_gpu_bytes:
        available = min(hw.apple_gpu_bytes, hw.ram_available_bytes)
    else:
        available = hw.ram_available_bytes
    return int(available * (1 - headroom))


@given(hardware(), plan_args)
def test_plans_never_oversubscribe_and_fit_memory_or_warn(hw, args):
    plan = choose_plan(hw, **args)
    assert plan.threads_per_instance >= 1 and plan.instances >= 1
    assert plan.threads_per_instance * plan.instances <= hw.cores
    assert plan.instances <= args["max_instances"]
    assert plan.instances <= {"cpu": hw.cores, "cuda": 2, "metal": 2, "mps": 1}[plan.device]
    assert plan.memory_budget_bytes == budget(hw, plan, args["headroom_fraction"])
    fits = plan.instances * plan.instance_bytes <= plan.memory_budget_bytes
    assert fits or (plan.instances == 1 and plan.warnings)
    assert plan.reasons and all(isinstance(r, str) and r for r in plan.reasons)


@given(hardware(), plan_args)
def test_plans_are_deterministic(hw, args):
    assert choose_plan(hw, **args) == choose_plan(hw, **args)


@given(hardware(), plan_args)
def test_backend_device_and_dtype_follow_the_rules(hw, args):
    plan = choose_plan(hw, **args)
    fast = args["llamacpp_available"] and args["model_is_gguf"]
    assert plan.backend == ("llamacpp" if fast else "transformers")

    def cpu_won(gpu: str) -> bool:
        on_gpu, on_cpu = ([r.score for r in args["measured"]
                           if r.backend == plan.backend and r.device == d] for d in (gpu, "cpu"))
        return bool(on_gpu and on_cpu) and max(on_cpu) > max(on_gpu)

    if plan.backend == "llamacpp":
        if not args["llamacpp_gpu"]:
            assert plan.device == "cpu"
        elif hw.cuda_devices:
            assert plan.device == "cuda"
        elif hw.apple_gpu_bytes:
            assert plan.device == ("cpu" if cpu_won("metal") else "metal")
        else:
            assert plan.device == "cpu"
    elif hw.cuda_devices:
        assert plan.device == "cuda"
    elif hw.mps_available:
        assert plan.device == ("cpu" if cpu_won("mps") else "mps")
    else:
        assert plan.device == "cpu"
    if plan.backend == "transformers":
        assert plan.dtype == {"cpu": "float32", "cuda": "float16", "mps": "float16"}[plan.device]


def test_two_core_box_with_llamacpp_runs_two_single_thread_instances():
    plan = choose_plan(BOX, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB)
    assert (plan.backend, plan.device, plan.instances, plan.threads_per_instance) == \
        ("llamacpp", "cpu", 2, 1)
    text = " ".join(plan.reasons)
    assert "GGUF" in text and "7x" in text and "never exceed" in text and "25% headroom" in text
    assert not plan.warnings


def test_transformers_on_cpu_is_float32_and_says_why():
    plan = choose_plan(BOX, llamacpp_available=False, model_is_gguf=True, model_bytes=98 * MB)
    assert (plan.backend, plan.dtype, plan.instances) == ("transformers", "float32", 2)
    assert any("not installed" in r for r in plan.reasons)
    assert any(r.startswith("float32 on CPU") and "bfloat16" in r for r in plan.reasons)


def test_many_cores_are_capped_by_max_instances_and_threads_fill_the_rest():
    big = dataclasses.replace(BOX, cpu_count_logical=32, cpu_count_physical=16, cpu_count_usable=32)
    plan = choose_plan(big, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB)
    assert (plan.instances, plan.threads_per_instance) == (8, 2)


def test_memory_caps_instances():
    small = dataclasses.replace(BOX, cpu_count_logical=8, cpu_count_physical=8, cpu_count_usable=8,
                                ram_available_bytes=3 * GIB)
    plan = choose_plan(small, llamacpp_available=False, model_is_gguf=False, model_bytes=0,
                       bench=bench("transformers", peak=1 * GIB))
    assert (plan.instances, plan.threads_per_instance) == (2, 4)
    assert plan.instance_bytes == 1 * GIB and "measured" in " ".join(plan.reasons)


def test_too_little_memory_starts_one_instance_with_a_warning():
    tiny = dataclasses.replace(BOX, ram_available_bytes=500 * MB)
    plan = choose_plan(tiny, llamacpp_available=False, model_is_gguf=True, model_bytes=98 * MB)
    assert (plan.instances, plan.threads_per_instance) == (1, 2)
    assert plan.warnings and "swapping" in plan.warnings[0]


def test_a_benchmark_of_another_backend_is_not_used_for_memory():
    plan = choose_plan(BOX, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       bench=bench("transformers", peak=9 * GIB))
    assert plan.instance_bytes == estimate_instance_bytes("llamacpp", "cpu", "float32", 98 * MB, True)


def test_cuda_is_bounded_by_vram():
    gpu = dataclasses.replace(BOX, cpu_count_logical=8, cpu_count_physical=8, cpu_count_usable=8,
                              cuda_devices=(("RTX 4090", 4 * GIB),))
    plan = choose_plan(gpu, llamacpp_available=False, model_is_gguf=False, model_bytes=1 * GIB)
    assert (plan.device, plan.dtype) == ("cuda", "float16")
    assert plan.memory_budget_bytes == 3 * GIB
    assert plan.instances == 3 * GIB // plan.instance_bytes >= 1


def test_pinned_choices_are_kept():
    plan = choose_plan(BOX, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       backend="transformers", dtype="bfloat16")
    assert (plan.backend, plan.dtype) == ("transformers", "bfloat16")
    assert any("as configured" in r for r in plan.reasons)


def test_render_plan_lists_choices_and_reasons():
    plan = choose_plan(dataclasses.replace(BOX, ram_available_bytes=100 * MB),
                       llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       bench=bench())
    out = io.StringIO()
    Console(file=out, width=300, color_system=None).print(render_plan(plan))
    text = out.getvalue()
    assert "llamacpp on cpu" in text and "1 x 2 threads" in text
    assert "70.0 tok/s" in text and "swapping" in text
    for reason in plan.reasons:
        assert reason in text


@given(hardware(), plan_args)
def test_llamacpp_weights_are_exact_for_the_embedded_model_unless_only_q4_fits(hw, args):
    plan = choose_plan(hw, **args)
    if plan.backend != "llamacpp":
        return
    text = " ".join(plan.reasons)
    if args["quant"] != "auto":
        assert plan.dtype == {"file": "gguf"}.get(args["quant"], args["quant"])
        assert f"quant {args['quant']}: as configured" in text
    elif not args["embedded"]:
        assert plan.dtype == "gguf" and "its own quantization" in text
    else:
        assert plan.dtype in ("f16", "gguf")
        assert ("F16 copy" in text) == (plan.dtype == "f16")


def test_the_embedded_model_runs_as_f16_and_says_why_and_at_what_cost():
    plan = choose_plan(BOX, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       embedded=True)
    assert plan.dtype == "f16"
    text = " ".join(plan.reasons)
    assert "float32 reference" in text and "0.9x its speed" in text and "--quant file" in text
    tight = dataclasses.replace(BOX, ram_available_bytes=500 * MB)
    small = choose_plan(tight, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                        embedded=True)
    assert small.dtype == "gguf" and any("only it fits memory" in r for r in small.reasons)


# ---- Macs: the plans --auto prints for the sysctl values a Mac gives ---------------------------

M2_SYSCTL = ("hw.perflevel0.physicalcpu: 8\nhw.perflevel1.physicalcpu: 4\n"
             "machdep.cpu.brand_string: Apple M2 Pro\nkern.memorystatus_level: 62\n")


def mac(sysctl_text: str = M2_SYSCTL, *, ram_gib: int = 16, machine: str = "arm64",
        psutil_available: int = 5 * GIB, logical: int = 12, torch: bool = False) -> HardwareInfo:
    """What `hardware.probe` builds on a Mac from these answers (see swarm/sizing/apple.py)."""
    values = apple.parse_sysctl(sysctl_text)
    total = ram_gib * GIB
    performance, efficiency = apple.core_split(values)
    silicon = apple.is_apple_silicon("Darwin", machine)
    return HardwareInfo(
        cpu_count_logical=logical, cpu_count_physical=logical, cpu_model=apple.brand(values),
        ram_total_bytes=total, ram_available_bytes=apple.available_bytes(total, psutil_available,
                                                                         values),
        mps_available=silicon and torch, system="Darwin", machine=machine,
        cpu_count_usable=logical, performance_cores=performance, efficiency_cores=efficiency,
        apple_gpu_bytes=apple.unified_gpu_bytes(total, values) if silicon else 0)


def text_of(plan: Plan) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(render_plan(plan))
    return out.getvalue()


def test_an_m2_with_a_metal_build_offloads_to_metal_with_two_instances_on_performance_cores():
    hw = mac()
    assert (hw.cores, hw.apple_gpu_bytes) == (8, int(16 * GIB * 2 / 3))
    plan = choose_plan(hw, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       llamacpp_gpu=True, embedded=True)
    assert (plan.backend, plan.device, plan.dtype, plan.instances, plan.threads_per_instance) == \
        ("llamacpp", "metal", "f16", 2, 4)
    text = text_of(plan)
    assert "llamacpp on metal" in text and "offloads every layer to the Apple GPU" in text
    assert "8 performance cores" in text and "4 efficiency cores are left out" in text
    assert "at most 2 on one GPU" in text and "10.7 GiB of unified memory" in text
    assert not plan.warnings


def test_metal_stays_when_the_benchmark_finds_it_faster_and_says_both_numbers():
    measured = [measured_on("metal", 240.0, threads=8), measured_on("cpu", 60.0),
                measured_on("cpu", 110.0, threads=8)]
    plan = choose_plan(mac(), llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       llamacpp_gpu=True, measured=measured)
    assert plan.device == "metal"
    text = " ".join(plan.reasons)
    assert "benchmark (llamacpp on metal, 8 threads)" in text and "score 240.0" in text
    assert "compared with cpu (8 threads)" in text and "score 110.0" in text


def test_the_cpu_wins_when_the_benchmark_finds_it_faster_than_metal():
    measured = [measured_on("metal", 90.0, threads=8), measured_on("cpu", 70.0),
                measured_on("cpu", 130.0, threads=8)]
    plan = choose_plan(mac(), llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       llamacpp_gpu=True, measured=measured)
    assert (plan.device, plan.instances, plan.threads_per_instance) == ("cpu", 8, 1)
    assert any("faster than metal" in r and "130.0 against 90.0" in r for r in plan.reasons)


def test_a_build_without_metal_plans_the_cpu_and_says_how_to_rebuild():
    plan = choose_plan(mac(), llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       llamacpp_gpu=False)
    assert (plan.device, plan.instances, plan.threads_per_instance) == ("cpu", 8, 1)
    assert any("no GPU offload" in r and "-DGGML_METAL=on" in r for r in plan.reasons)


def test_an_intel_mac_has_no_apple_gpu_and_counts_every_core():
    intel = mac("machdep.cpu.brand_string: Intel(R) Core(TM) i7-9750H CPU @ 2.60GHz\n",
                machine="x86_64", logical=6)
    assert (intel.cores, intel.apple_gpu_bytes, intel.performance_cores) == (6, 0, 0)
    plan = choose_plan(intel, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       llamacpp_gpu=False)
    assert (plan.device, plan.instances) == ("cpu", 6)


def test_transformers_on_mps_runs_one_instance_and_says_why():
    plan = choose_plan(mac(torch=True), llamacpp_available=False, model_is_gguf=True,
                       model_bytes=98 * MB)
    assert (plan.backend, plan.device, plan.dtype, plan.instances) == \
        ("transformers", "mps", "float16", 1)
    assert plan.threads_per_instance == 8
    assert any("pytorch#197805" in r for r in plan.reasons)


def test_no_installed_engine_is_a_clear_model_error():
    with pytest.raises(ModelError, match=r"transformers engine is not installed.*\[transformers\]"):
        choose_plan(BOX, llamacpp_available=False, model_is_gguf=True, model_bytes=98 * MB,
                    transformers_available=False)
    with pytest.raises(ModelError, match="not a GGUF file"):
        choose_plan(BOX, llamacpp_available=True, model_is_gguf=False, model_bytes=98 * MB,
                    transformers_available=False)


def test_a_gpu_never_gets_more_instances_than_cores():
    one = dataclasses.replace(mac(), performance_cores=1, efficiency_cores=1, cpu_count_physical=2,
                              cpu_count_logical=2, cpu_count_usable=2)
    plan = choose_plan(one, llamacpp_available=True, model_is_gguf=True, model_bytes=98 * MB,
                       llamacpp_gpu=True)
    assert (plan.device, plan.instances, plan.threads_per_instance) == ("metal", 1, 1)


def test_the_benchmark_compares_metal_and_mps_with_the_cpu_only():
    assert benchmark_devices("metal") == ("metal", "cpu")
    assert benchmark_devices("mps") == ("mps", "cpu")
    assert benchmark_devices("cuda") == ("cuda",)
    assert benchmark_devices("cpu") == ("cpu",)
