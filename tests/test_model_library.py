"""The model store's pure parts and its disk layout: manifests, the piece schedule, the rate cap,
least-recently-used eviction, safetensors block ranges."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from swarm.models.library import Entry, ModelLibrary, evictions
from swarm.models.manifest import FileEntry, Manifest, ManifestError, hash_file, safe_name
from swarm.models.schedule import PieceSchedule, TokenBucket
from swarm.models.store import ModelError, ModelSource
from swarm.models.tensors import block_of, block_ranges, tensor_spans

SHA = "0" * 64


def manifest(name: str, size: int, fmt: str = "gguf", file: str = "m.gguf") -> Manifest:
    pieces = tuple(SHA for _ in range(-(-size // (4 << 20))))
    return Manifest(name, fmt, (FileEntry(file, size, SHA, pieces),))


def test_hash_file_reads_pieces_and_whole(tmp_path):
    data = os.urandom(3 * 65536 + 7)
    path = tmp_path / "x.gguf"
    path.write_bytes(data)
    entry = hash_file(path, "x.gguf", piece_bytes=65536)
    assert entry.size == len(data) and entry.sha256 == hashlib.sha256(data).hexdigest()
    assert entry.pieces == tuple(hashlib.sha256(data[i:i + 65536]).hexdigest()
                                 for i in range(0, len(data), 65536))


def test_a_manifest_round_trips_and_its_digest_ignores_the_gguf_file_name():
    m = manifest("a", 10)
    assert Manifest.from_wire(m.to_wire()) == m
    assert manifest("b", 10, file="other.gguf").digest == m.digest
    assert manifest("a", 11).digest != m.digest
    assert m.matches("a") and m.matches("m") and m.matches(m.digest[:12]) and not m.matches("z")


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "a//b", "./a", "", "a\\b"])
def test_a_manifest_never_names_a_file_outside_its_folder(name):
    assert not safe_name(name)
    wire = Manifest("a", "hf", (FileEntry("ok.json", 1, SHA, (SHA,)),)).to_wire()
    wire["files"][0]["name"] = name
    wire.pop("digest")
    with pytest.raises(ManifestError, match="files"):
        Manifest.from_wire(wire)


@pytest.mark.parametrize("field, value", [("sha256", "XYZ"), ("size", -1), ("pieces", []),
                                          ("size", True)])
def test_a_manifest_with_a_bad_field_is_refused_naming_it(field, value):
    wire = manifest("a", 10).to_wire()
    wire["files"][0][field] = value
    with pytest.raises(ManifestError, match=field if field != "size" else "size|pieces"):
        Manifest.from_wire(wire)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 30), st.lists(st.tuples(st.sampled_from(["take", "finish", "back", "ban"]),
                                              st.sampled_from("abc")), max_size=120),
       st.randoms(use_true_random=False))
def test_the_schedule_never_loses_or_doubles_a_piece(count, ops, rng):
    sizes = {(0, i): 10 for i in range(count)}
    s = PieceSchedule.of(sizes)
    for op, source in ops:
        if op == "take":
            piece = s.take(source)
            assert piece is None or s.in_flight[piece] == source
            assert source not in s.banned or piece is None
        elif s.in_flight:
            piece = rng.choice(sorted(s.in_flight))
            if op == "finish":
                s.finish(piece)
            elif op == "back":
                s.give_back(piece)
            else:
                s.ban(s.in_flight[piece], "bad bytes")
                s.give_back(piece)
        parts = [set(s.pending), set(s.in_flight), s.done]
        assert sum(len(p) for p in parts) == count and set().union(*parts) == set(sizes)
    assert s.complete == (len(s.done) == count)


def test_a_resumed_schedule_skips_the_pieces_done():
    s = PieceSchedule.of({(0, 0): 5, (0, 1): 5, (1, 0): 3}, done=[(0, 1)])
    assert s.pending == [(0, 0), (1, 0)] and s.done_bytes == 5 and s.total_bytes == 13


@given(st.floats(1e3, 1e9), st.lists(st.integers(1, 1 << 20), min_size=1, max_size=50))
def test_the_bucket_holds_the_rate(rate, sizes):
    bucket, now = TokenBucket(rate, rate / 4), 0.0
    for n in sizes:
        now += bucket.wait(now, n)
    # Everything past the first burst took at least its time at `rate`.
    assert now >= (sum(sizes) - rate / 4) / rate - 1e-6
    assert TokenBucket(0, 0).wait(5.0, 10**9) == 0.0


def entry(digest_name: str, size: int, used: float, owned: bool = True) -> Entry:
    return Entry(manifest(digest_name, size), None if owned else Path("/x"),
                 (), used)


def test_eviction_goes_least_recently_used_first_and_spares_pinned_and_user_files():
    old, mid, new = entry("old", 40, 1.0), entry("mid", 41, 2.0), entry("new", 42, 3.0)
    mine = entry("mine", 500, 0.0, owned=False)
    assert evictions([new, old, mid, mine], set(), 100, 30) == [old.manifest.digest,
                                                               mid.manifest.digest]
    assert evictions([new, old, mid], {old.manifest.digest}, 100, 30) == [
        mid.manifest.digest, new.manifest.digest]
    with pytest.raises(ModelError, match="store_limit_gb"):
        evictions([old], {old.manifest.digest}, 50, 30)


def test_the_store_indexes_the_users_model_once_and_serves_it_by_hash_only(tmp_path):
    model = tmp_path / "user" / "m.gguf"
    model.parent.mkdir()
    model.write_bytes(os.urandom(1000))
    clock = iter(range(100, 200))
    library = ModelLibrary(tmp_path / "store", 10**9, clock=lambda: float(next(clock)))
    shared = library.share(ModelSource(model, "m"))
    assert library.pinned == {shared.digest}
    assert library.add_local(model, "m") == shared  # hashed once: reused while size/mtime hold
    assert library.blob(shared.files[0].sha256) == (model, 1000)
    assert library.blob("1" * 64) is None
    model.write_bytes(os.urandom(1001))  # the user changed it: never served under the old hash
    assert library.blob(shared.files[0].sha256) is None
    assert library.find("m") is None


def test_block_ranges_come_from_the_safetensors_header(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"model.embed_tokens.weight": rng.random((8, 4), dtype=np.float32)}
    for i in range(4):
        tensors[f"model.layers.{i}.mlp.weight"] = rng.random((4, 4), dtype=np.float32)
        tensors[f"model.layers.{i}.norm.weight"] = rng.random(4, dtype=np.float32)
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    data = path.read_bytes()
    spans = tensor_spans(data, len(data))
    assert {s.name for s in spans} == set(tensors)
    ranges = block_ranges(spans, range(1, 3))
    picked = {s.name for s in spans if any(a <= s.start and s.end <= b for a, b in ranges)}
    assert picked == {f"model.layers.{i}.{w}.weight" for i in (1, 2) for w in ("mlp", "norm")}
    assert len(ranges) == 1  # adjacent tensors merge into one request
    assert block_of("transformer.h.7.attn.c_attn.weight") == 7 and block_of("lm_head.weight") is None
    with safe_open(str(path), "np") as f:
        assert np.array_equal(f.get_tensor("model.layers.1.mlp.weight"),
                              tensors["model.layers.1.mlp.weight"])
    with pytest.raises(ManifestError):
        tensor_spans(data[:20], len(data))
