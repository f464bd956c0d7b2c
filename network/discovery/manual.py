"""Manual peers: addresses from flags or config plus a peers file, re-read when it changes."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from network.discovery.events import AddressAdded, AddressRemoved, DiscoveryEvent
from network.tasks import stop_tasks
from network.wire.address import Address, parse_address

log = logging.getLogger(__name__)


class StaticPeers:
    """Manual peers: `peers` entries plus a peers file re-read when it changes (polled)."""

    def __init__(self, peers: Iterable[str], peers_file: str | Path | None,
                 on_event: Callable[[DiscoveryEvent], None], *, poll_s: float = 1.0) -> None:
        self._fixed = frozenset(parse_address(entry) for entry in peers)
        self._path = Path(peers_file).expanduser() if peers_file else None
        self._on_event = on_event
        self._poll_s = poll_s
        self._from_file: frozenset[Address] = frozenset()
        self._current: frozenset[Address] = frozenset()
        self._stamp: tuple[int, int, int] | None = None
        self._warned: set[tuple[int, str]] = set()
        self._missing_warned = False
        self._task: asyncio.Task[None] | None = None

    def addresses(self) -> tuple[Address, ...]:
        """The addresses currently listed, sorted."""
        return tuple(sorted(self._current))

    async def start(self) -> None:
        """Emit the listed addresses now, then watch the peers file (if any)."""
        if self._task is not None:
            raise RuntimeError("StaticPeers already started")
        self.reload()
        if self._path is not None:
            self._task = asyncio.create_task(self._watch(), name="peers-file")

    async def close(self) -> None:
        """Stop watching the peers file."""
        task, self._task = self._task, None
        await stop_tasks(task)

    def reload(self) -> None:
        """Re-read the peers file if its mtime, size or inode changed; emit what changed."""
        if self._path is not None:
            self._read_if_changed(self._path)
        wanted = self._fixed | self._from_file
        gone, new = sorted(self._current - wanted), sorted(wanted - self._current)
        self._current = wanted
        for address in gone:
            self._emit(AddressRemoved(address))
        for address in new:
            self._emit(AddressAdded(address))

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            self.reload()

    def _read_if_changed(self, path: Path) -> None:
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            if stamp == self._stamp:
                return
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            if not self._missing_warned:
                log.warning("peers file %s does not exist (yet); watching for it", path)
                self._missing_warned = True
            self._stamp, self._from_file = None, frozenset()
            return
        except OSError as exc:
            log.warning("cannot read peers file %s: %s (keeping its last contents)", path, exc)
            return
        self._stamp, self._missing_warned = stamp, False
        found: set[Address] = set()
        for number, line in enumerate(text.splitlines(), start=1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            try:
                found.add(parse_address(entry))
            except ValueError as exc:
                if (number, entry) not in self._warned:
                    self._warned.add((number, entry))
                    log.warning("peers file %s line %d: %s (skipped)", path, number, exc)
        self._from_file = frozenset(found)

    def _emit(self, event: DiscoveryEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("discovery event handler failed on %s", event)
