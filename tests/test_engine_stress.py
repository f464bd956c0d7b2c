"""The real engines under cancellation and shutdown: `main.py --instances 2` with glibc's heap
checker on, mixed route, first_valid (cancels its losers), weighted_vote and streams the client
drops midway, then SIGTERM with work in flight (tests/engine_load.py). Every cycle must end with
exit code 0, no crash and no heap-checker line, within a bound a loaded CI machine meets; the
time against the 2 s goal is printed here and measured by bench/shutdown.py.

CI runs a few cycles; `SWARM_STRESS_CYCLES=50` runs more (the issue's bar: 0 of 50 may fail).
"""
from __future__ import annotations

import os

import pytest

from tests.engine_load import EXIT_BOUND_S, EXIT_GOAL_S, cycle, heap_checker_env

pytestmark = pytest.mark.slow


def cycles(default: int) -> int:
    return max(1, int(os.environ.get("SWARM_STRESS_CYCLES", default)))


def bounded(default: int, per_cycle_s: float):
    """pytest-timeout's bound for `cycles(default)` cycles of about `per_cycle_s` each."""
    return pytest.mark.timeout(120 + 3 * per_cycle_s * cycles(default))


def run_cycles(backend: str, n: int, **kwargs) -> None:
    results = [cycle(backend, **kwargs) for _ in range(n)]
    exits = sorted(r.exit_s for r in results)
    print(f"\n{backend}: {n} cycles, heap checker {'on' if heap_checker_env() else 'OFF'}: "
          f"{sum(r.crashed for r in results)} crashes, {sum(bool(r.heap_lines) for r in results)} "
          f"with heap errors, SIGTERM to exit max {exits[-1]:.2f} s (median "
          f"{exits[len(exits) // 2]:.2f} s, {sum(e > EXIT_GOAL_S for e in exits)} over the "
          f"{EXIT_GOAL_S:.0f} s goal); statuses {[r.statuses for r in results][:3]}")
    for r in results:
        assert not r.crashed, f"exit code {r.returncode}:\n{r.output_tail}"
        assert not r.heap_lines, r.heap_lines
        assert r.exit_s <= EXIT_BOUND_S, f"SIGTERM took {r.exit_s:.2f} s:\n{r.output_tail}"
        assert r.statuses.get("500", 0) == 0, r.statuses


@pytest.mark.llamacpp
@bounded(3, 30)
def test_llamacpp_survives_cancellation_and_sigterm_under_the_heap_checker():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra [llamacpp])")
    run_cycles("llamacpp", cycles(3))


@bounded(1, 60)
def test_transformers_survives_cancellation_and_sigterm_under_the_heap_checker():
    run_cycles("transformers", cycles(1), rounds=1, max_tokens=12)
