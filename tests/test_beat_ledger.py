"""The beat ledger (network/membership/ledger.py): which pushed heartbeats a node takes."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.membership.ledger import BeatLedger

SKEW = 30.0


def ledger(max_senders: int = 256) -> BeatLedger:
    return BeatLedger(SKEW, max_senders)


def take(book: BeatLedger, seq: int, *, sender: str = "n1", boot: str = "b1",
         expected: str | None = "b1", now: float = 0.0, sent_at: float = 1000.0,
         wall_now: float = 1000.0) -> str | None:
    return book.admit(sender, boot, seq, sent_at, expected_boot=expected, now=now,
                      wall_now=wall_now)


@settings(deadline=None)  # timing-free: a loaded CI machine must not fail it
@given(seqs=st.lists(st.integers(1, 50), max_size=60))
def test_a_beat_is_taken_only_above_every_seq_taken_before(seqs: list[int]) -> None:
    book = ledger()
    best = 0
    for seq in seqs:
        taken = take(book, seq) is None
        assert taken == (seq > best)
        best = max(best, seq)


@settings(deadline=None)  # timing-free: a loaded CI machine must not fail it
@given(seqs=st.lists(st.integers(1, 20), min_size=1, max_size=30), boots=st.lists(
    st.sampled_from(["b1", "b2"]), min_size=1, max_size=30))
def test_only_the_boot_the_table_holds_is_taken(seqs: list[int], boots: list[str]) -> None:
    book = ledger()
    for seq, boot in zip(seqs, boots, strict=False):
        why = take(book, seq, boot=boot, expected="b2")
        if boot != "b2":
            assert why is not None and "boot" in why


def test_a_new_boot_starts_its_own_count() -> None:
    book = ledger()
    assert take(book, 40) is None
    assert take(book, 1, boot="b2", expected="b2") is None
    assert take(book, 1, boot="b2", expected="b2") is not None


def test_a_peer_not_met_over_http_is_not_taken() -> None:
    assert "not met" in (take(ledger(), 1, expected=None) or "")


@settings(deadline=None)  # timing-free: a loaded CI machine must not fail it
@given(offset=st.floats(-120.0, 120.0))
def test_beats_sent_far_from_our_clock_are_refused(offset: float) -> None:
    why = take(ledger(), 1, sent_at=1000.0 + offset)
    assert (why is None) == (abs(offset) <= SKEW)


@settings(deadline=None)  # timing-free: a loaded CI machine must not fail it
@given(gaps=st.lists(st.floats(0.0, 2.0), max_size=20), quiet=st.floats(0.1, 1.5))
def test_fresh_means_taken_less_than_quiet_s_ago(gaps: list[float], quiet: float) -> None:
    book = ledger()
    now, seq, last = 0.0, 0, None
    for gap in gaps:
        now += gap
        assert book.fresh("n1", now, quiet) == (last is not None and now - last < quiet)
        seq += 1
        assert take(book, seq, now=now) is None
        last = now
    book.forget("n1")
    assert not book.fresh("n1", now, quiet)


@settings(deadline=None)  # timing-free: a loaded CI machine must not fail it
@given(senders=st.lists(st.sampled_from([f"n{i}" for i in range(12)]), max_size=80))
def test_the_ledger_stays_bounded(senders: list[str]) -> None:
    book = ledger(max_senders=5)
    for i, sender in enumerate(senders):
        take(book, i + 1, sender=sender, now=float(i))
        assert len(book) <= 5


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        BeatLedger(0.0, 4)
