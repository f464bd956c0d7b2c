"""`--auto` end to end on the real llama.cpp engine, with the hardware a Mac reports: the
first-run benchmark times the GPU device and the CPU, caches both, and the plan is chosen from
them. (No Mac here: llama.cpp's CPU build runs the "metal" timing too; what is tested is that
both are measured, kept apart and compared.)"""
from __future__ import annotations

import dataclasses
import functools
import io

import pytest
from rich.console import Console

from swarm.node.config import load_config
from swarm.sizing import autorun
from swarm.sizing.hardware import GIB, HardwareInfo
from tests.engines import needs_llamacpp

pytestmark = [needs_llamacpp, pytest.mark.slow]

@pytest.fixture(autouse=True)
def short_benchmark(monkeypatch):
    """One prompt of 8 tokens per configuration: the real engine, a short run."""
    monkeypatch.setattr(autorun, "run_benchmark", functools.partial(
        autorun.run_benchmark, prompts=("Describe a walk in a forest.",), max_tokens=8))


# One performance core keeps every timing single-threaded: quick even on a loaded machine.
SMALL_M = HardwareInfo(cpu_count_logical=4, cpu_count_physical=4, cpu_model="Apple M-test",
                       ram_total_bytes=16 * GIB, ram_available_bytes=10 * GIB, system="Darwin",
                       machine="arm64", cpu_count_usable=4, performance_cores=1,
                       efficiency_cores=3, apple_gpu_bytes=16 * GIB * 2 // 3)


def test_auto_on_an_apple_gpu_times_metal_and_the_cpu_and_plans_from_both(tmp_path, monkeypatch):
    monkeypatch.setattr(autorun, "probe", lambda: SMALL_M)
    monkeypatch.setattr(autorun, "llamacpp_gpu_offload", lambda: True)
    out = io.StringIO()
    monkeypatch.setattr(autorun, "console", Console(file=out, width=200, color_system=None))
    config = load_config(env={}, cli={"model.cache_dir": str(tmp_path)})

    hw, _base, plan, results, cached = autorun.measure(config, refresh=False)
    assert not cached and hw is SMALL_M
    assert {(r.device, r.threads) for r in results} == {("metal", 1), ("cpu", 1)}
    assert all(r.backend == "llamacpp" and r.decode_tok_s > 0 for r in results)
    best = {d: max(r.score for r in results if r.device == d) for d in ("metal", "cpu")}
    assert plan.device == ("cpu" if best["cpu"] > best["metal"] else "metal")
    assert any(r.startswith("compared with") for r in plan.reasons)

    again = autorun.measure(config, refresh=False)  # the cache holds both devices
    assert again[4] and again[3] == results

    chosen, score = autorun.apply_auto_plan(_base, config)
    assert (chosen.backend, chosen.device) == ("llamacpp", plan.device)
    assert chosen.threads * chosen.instances <= SMALL_M.cores
    assert score == pytest.approx(best[plan.device] * chosen.instances)
    printed = out.getvalue()
    assert "4 cores (1 performance, 3 efficiency)" in printed
    assert "metal" in printed and "cpu" in printed and f"llamacpp on {plan.device}" in printed


def test_a_build_without_offload_times_the_cpu_only(tmp_path, monkeypatch):
    monkeypatch.setattr(autorun, "probe", lambda: dataclasses.replace(SMALL_M))
    monkeypatch.setattr(autorun, "llamacpp_gpu_offload", lambda: False)
    monkeypatch.setattr(autorun, "console", Console(file=io.StringIO(), color_system=None))
    config = load_config(env={}, cli={"model.cache_dir": str(tmp_path)})
    _hw, _base, plan, results, _cached = autorun.measure(config, refresh=False)
    assert {r.device for r in results} == {"cpu"} and plan.device == "cpu"
    assert any("-DGGML_METAL=on" in r for r in plan.reasons)
