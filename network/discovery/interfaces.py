"""Re-announce on mDNS when the interfaces behind the advertised addresses change.

zeroconf never notices a Wi-Fi drop or a re-plugged cable: its sockets stay as they were and peers
do not re-find the node until it announces again. `InterfaceWatcher` polls the machine's interfaces
(psutil), reduces them to a `Snapshot` of the advertised addresses, and calls its callback once per
change (`changed` decides, purely). The address leaving and coming back are two changes, so the
callback runs again after it returns: that second call is the one peers need.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

log = logging.getLogger(__name__)

IfAddrs = Mapping[str, Iterable[Any]]  # psutil.net_if_addrs(): name -> [snicaddr]
IfStats = Mapping[str, Any]  # psutil.net_if_stats(): name -> snicstats (has .isup)
Reader = Callable[[], tuple[IfAddrs, IfStats]]


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
    """This machine's interfaces, as psutil reports them."""
    return psutil.net_if_addrs(), psutil.net_if_stats()


class InterfaceWatcher:
    """Every `interval_s`, read the interfaces; on a change of `watched_addresses`' snapshot, await
    `on_change(reason)` once and log it. A failing callback is logged once (then at DEBUG) and retried
    at the next read, so a refresh that failed still happens after the address is back.

    `read` and `wait` are injected for tests (defaults: psutil and `asyncio.sleep`).
    """

    def __init__(self, watched_addresses: Iterable[str],
                 on_change: Callable[[str], Awaitable[None]], *, interval_s: float = 2.0,
                 read: Reader = read_psutil,
                 wait: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.watched = tuple(watched_addresses)
        self.interval_s = interval_s
        self._on_change = on_change
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
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def check(self) -> str | None:
        """One read: when the snapshot changed, run the callback; returns the reason (or None)."""
        current = self._current()
        if current is None:
            return None
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

    def _current(self) -> Snapshot | None:
        try:
            addrs, stats = self._read()
        except OSError as exc:
            if not self._read_failing:
                self._read_failing = True
                log.warning("cannot read the network interfaces: %s", exc)
            return None
        self._read_failing = False
        return snapshot(addrs, stats, self.watched)
