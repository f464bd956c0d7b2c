"""The pushed heartbeats a node has taken: the pure check behind the beacon.

Per sender it keeps the boot and the highest `seq` taken and when the last beat was taken. A beat
is taken only for a peer the table already met over HTTP (a nonce-fresh answer), only for the
boot the table holds for it (a new boot is learned through mDNS or a probe, never from a beat),
only above the last `seq` of that boot (no replays), and only when sent within `max_skew_s` of
our wall clock (no stale copies after a restart of ours). Pure: `now` and `wall_now` are given.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BeatLedger", "Taken"]


@dataclass(frozen=True)
class Taken:
    """The last beat taken from one sender."""

    boot_id: str
    seq: int
    at: float  # our monotonic time when it was taken


class BeatLedger:
    """The last beat taken per sender, for at most `max_senders` senders."""

    def __init__(self, max_skew_s: float, max_senders: int) -> None:
        if max_skew_s <= 0 or max_senders < 1:
            raise ValueError("BeatLedger: need max_skew_s > 0 and max_senders >= 1")
        self.max_skew_s = max_skew_s
        self.max_senders = max_senders
        self._taken: dict[str, Taken] = {}

    def __len__(self) -> int:
        return len(self._taken)

    def admit(self, sender: str, boot_id: str, seq: int, sent_at: float, *,
              expected_boot: str | None, now: float, wall_now: float) -> str | None:
        """Take one beat (None), or say why not. `expected_boot` is the boot the peer table
        holds for `sender` once it has answered a probe (None: not met yet, or foreign)."""
        if expected_boot is None:
            return "not met over HTTP yet"
        if boot_id != expected_boot:
            return f"boot {boot_id} is not the one known ({expected_boot})"
        if abs(sent_at - wall_now) > self.max_skew_s:
            return f"sent {sent_at - wall_now:+.0f} s off our clock"
        last = self._taken.get(sender)
        if last is not None and last.boot_id == boot_id and seq <= last.seq:
            return f"seq {seq} not above {last.seq} (a replay or a late copy)"
        if last is None and len(self._taken) >= self.max_senders:
            del self._taken[min(self._taken, key=lambda s: (self._taken[s].at, s))]
        self._taken[sender] = Taken(boot_id, seq, now)
        return None

    def fresh(self, sender: str, now: float, quiet_s: float) -> bool:
        """True when a beat of `sender` was taken less than `quiet_s` ago."""
        last = self._taken.get(sender)
        return last is not None and now - last.at < quiet_s

    def forget(self, sender: str) -> None:
        """Drop what is known of `sender` (it left)."""
        self._taken.pop(sender, None)
