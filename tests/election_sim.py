"""A deterministic simulated LAN for the election core: seeded loss and delay, partitions, crashes,
restarts, and heartbeat-style views that see a change only after a detection delay.

Views: a peer appears `detect_up` after it becomes reachable, disappears `detect_crash` after it
crashes (refused probes) or `detect_cut` after a partition cuts it off (connect timeouts), and is
SUSPECT for part of that time. Its advertised term and coordinator reach each observer within one
heartbeat interval (two when that heartbeat is lost). Restarts keep the node id and reset its state;
`Fault.remember` says whether the term and vote were persisted (both variants are tested).

A sleep is a Mac closing its lid: the node runs nothing and nobody reaches it for `duration`, and
its monotonic clock (the one the core is given) stands still meanwhile, so each node keeps its own
clock (`local`). On waking its view is the stale one it fell asleep with until fresh heartbeats
arrive, and, as the driver does on seeing the wall clock leap ahead (network/coordination/wake.py),
it first re-enters the start-up grace (`rest`).
"""
from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from network.coordination.election import (
    Candidate,
    Decision,
    ElectionState,
    ElectionTimings,
    PeerView,
    Role,
    Send,
    boot,
    receive,
    rest,
    step,
)


@dataclass(frozen=True)
class SimConfig:
    """Network behaviour; times in seconds, defaults mirror membership's `Timings`."""

    loss: float = 0.0  # chance that one election message, or one heartbeat, is lost
    latency: tuple[float, float] = (0.001, 0.03)
    heartbeat_s: float = 0.5
    detect_up: tuple[float, float] = (0.05, 0.5)
    detect_crash: tuple[float, float] = (0.5, 1.0)
    detect_cut: tuple[float, float] = (1.0, 1.5)
    timings: ElectionTimings = ElectionTimings()


@dataclass(frozen=True)
class Fault:
    """One scheduled change: crash, restart or put to sleep `node`, or set partition `groups`."""

    at: float
    kind: str  # "crash" | "restart" | "partition" | "sleep"
    node: int = 0
    groups: tuple[int, ...] = ()  # partition: one group per node
    remember: bool = True  # restart: keep the persisted term and vote
    duration: float = 0.0  # sleep: how long


