"""Loading the node's model: `load_engine` probes the machine, runs the `--auto` plan (benchmarking
once) when asked, and loads the configured instances behind a progress bar; `Engine` is what it
loaded and how, or backends loaded elsewhere (`Engine.given`: benches and tests, scripted ones).
main.py builds the node over it."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from swarm.node.config import Config

if TYPE_CHECKING:
    from swarm.engine.backend import Backend
    from swarm.models.store import ModelSource


@dataclass(frozen=True)
class Engine:
    """The loaded instances' backends, the benchmark score (`--auto`), and how they were loaded."""

    backends: Sequence[Backend]
    bench_score: float = 0.0
    backend: str = ""  # "llamacpp on cpu, float32", for the start-up panel
    layout: str = ""  # "2 x 1 thread(s)"
    source: ModelSource | None = None  # the model's files, shared with peers that lack them

    @classmethod
    def given(cls, backends: Sequence[Backend], bench_score: float = 0.0,
              source: ModelSource | None = None) -> Engine:
        """Backends loaded elsewhere (benches and tests: scripted ones), sharing `source`."""
        return cls(backends, bench_score, backends[0].name, f"{len(backends)} instance(s)",
                   source)



async def load_engine(config: Config) -> Engine:
    """Load the configured model (after the `--auto` plan: probe, benchmark once, choose)."""
    from swarm.engine.loader import load_backends, plan_from_config
    from swarm.node.terminal import progress_bar
    from swarm.sizing.hardware import probe

    # Default threads: cores / instances, on the performance cores only of an Apple chip.
    plan, bench_score = plan_from_config(config, cores=probe(gpus=False).cores), 0.0
    if config.auto:
        from swarm.sizing.autorun import apply_auto_plan

        plan, bench_score = apply_auto_plan(plan, config)
    with progress_bar("loading model") as report:
        loaded = await asyncio.to_thread(load_backends, plan, config, report)
    return Engine(loaded, bench_score, f"{plan.backend} on {plan.device}, {plan.dtype}",
                  f"{plan.instances} x {plan.threads} thread(s)", plan.source)
