"""Re-announce on mDNS when the interfaces behind the advertised address change, and follow the
machine to its new address when it gets one.

zeroconf never notices a Wi-Fi drop or a re-plugged cable: its sockets stay as they were and peers
do not re-find the node until it announces again. `InterfaceWatcher` polls the machine's interfaces
(psutil), reduces them to a `Snapshot` of the advertised addresses, and calls its callback once per
change (`changed` decides, purely). The address leaving and coming back are two changes, so the
callback runs again after it returns: that second call is the one peers need.

A Mac that wakes on another network, or gets a new DHCP lease, has a new LAN address: with
`on_moved`, the watcher also locates the address the node should use now (`lan.lan_address`) and,
once the same new address is seen on `confirm_reads` reads in a row (longer for a link-local one,
which macOS assigns while DHCP is still pending), awaits `on_moved(address)`, which rebinds and
re-announces there (`follow` decides, purely).
"""
from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import psutil

from network.discovery.lan import IfAddrs, IfStats, default_route_source, lan_address, lan_rank
from network.tasks import stop_tasks

log = logging.getLogger(__name__)

Reader = Callable[[], tuple[IfAddrs, IfStats]]
Locator = Callable[[IfAddrs, IfStats], str | None]
CONFIRM_READS = 2  # reads in a row that must show the same new address before moving there
LINK_LOCAL_CONFIRM_READS = 10  # 20 s: a self-assigned 169.254 address while DHCP is pending


@dataclass(frozen=True, order=True)
class Entry:
    """One advertised IPv4 address on one interface, and whether that interface is up."""

    interface: str
    address: str
    up: bool


Snapshot = frozenset[Entry]


def snapshot(addrs: IfAddrs, stats: IfStats, watched_addresses: Iterable[str]) -> Snapshot:
    """The entries of `addrs` (psutil-shaped) whose IPv4 address is one of `watched_addresses`.

    `up` is the interface's `isup` (psutil: carrier present); an interface without stats counts as
    up, as in `network.discovery.lan.private_ipv4_addresses`. Other families and addresses are ignored.
    """
    watched = frozenset(watched_addresses)
    found: set[Entry] = set()
    for interface, entries in addrs.items():
        stat = stats.get(interface)
        up = True if stat is None else bool(stat.isup)
        for entry in entries:
            if entry.family == socket.AF_INET and entry.address in watched:
                found.add(Entry(interface, entry.address, up))
    return frozenset(found)


def changed(previous: Snapshot, current: Snapshot) -> str | None:
    """None when nothing relevant changed, else what did, e.g. "wlan0 went down (192.168.1.5)"."""
    if previous == current:
        return None
    before = {(e.interface, e.address): e.up for e in previous}
    after = {(e.interface, e.address): e.up for e in current}
    reasons: list[str] = []
    for key in sorted(before.keys() | after.keys()):
        interface, address = key
        if key not in after:
            reasons.append(f"{address} left {interface}")
        elif key not in before:
            state = "" if after[key] else ", down"
            reasons.append(f"{address} appeared on {interface}{state}")
        elif before[key] != after[key]:
            reasons.append(f"{interface} {'came up' if after[key] else 'went down'} ({address})")
    return "; ".join(reasons)


def read_psutil() -> tuple[IfAddrs, IfStats]:
    """This machine's interfaces, as psutil reports them (raises OSError when it cannot)."""
    return psutil.net_if_addrs(), psutil.net_if_stats()


def locate(addrs: IfAddrs, stats: IfStats) -> str | None:
    """The LAN address this machine should use now (its default route's, see `lan.lan_address`)."""
    return lan_address(addrs, stats, default_route_source())


@dataclass(frozen=True)
class Follow:
    """Where the node is bound, and a new address seen `seen` reads in a row (not moved to yet)."""

    bound: str
    candidate: str | None = None
    seen: int = 0


def follow(state: Follow, located: str | None, confirm_reads: int = CONFIRM_READS) -> tuple[
        Follow, str | None]:
    """The next state, and the address to move to now (None: stay where it is bound).

    Nothing moves while no address is found (asleep, Wi-Fi off) or the bound one is found; a new
    address must be seen on `confirm_reads` reads in a row (a link-local one on
    `LINK_LOCAL_CONFIRM_READS`). The state keeps `bound` until the move succeeds (`Follow(new)`),
    so a move that failed is tried again at the next read.
    """
    if located is None or located == state.bound:
        return Follow(state.bound), None
    seen = state.seen + 1 if located == state.candidate else 1
    needed = confirm_reads if lan_rank(located) == 0 else max(confirm_reads,
                                                               LINK_LOCAL_CONFIRM_READS)
    nxt = Follow(state.bound, located, seen)
    return nxt, (located if seen >= needed else None)