@dataclass
class Sim:
    """N nodes on a fake clock; every decision is checked: terms never go back on a node."""

    candidates: tuple[Candidate, ...]
    seed: int
    config: SimConfig = SimConfig()
    down_at_start: frozenset[int] = frozenset()
    on_event: Callable[[Sim], None] | None = None  # called after every event (for checkers)
    now: float = field(init=False, default=0.0)
    states: list[ElectionState | None] = field(init=False)  # None while down
    views: list[dict[int, PeerView]] = field(init=False)  # what each node's membership shows
    groups: list[int] = field(init=False)  # partition group per node
    term_floor: list[int] = field(init=False)  # lowest term each node may still hold
    boots: list[int] = field(init=False)
    lag: list[float] = field(init=False)  # how far each node's monotonic clock is behind (sleeps)
    asleep: list[bool] = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.candidates)
        self.rng = random.Random(self.seed)
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._ids = {c.node_id: k for k, c in enumerate(self.candidates)}
        self._link = [[0] * n for _ in range(n)]  # bumped on every reachability change of a pair
        self._refreshing: set[tuple[int, int]] = set()
        self._wake: list[float | None] = [None] * n
        self.states = [None] * n
        self.views = [{} for _ in range(n)]
        self.groups = [0] * n
        self.term_floor = [0] * n
        self.boots = [0] * n
        self.lag = [0.0] * n
        self.asleep = [False] * n
        self._disk: list[tuple[int, int, str | None]] = [(0, 0, None)] * n  # persisted term and vote
        for i in range(n):
            if i not in self.down_at_start:
                self._start(i, remember=True)
        self._relink([[False] * n for _ in range(n)], "partition", None)
        for i in range(n):
            self._step(i)

    # -- topology ---------------------------------------------------------------------------
    def up(self, i: int) -> bool:
        """True while node i runs (asleep or not)."""
        return self.states[i] is not None

    def awake(self, i: int) -> bool:
        """True while node i runs and is not asleep."""
        return self.up(i) and not self.asleep[i]

    def local(self, i: int) -> float:
        """Node i's monotonic clock now."""
        return self.now - self.lag[i]

    def reachable(self, a: int, b: int) -> bool:
        """True when a and b are awake and share a partition group."""
        return a != b and self.awake(a) and self.awake(b) and self.groups[a] == self.groups[b]

    def components(self) -> list[list[int]]:
        """Awake nodes grouped by partition (the real connected components)."""
        by: dict[int, list[int]] = {}
        for i in range(len(self.candidates)):
            if self.awake(i):
                by.setdefault(self.groups[i], []).append(i)
        return list(by.values())

    def _relink(self, before: list[list[bool]], cause: str, rebooted: int | None) -> None:
        n = len(self.candidates)
        for a in range(n):
            for b in range(n):
                now_ok = self.reachable(a, b)
                if a == b or (before[a][b] == now_ok and rebooted not in (a, b)):
                    continue
                self._link[a][b] += 1
                version = self._link[a][b]
                if now_ok:
                    self._at(self._delay(self.config.detect_up), self._see, a, b, version)
                elif self.awake(a):
                    span = self.config.detect_crash if cause == "crash" else self.config.detect_cut
                    gone = self._delay(span)
                    self._at(self.rng.uniform(self.now, gone), self._suspect, a, b, version)
                    self._at(gone, self._drop, a, b, version)

    def _matrix(self) -> list[list[bool]]:
        n = len(self.candidates)
        return [[self.reachable(a, b) for b in range(n)] for a in range(n)]

    # -- faults -----------------------------------------------------------------------------
    def apply(self, fault: Fault) -> None:
        """Apply one fault now."""
        before = self._matrix()
        if fault.kind == "partition":
            self.groups = list(fault.groups)
        elif fault.kind == "crash" and self.up(fault.node):
            self.states[fault.node] = None
            self.views[fault.node] = {}
            self.asleep[fault.node] = False
        elif fault.kind == "restart":
            self.states[fault.node] = None
            self.asleep[fault.node] = False
            self._start(fault.node, fault.remember)
        elif fault.kind == "sleep" and self.awake(fault.node):
            self.asleep[fault.node] = True
            self._at(self.now + fault.duration, self._wake_up, fault.node, self.boots[fault.node],
                     self.now)
        self._relink(before, fault.kind, fault.node if fault.kind == "restart" else None)
        if fault.kind == "restart":
            self._run(fault.node, step(self.states[fault.node], (), self.local(fault.node),  # type: ignore[arg-type]
                                       self.config.timings))

    def _wake_up(self, i: int, boot_no: int, since: float) -> None:
        """The lid opens: the monotonic clock missed the sleep; the view is the stale one."""
        if self.boots[i] != boot_no or not self.asleep[i] or self.states[i] is None:
            return
        before = self._matrix()
        self.asleep[i] = False
        self.lag[i] += self.now - since
        self.states[i] = rest(self.states[i], self.local(i))  # type: ignore[arg-type]
        self._wake[i] = None
        self._relink(before, "sleep", None)
        for b in [b for b in self.views[i] if not self.reachable(i, b)]:  # gone while it slept
            self._link[i][b] += 1
            self._at(self._delay(self.config.detect_cut), self._drop, i, b, self._link[i][b])
        self._step(i)

    def _start(self, i: int, remember: bool) -> None:
        self.boots[i] += 1
        self.views[i] = {}
        self._wake[i] = None
        if not remember:
            self.term_floor[i] = 0
            self._disk[i] = (0, 0, None)
        self.states[i] = boot(self.candidates[i], self.local(i), *self._disk[i])

    # -- events -----------------------------------------------------------------------------
    def _delay(self, span: tuple[float, float]) -> float:
        return self.now + self.rng.uniform(*span)

    def _at(self, when: float, fn: Callable[..., None], *args: object) -> None:
        heapq.heappush(self._queue, (when, next(self._seq), lambda: fn(*args)))

    def _entry(self, b: int, suspect_since: float | None = None) -> PeerView:
        s = self.states[b]
        assert s is not None
        return PeerView(self.candidates[b], s.term, s.coordinator, suspect_since, s.solo)

    def _see(self, a: int, b: int, version: int) -> None:
        if self._link[a][b] == version and self.reachable(a, b):
            self.views[a][b] = self._entry(b)
            self._step(a)

    def _suspect(self, a: int, b: int, version: int) -> None:
        old = self.views[a].get(b)
        if (self._link[a][b] == version and self.awake(a) and old is not None
                and old.suspect_since is None):
            self.views[a][b] = replace(old, suspect_since=self.local(a))
            self._step(a)

    def _drop(self, a: int, b: int, version: int) -> None:
        if self._link[a][b] == version and self.awake(a) and self.views[a].pop(b, None) is not None:
            self._step(a)

    def _refresh(self, a: int, b: int) -> None:
        self._refreshing.discard((a, b))
        old = self.views[a].get(b)
        if old is None or not self.reachable(a, b) or old.suspect_since is not None:
            return
        new = self._entry(b)
        if new != old:
            self.views[a][b] = new
            self._step(a)

    def _deliver(self, to: int, boot_no: int, sender: int, send: Send) -> None:
        if self.boots[to] == boot_no and self.reachable(sender, to):
            s = self.states[to]
            assert s is not None
            self._run(to, receive(s, tuple(self.views[to].values()), send.message, self.local(to),
                                  self.config.timings))

    def _timer(self, i: int, boot_no: int, when: float) -> None:
        if self.boots[i] == boot_no and self._wake[i] == when and self.awake(i):
            self._wake[i] = None
            self._step(i, when)  # `when` itself: now - lag may round to just before it

    def _step(self, i: int, at_least: float = -math.inf) -> None:
        s = self.states[i]
        if s is not None and self.awake(i):
            now = max(self.local(i), at_least)
            self._run(i, step(s, tuple(self.views[i].values()), now, self.config.timings))

    def _run(self, i: int, d: Decision) -> None:
        old, new = self.states[i], d.state
        assert old is not None
        assert new.term >= old.term >= self.term_floor[i], f"node {i}: term went back"
        self.term_floor[i] = new.term
        self.states[i] = new
        self._disk[i] = (new.term, new.voted_term, new.voted_for)
        if (old.term, old.coordinator) != (new.term, new.coordinator):
            self._advertise(i)
        for send in d.sends:
            targets = [self._ids[send.to]] if send.to is not None else list(self.views[i])
            for j in targets:
                if self.rng.random() >= self.config.loss:
                    self._at(self._delay(self.config.latency), self._deliver, j, self.boots[j], i, send)
        if d.wake_at is not None and d.wake_at != self._wake[i]:
            self._wake[i] = d.wake_at
            self._at(d.wake_at + self.lag[i], self._timer, i, self.boots[i], d.wake_at)

    def _advertise(self, b: int) -> None:
        """Observers see b's new term and coordinator at their next answered heartbeat."""
        hb = self.config.heartbeat_s
        for a in range(len(self.candidates)):
            if b in self.views[a] and (a, b) not in self._refreshing:
                lost = hb if self.rng.random() < self.config.loss else 0.0
                self._refreshing.add((a, b))
                self._at(self.now + self.rng.uniform(0, hb) + lost, self._refresh, a, b)

    def run(self, faults: list[Fault], until: float) -> None:
        """Replay `faults` (sorted by time) and process events up to `until`."""
        for f in faults:
            self._at(f.at, self.apply, f)
        while self._queue and self._queue[0][0] <= until:
            self.now, _, event = heapq.heappop(self._queue)
            event()
            if self.on_event is not None:
                self.on_event(self)
        self.now = until

    # -- observations -----------------------------------------------------------------------
    def coordinators(self, component: list[int]) -> list[int]:
        """Nodes of `component` that hold the role."""
        return [i for i in component if self.states[i].role is Role.COORDINATOR]  # type: ignore[union-attr]

    def settled(self) -> bool:
        """Every component with an eligible node has one coordinator that all its nodes follow,
        and leads by vote (not `solo`) unless it is alone."""
        for comp in self.components():
            leads = self.coordinators(comp)
            if not any(self.candidates[i].eligible for i in comp):
                if leads:
                    return False
                continue
            if len(leads) != 1 or (len(comp) > 1 and self.states[leads[0]].solo):  # type: ignore[union-attr]
                return False
            lead = self.candidates[leads[0]].node_id
            if any(self.states[i].coordinator != lead for i in comp):  # type: ignore[union-attr]
                return False
        return True
