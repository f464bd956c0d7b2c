"""A download's partial files: pieces written in any order, from any split of their bytes, give
the file and its whole sha256 without a second read; a wrong piece is refused unwritten; a file
with a piece missing or a wrong whole hash never passes `finish`; a resume keeps what checks out."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swarm.models.manifest import FileEntry, Manifest, hash_file
from swarm.models.partial import PartialModel
from swarm.models.store import ModelError

STEP = 1 << 16  # the smallest piece a manifest allows
DATA = os.urandom(5 * STEP + 333)  # six pieces, the last one short


def model(tmp_path: Path) -> Manifest:
    source = tmp_path / "source.gguf"
    source.write_bytes(DATA)
    return Manifest("m", "gguf", (hash_file(source, "m.gguf", STEP),), STEP)


def piece_bytes(pi: int) -> bytes:
    return DATA[pi * STEP:(pi + 1) * STEP]


def split(data: bytes, cuts: list[int]) -> list[bytes | memoryview]:
    """`data` cut at `cuts`, as a reply's chunks come (some as memoryviews)."""
    marks = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    parts = [data[a:b] for a, b in zip(marks, marks[1:], strict=False)]
    return [memoryview(p) if i % 2 else p for i, p in enumerate(parts)]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(6)), cuts=st.lists(st.integers(0, STEP), max_size=4))
def test_pieces_in_any_order_and_any_split_make_the_file_and_its_hash(tmp_path_factory, order,
                                                                      cuts):
    tmp = tmp_path_factory.mktemp("p")
    manifest = model(tmp)
    files = PartialModel(manifest, tmp / "partial")
    assert files.prepare(set()) == set()
    for pi in order:
        assert files.write((0, pi), split(piece_bytes(pi), cuts))
    files.finish()
    assert (tmp / "partial" / "m.gguf").read_bytes() == DATA


def test_a_wrong_piece_is_refused_and_not_written(tmp_path):
    manifest = model(tmp_path)
    files = PartialModel(manifest, tmp_path / "partial")
    files.prepare(set())
    assert not files.write((0, 1), [piece_bytes(2)])
    assert (tmp_path / "partial" / "m.gguf").read_bytes()[STEP:2 * STEP] == bytes(STEP)


def test_a_missing_piece_never_passes_finish(tmp_path):
    manifest = model(tmp_path)
    files = PartialModel(manifest, tmp_path / "partial")
    files.prepare(set())
    for pi in (0, 1, 2, 4, 5):
        assert files.write((0, pi), [piece_bytes(pi)])
    with pytest.raises(ModelError, match="m.gguf does not match its sha256"):
        files.finish()


def test_pieces_that_match_a_manifest_whose_whole_hash_is_wrong_never_pass(tmp_path):
    good = model(tmp_path)
    item = good.files[0]
    lying = Manifest("m", "gguf", (FileEntry(item.name, item.size, "f" * 64, item.pieces),),
                     STEP)
    files = PartialModel(lying, tmp_path / "partial")
    files.prepare(set())
    for pi in range(6):
        assert files.write((0, pi), [piece_bytes(pi)])
    with pytest.raises(ModelError, match="not loaded"):
        files.finish()


def test_a_resume_keeps_the_claimed_pieces_that_check_out(tmp_path):
    manifest = model(tmp_path)
    first = PartialModel(manifest, tmp_path / "partial")
    first.prepare(set())
    for pi in (0, 3, 4):
        first.write((0, pi), [piece_bytes(pi)])
    path = tmp_path / "partial" / "m.gguf"
    with path.open("r+b") as fh:  # piece 4 damaged on disk after it was recorded
        fh.seek(4 * STEP)
        fh.write(b"\xff" * 10)
    again = PartialModel(manifest, tmp_path / "partial")
    kept = again.prepare({(0, 0), (0, 3), (0, 4), (0, 5)})  # 5 was claimed, never written
    assert kept == {(0, 0), (0, 3)}
    for pi in (1, 2, 4, 5):
        assert again.write((0, pi), [piece_bytes(pi)])
    again.finish()
    assert path.read_bytes() == DATA


def test_an_empty_file_is_whole_at_once(tmp_path):
    (tmp_path / "e.gguf").write_bytes(b"")
    manifest = Manifest("e", "gguf", (hash_file(tmp_path / "e.gguf", "e.gguf", STEP),), STEP)
    files = PartialModel(manifest, tmp_path / "partial")
    assert files.prepare(set()) == set()
    files.finish()
