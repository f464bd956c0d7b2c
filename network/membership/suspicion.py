"""When a failed probe is the peer's fault, and how many probes a suspicion may set off: pure.

Twenty node processes on two cores starve each other's event loops: a prober whose loop runs late
sees its own probe's timer fire late, with the peer's answer (or the TCP accept, done by the
kernel long before) still unread. Such a timeout says nothing about the peer, so it is not
counted (`blame`): the loop's lateness is measured by `LoopLag` from timers that should have run
at a known time (the monitor's tick, the probe's own timeout). A timeout that does count only
makes the peer suspect; its death waits for another member to suspect it too
(network/membership/table.py), which is SWIM's indirect probe: a heartbeat naming a suspect makes
every member that gets it probe that peer (`ProbeBudget` bounds those probes, so a storm of
suspicions cannot starve the loop further). A refused connection (a crashed process: nothing
listens) is no timeout and counts at once.

No I/O, no clock: every method takes `now`.
"""
from __future__ import annotations

from collections import deque

LAG_TOLERANCE_S = 0.1  # a timer this late means the loop, not the peer, is slow
LAG_WINDOW_S = 5.0  # how long observed lateness is remembered
MAX_LAG_SAMPLES = 64


class LoopLag:
    """Lateness of this process's event loop: how long after its due time a timer ran."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_LAG_SAMPLES)

    def observe(self, due: float, ran: float) -> float:
        """A timer due at `due` ran at `ran`; its lateness (never negative), remembered."""
        late = max(0.0, ran - due)
        if late > 0.0:
            self._samples.append((ran, late))
        return late

    def worst(self, since: float, now: float) -> float:
        """The largest lateness seen at or after `since` (and within `LAG_WINDOW_S` of `now`)."""
        start = max(since, now - LAG_WINDOW_S)
        return max((late for at, late in self._samples if at >= start), default=0.0)


def blame(timed_out: bool, elapsed_s: float, timeout_s: float, lag_s: float,
          tolerance_s: float = LAG_TOLERANCE_S) -> bool:
    """Whether a failed probe counts against the peer. Only a timeout can be our own fault: it
    does not count when its timer ran more than `tolerance_s` late (`elapsed_s - timeout_s`) or
    the loop was seen that late while the probe was out (`lag_s`)."""
    if not timed_out:
        return True
    return max(elapsed_s - timeout_s, lag_s) <= tolerance_s


class ProbeBudget:
    """Probes set off by other members' suspicions: at most one per peer per `gap_s`, and at
    most `burst` at once, refilled at `rate` per second (a token bucket)."""

    def __init__(self, gap_s: float, rate: float, burst: int, max_peers: int = 256) -> None:
        if gap_s <= 0 or rate <= 0 or burst < 1:
            raise ValueError("ProbeBudget: need gap_s > 0, rate > 0, burst >= 1")
        self.gap_s, self.rate, self.burst = gap_s, rate, burst
        self._tokens = float(burst)
        self._at: float | None = None
        self._last: dict[str, float] = {}
        self._max_peers = max_peers

    def allow(self, node_id: str, now: float) -> bool:
        """True (and spent) when a probe of `node_id` may start now."""
        if self._at is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        last = self._last.get(node_id)
        if (last is not None and now - last < self.gap_s) or self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        if len(self._last) >= self._max_peers and node_id not in self._last:
            self._last = {k: t for k, t in self._last.items() if now - t < self.gap_s}
        self._last[node_id] = now
        return True
