"""Telling a sleep (or a stopped process) from time passing, by two clocks read together.

Pure: readings in, seconds out. macOS stops `time.monotonic()` while the machine sleeps (so does
Linux's CLOCK_MONOTONIC, which it reads there); the wall clock keeps going, and is stepped to the
right time on wake. So across a sleep the wall clock runs ahead of the monotonic one by the time
slept. A process that was stopped (SIGSTOP, a debugger, a starved VM) sees both clocks jump
together, far beyond the period it reads them at. Either way its view of the peers is stale and
its timers think little or no time has passed: the election driver then re-enters the start-up
grace (`election.rest`) instead of judging peers or claiming.
"""
from __future__ import annotations

from dataclasses import dataclass

AWAY_S = 2.0  # a gap this long is an absence, not jitter or a slewed clock


@dataclass(frozen=True)
class Reading:
    """The two clocks read at one moment: `time.time()` and `time.monotonic()`."""

    wall: float
    mono: float


def away(before: Reading, after: Reading, period_s: float, least_s: float = AWAY_S) -> float:
    """Seconds this process missed between two readings taken about `period_s` apart: the wall
    clock's lead over the monotonic one (the machine slept), or the monotonic gap beyond the
    period (the process was stopped); 0.0 when neither reaches `least_s`. A wall clock stepped
    back (NTP) reads as no absence."""
    mono = after.mono - before.mono
    slept = (after.wall - before.wall) - mono
    stopped = mono - period_s
    missed = max(slept, stopped)
    return missed if missed >= least_s else 0.0
