"""Sleep and stop detection from two clocks (network/coordination/wake.py), with the readings a
Mac gives, and the election driver re-entering its start-up grace on them."""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from network.coordination.driver import Coordinator
from network.coordination.election import Candidate, Role
from network.coordination.wake import AWAY_S, Reading, away
from network.membership.table import Membership
from network.wire.election import PlanMember
from tests.federation_fixtures import until

TICK = 0.25  # the driver's period
# Readings as macOS gives them: time.time() keeps running through a sleep (and is stepped to the
# right time on wake), time.monotonic() (mach_absolute_time) stands still while asleep.
BEFORE_LID = Reading(wall=1_790_000_000.25, mono=86_400.5)
AFTER_HOUR = Reading(wall=1_790_003_600.40, mono=86_400.76)  # lid closed an hour, 0.26 s awake
AFTER_BLIP = Reading(wall=1_790_000_001.30, mono=86_400.78)  # a 0.77 s display sleep: too short


def test_a_closed_lid_reads_as_the_time_slept():
    assert away(BEFORE_LID, AFTER_HOUR, TICK) == (AFTER_HOUR.wall - BEFORE_LID.wall) - (
        AFTER_HOUR.mono - BEFORE_LID.mono)
    assert 3599 < away(BEFORE_LID, AFTER_HOUR, TICK) < 3600
    assert away(BEFORE_LID, AFTER_BLIP, TICK) == 0.0


def test_a_stopped_process_reads_as_the_gap_beyond_its_period():
    thawed = Reading(BEFORE_LID.wall + 5.3, BEFORE_LID.mono + 5.3)  # SIGSTOP, both clocks ran
    assert away(BEFORE_LID, thawed, TICK) == pytest.approx(5.3 - TICK)
    late = Reading(BEFORE_LID.wall + 1.1, BEFORE_LID.mono + 1.1)  # a busy loop, not an absence
    assert away(BEFORE_LID, late, TICK) == 0.0


def test_a_wall_clock_stepped_back_or_slewed_is_no_absence():
    back = Reading(BEFORE_LID.wall - 3600, BEFORE_LID.mono + TICK)  # NTP fixed a clock ahead
    slewed = Reading(BEFORE_LID.wall + TICK * 1.0005, BEFORE_LID.mono + TICK)
    assert away(BEFORE_LID, back, TICK) == away(BEFORE_LID, slewed, TICK) == 0.0


@settings(max_examples=300, deadline=None)
@given(st.floats(0, 2e9), st.floats(0, 1e7), st.floats(0, 1e6), st.floats(0, 10),
       st.floats(-1e3, 1e3))
def test_an_absence_is_found_exactly_when_one_clock_leaps(wall: float, mono: float,
                                                          slept: float, ran: float,
                                                          drift: float) -> None:
    before = Reading(wall, mono)
    after = Reading(wall + slept + ran + drift * 1e-6, mono + ran)
    found = away(before, after, TICK)
    missed = max(slept + drift * 1e-6, ran - TICK)
    assume(abs(missed - AWAY_S) > 1e-3)  # float rounding at the very threshold
    assert (found > 0) == (missed >= AWAY_S)
    assert found == 0.0 or abs(found - missed) < 1e-3


class _Quiet:
    async def election(self, *_args: object) -> list[object]:
        return []

    async def plan(self, *_args: object) -> object:
        raise OSError("no plan")


async def test_the_driver_re_enters_its_grace_when_the_wall_clock_leaps(caplog):
    """A lone node leads itself; the machine sleeps an hour (the monotonic clock stands still):
    on waking it drops the solo role and waits out a fresh start-up grace before leading."""
    clocks = {"wall": 1_790_000_000.0, "mono": 100.0}

    def later(seconds: float, asleep: bool = False) -> bool:
        """Move the fake clocks on (the monotonic one stands still while asleep); wake the driver."""
        clocks["mono"] += 0.0 if asleep else seconds
        clocks["wall"] += seconds
        coordinator.poke()
        return True

    coordinator = Coordinator(Candidate("a"), Membership("a", 1, ""), _Quiet(),
                              lambda: PlanMember(node_id="a"), clock=lambda: clocks["mono"],
                              wall_clock=lambda: clocks["wall"], tick_s=0.01)
    await coordinator.start()
    try:
        await until(lambda: later(0.02) and coordinator.role is Role.COORDINATOR,
                    what="the lone node to lead")
        assert coordinator.state.solo and coordinator.state.term == 0
        caplog.set_level("INFO", logger="network.coordination.driver")
        asleep_at = clocks["mono"]
        later(3600.0, asleep=True)  # the wall clock leaps, the monotonic one does not
        await until(lambda: coordinator.state.started == asleep_at, what="a fresh grace")
        assert coordinator.role is Role.FOLLOWER and "away for 3600.0 s" in caplog.text
        await until(lambda: later(0.02) and coordinator.role is Role.COORDINATOR,
                    what="leading again")
        assert clocks["mono"] >= asleep_at + coordinator.timings.startup_grace_s  # not before
    finally:
        await coordinator.close()
