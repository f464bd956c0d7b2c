"""Stop strings and incremental detokenisation behave the same however the text is split."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.engine.decoding import IncrementalDetokenizer, StopMatcher


def run(stops, pieces):
    matcher = StopMatcher(stops)
    out = "".join(matcher.feed(p) for p in pieces)
    return out + matcher.flush(), matcher.stopped


def reference(stops, text):
    """Stream one character at a time: cut where the first stop completes (longest on a tie)."""
    for end in range(1, len(text) + 1):
        done = [s for s in stops if s and text[:end].endswith(s)]
        if done:
            return text[:end - max(map(len, done))], True
    return text, False


@given(st.lists(st.text(alphabet="ab\n", max_size=3), max_size=4),
       st.lists(st.text(alphabet="ab\n", max_size=5), max_size=12))
def test_stop_matcher_equals_cutting_the_whole_text(stops, pieces):
    assert run(stops, pieces) == reference(stops, "".join(pieces))


def test_stop_matcher_holds_back_a_possible_prefix():
    matcher = StopMatcher(["END"])
    assert matcher.feed("hello E") == "hello "
    assert matcher.feed("N") == ""
    assert matcher.feed("X") == "ENX"
    assert matcher.feed("xEND tail") == "x" and matcher.stopped


@given(st.text(max_size=40))
def test_detokenizer_reassembles_utf8_split_across_tokens(text):
    data = text.encode()
    tokens = list(data)  # one byte per token: the worst case for multi-byte characters
    detok = IncrementalDetokenizer(lambda ids: bytes(ids).decode("utf-8", errors="replace"))
    assert "".join(detok.push(t) for t in tokens) + detok.flush() == text


@pytest.mark.parametrize("text", ["\ufffd", "ok \ufffd", "\ufffd\ufffd", "a\ufffdb"])
def test_detokenizer_keeps_a_real_replacement_character(text):
    """U+FFFD the model really wrote (EF BF BD) is held like an unfinished character, then given
    by the next token or by flush at the end: never dropped."""
    detok = IncrementalDetokenizer(lambda ids: bytes(ids).decode("utf-8", errors="replace"))
    deltas = [detok.push(t) for t in text.encode()]
    assert "".join(deltas) + detok.flush() == text
    assert detok.flush() == detok.flush()  # flush only reads


def test_detokenizer_flush_gives_the_undecodable_tail():
    """A stream cut inside a character (max_tokens) ends with U+FFFD, as decoding it whole does."""
    detok = IncrementalDetokenizer(lambda ids: bytes(ids).decode("utf-8", errors="replace"))
    data = "né".encode()[:-1]
    assert "".join(detok.push(t) for t in data) + detok.flush() == data.decode(errors="replace")