class InterfaceWatcher:
    """Every `interval_s`, read the interfaces; on a change of `watched_addresses`' snapshot, await
    `on_change(reason)` once and log it. A failing callback is logged once (then at DEBUG) and retried
    at the next read, so a refresh that failed still happens after the address is back.

    With `on_moved`, it also follows the machine to a new LAN address (module doc): the first
    watched address is the bound one; after a move, the new address is the one watched.
    `read`, `locate` and `wait` are injected for tests (defaults: psutil, the default route's
    address and `asyncio.sleep`).
    """

    def __init__(self, watched_addresses: Iterable[str],
                 on_change: Callable[[str], Awaitable[None]], *, interval_s: float = 2.0,
                 on_moved: Callable[[str], Awaitable[None]] | None = None,
                 read: Reader = read_psutil, locate: Locator = locate,
                 wait: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.watched = tuple(watched_addresses)
        if on_moved is not None and not self.watched:
            raise ValueError("following the LAN address needs the bound address to start from")
        self.interval_s = interval_s
        self._on_change = on_change
        self._on_moved = on_moved
        self._follow = Follow(self.watched[0]) if self.watched else None
        self._locate = locate
        self._read = read
        self._wait = wait
        self._last: Snapshot | None = None
        self._failing = False
        self._read_failing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def last(self) -> Snapshot | None:
        """The snapshot the next read is compared with (None before the first read)."""
        return self._last

    async def start(self) -> None:
        """Read the interfaces now (the baseline), then watch them in a task this object owns."""
        if self._task is not None:
            raise RuntimeError("InterfaceWatcher already started")
        self._last = self._current()
        self._task = asyncio.create_task(self._run(), name="interface-watch")

    async def close(self) -> None:
        """Stop watching; a callback in progress is cancelled."""
        task, self._task = self._task, None
        await stop_tasks(task)

    async def check(self) -> str | None:
        """One read: when the address moved, run `on_moved`; else when the snapshot changed, run
        the callback; returns the reason (or None)."""
        read = self._read_safely()
        if read is None:
            return None
        if self._on_moved is not None and (moved := await self._moved(*read)):
            return moved
        current = snapshot(*read, self.watched)
        if self._last is None:
            self._last = current
            return None
        reason = changed(self._last, current)
        if reason is None:
            return None
        try:
            await self._on_change(reason)
        except Exception as exc:  # the callback is someone else's: log it, keep watching
            if not self._failing:
                self._failing = True
                log.warning("network interfaces changed (%s) but re-announcing on mDNS failed: "
                            "%s (retrying every %.1f s)", reason, exc, self.interval_s,
                            exc_info=not isinstance(exc, OSError | RuntimeError))
            else:
                log.debug("re-announcing on mDNS failed again: %s", exc)
            return reason  # _last stays: the next read retries
        self._failing = False
        self._last = current
        log.info("network interfaces changed (%s); re-announcing on mDNS", reason)
        return reason

    async def _run(self) -> None:
        while True:
            await self._wait(self.interval_s)
            await self.check()

    async def _moved(self, addrs: IfAddrs, stats: IfStats) -> str | None:
        """Follow the machine to a new LAN address (module doc); the reason when it moved."""
        assert self._follow is not None and self._on_moved is not None
        old = self._follow.bound
        self._follow, target = follow(self._follow, self._locate(addrs, stats))
        if target is None:
            return None
        reason = f"this machine's LAN address moved from {old} to {target}"
        try:
            await self._on_moved(target)
        except Exception as exc:  # the callback is someone else's: log it, retry next read
            if not self._failing:
                self._failing = True
                log.warning("%s but listening and announcing there failed: %s (retrying every "
                            "%.1f s)", reason, exc, self.interval_s,
                            exc_info=not isinstance(exc, OSError | RuntimeError))
            else:
                log.debug("moving to %s failed again: %s", target, exc)
            return reason
        self._failing = False
        self._follow = Follow(target)
        self.watched = (target,)
        self._last = snapshot(addrs, stats, self.watched)
        log.info("%s; listening and announcing there now", reason)
        return reason

    def _read_safely(self) -> tuple[IfAddrs, IfStats] | None:
        try:
            read = self._read()
        except (OSError, RuntimeError) as exc:  # psutil on macOS can raise ENXIO around sleep
            if not self._read_failing:
                self._read_failing = True
                log.warning("cannot read the network interfaces: %s", exc)
            return None
        self._read_failing = False
        return read

    def _current(self) -> Snapshot | None:
        read = self._read_safely()
        return None if read is None else snapshot(*read, self.watched)
