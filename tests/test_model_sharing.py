"""Model sharing between whole nodes on loopback (built as `main.py --federation` builds them):
a node without the model fetches it from the peers that hold it, hash-equal; a lost peer, a
corrupting peer, a crash mid-download and a caller without the swarm key."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path

import aiohttp
import pytest

from network.federation.client import FederationClient, peer_url
from network.federation.models.download import FetchProgress, Holder
from network.federation.models.fetcher import ModelFetcher
from network.federation.models.finder import ModelFinder, ask_models
from network.federation.models.startup import fetch_missing_model
from network.trust.identity import load_identity
from network.trust.swarm_key import KeyRing, SwarmKey
from network.wire.paths import BLOB_PATH, MODELS_PATH
from swarm.engine.loader import model_library, model_source
from swarm.errors import PeerError
from swarm.models.manifest import PIECE_BYTES
from swarm.models.store import ModelError, ModelSource
from swarm.node.config import load_config
from tests.swarm_nodes import SwarmNode, make_swarm, running

KEY = SwarmKey(bytes(range(32)))
OTHER = SwarmKey(bytes(range(50, 82)))
SIZE = 6 * PIECE_BYTES + 12345  # seven pieces, the last one short


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "shared" / "tiny-model.gguf"
    path.parent.mkdir()
    path.write_bytes(os.urandom(SIZE))
    return path


def fetching_config(tmp: Path, peers: list[SwarmNode], **extra: object):
    return load_config(env={}, cli={
        "federation.enabled": True, "federation.mdns": False, "federation.node_id": "b",
        "federation.peers": [f"127.0.0.1:{p.port}" for p in peers],
        "federation.swarm_key": KEY.text, "model.cache_dir": str(tmp / "b"),
        "model.path": "tiny-model", "federation.fetch_wait_s": 10.0, "api.host": "127.0.0.1",
        **extra})


def holders(nodes: list[SwarmNode]) -> list[Holder]:
    return [Holder(n.name, "127.0.0.1", n.port) for n in nodes]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_a_node_without_the_model_fetches_it_from_two_peers_hash_equal(tmp_path, model_file):
    nodes = make_swarm(tmp_path, ["a", "c"], KEY)
    for node in nodes.values():
        node.source = ModelSource(model_file, "tiny-model")
    async with running(nodes):
        config = fetching_config(tmp_path, list(nodes.values()))
        await fetch_missing_model(config)
        source = model_source(config)
        assert source.model_id == "tiny-model"
        assert sha(source.path) == sha(model_file)
        assert tmp_path / "b" / "store" in source.path.parents
        await fetch_missing_model(config)  # held now: nothing to do, nothing asked


async def test_model_swarm_serves_the_model_most_peers_hold(tmp_path, model_file):
    nodes = make_swarm(tmp_path, ["a", "c", "d"], KEY)
    nodes["a"].source = nodes["c"].source = ModelSource(model_file, "tiny-model")
    other = tmp_path / "shared" / "other-model.gguf"
    other.write_bytes(os.urandom(PIECE_BYTES // 2))
    nodes["d"].source = ModelSource(other, "other-model")
    async with running(nodes):
        config = fetching_config(tmp_path, list(nodes.values()), **{"model.path": "swarm"})
        chosen = await fetch_missing_model(config)
        source = model_source(chosen)
        assert source.model_id == "tiny-model"  # two peers hold it, one holds the other
        assert sha(source.path) == sha(model_file)
        again = await fetch_missing_model(config)  # held now: asked, not fetched again
        assert again.model.path == chosen.model.path
        assert model_source(again).path == source.path


async def test_model_swarm_with_no_peer_says_so(tmp_path):
    config = fetching_config(tmp_path, [], **{"model.path": "swarm",
                                              "federation.fetch_wait_s": 0.5})
    with pytest.raises(ModelError, match="--model swarm: no peer serves a model"):
        await fetch_missing_model(config)


async def test_a_peer_lost_mid_transfer_leaves_the_rest_to_the_other(tmp_path, model_file,
                                                                     caplog):
    nodes = make_swarm(tmp_path, ["a", "c"], KEY)
    for node in nodes.values():
        node.source = ModelSource(model_file, "tiny-model")
    async with running(nodes):
        client = FederationClient(keys=KeyRing(KEY))
        offer = await ask_models(client, holders([nodes["a"]])[0])
        manifest = offer.manifests[0]
        halfway = asyncio.Event()

        def progress(p: FetchProgress) -> None:
            if p.done_bytes >= 2 * PIECE_BYTES:
                halfway.set()

        library = model_library(fetching_config(tmp_path, []))
        fetcher = ModelFetcher(library, client, rate_bytes_s=8e6, on_progress=progress)
        with caplog.at_level(logging.INFO):
            fetch = asyncio.create_task(fetcher.fetch(manifest, holders(list(nodes.values()))))
            async with asyncio.timeout(30):
                await halfway.wait()
            assert not fetch.done()
            await nodes["a"].stop()
            entry = await asyncio.wait_for(fetch, 60)
        await client.close()
        assert sha(library.source(entry).path) == sha(model_file)


async def test_a_peer_serving_corrupted_bytes_is_named_and_avoided(tmp_path, model_file, caplog):
    bad_copy = tmp_path / "bad" / "tiny-model.gguf"
    bad_copy.parent.mkdir()
    bad_copy.write_bytes(model_file.read_bytes())
    nodes = make_swarm(tmp_path, ["a", "c"], KEY)
    nodes["a"].source = ModelSource(model_file, "tiny-model")
    nodes["c"].source = ModelSource(bad_copy, "tiny-model")
    async with running(nodes):
        # Bit rot after c hashed its file: same size, same mtime, other bytes.
        stat = bad_copy.stat()
        with bad_copy.open("r+b") as fh:
            for piece in range(7):
                fh.seek(piece * PIECE_BYTES + 100)
                fh.write(b"\xff" * 64)
        os.utime(bad_copy, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        config = fetching_config(tmp_path, list(nodes.values()))
        with caplog.at_level(logging.WARNING):
            await fetch_missing_model(config)
        assert sha(model_source(config).path) == sha(model_file)
        assert "peer c sent corrupted bytes of tiny-model.gguf" in caplog.text

        # With only the corrupting peer, the model is never stored; the error names it and the file.
        alone = fetching_config(tmp_path / "again", [nodes["c"]])
        with pytest.raises(Exception, match=r"c: sent corrupted bytes of tiny-model\.gguf"):
            await fetch_missing_model(alone)
        assert model_library(alone).find("tiny-model") is None


async def test_an_interrupted_download_resumes_from_the_checked_pieces(tmp_path, model_file):
    nodes = make_swarm(tmp_path, ["a"], KEY)
    nodes["a"].source = ModelSource(model_file, "tiny-model")
    async with running(nodes):
        client = FederationClient(keys=KeyRing(KEY))
        manifest = (await ask_models(client, holders([nodes["a"]])[0])).manifests[0]
        library = model_library(fetching_config(tmp_path, []))
        three = asyncio.Event()
        first = ModelFetcher(library, client, rate_bytes_s=8e6, streams=1,
                             on_progress=lambda p: three.set() if p.done_bytes >= 3 * PIECE_BYTES
                             else None)
        task = asyncio.create_task(first.fetch(manifest, holders([nodes["a"]])))
        async with asyncio.timeout(30):
            await three.wait()
        task.cancel()  # as a crash looks to the store: pieces on disk, progress recorded
        await asyncio.gather(task, return_exceptions=True)
        assert library.find("tiny-model") is None
        seen: list[int] = []
        second = ModelFetcher(library, client, on_progress=lambda p: seen.append(p.done_bytes))
        entry = await second.fetch(manifest, holders([nodes["a"]]))
        await client.close()
        assert seen[0] >= 4 * PIECE_BYTES  # started from the three (or more) pieces already checked
        assert sha(library.source(entry).path) == sha(model_file)


async def test_without_the_swarm_key_a_node_can_neither_list_nor_fetch(tmp_path, model_file):
    nodes = make_swarm(tmp_path, ["a"], KEY)
    nodes["a"].source = ModelSource(model_file, "tiny-model")
    async with running(nodes):
        a = nodes["a"]
        file_url = peer_url("127.0.0.1", a.port, BLOB_PATH + sha(model_file))
        async with aiohttp.ClientSession() as http:
            for url in (peer_url("127.0.0.1", a.port, MODELS_PATH), file_url):
                async with http.get(url) as reply:
                    assert reply.status == 401, await reply.text()
        outsider = FederationClient(keys=KeyRing(OTHER))
        with pytest.raises(PeerError) as refused:
            await ask_models(outsider, Holder("a", "127.0.0.1", a.port))
        assert refused.value.status == 403
        async with outsider.session().get(file_url, headers=outsider.sign(
                "a", "GET", file_url, b"")) as reply:
            assert reply.status == 403
        await outsider.close()
        # A peer names files by sha256 only: paths are not files.
        insider = FederationClient(keys=KeyRing(KEY))
        for name in ("..%2F..%2Fetc%2Fpasswd", "0" * 64):
            url = peer_url("127.0.0.1", a.port, BLOB_PATH + name)
            async with insider.session().get(url, headers=insider.sign("a", "GET", url, b"")) \
                    as reply:
                assert reply.status in (400, 404)
        await insider.close()


async def test_the_finder_gives_up_naming_what_it_saw(tmp_path, model_file):
    nodes = make_swarm(tmp_path, ["a"], KEY)
    nodes["a"].source = ModelSource(model_file, "tiny-model")
    async with running(nodes):
        config = fetching_config(tmp_path, [nodes["a"]])
        identity = load_identity(config.cache_path, "b", KEY.fingerprint)
        client = FederationClient(keys=KeyRing(KEY))
        finder = ModelFinder(config.federation, identity, KeyRing(KEY), client, [])
        with pytest.raises(Exception, match=r"no peer serves it .*a \(tiny-model\)"):
            await finder.find("other-model", 2.0)
        await client.close()


async def test_a_span_server_fetches_only_the_tensors_of_its_blocks(tmp_path):
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import save_file

    folder = tmp_path / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    rng = np.random.default_rng(1)
    tensors = {f"model.layers.{i}.mlp.weight": rng.random((1024, 1536), dtype=np.float32)
               for i in range(4)}  # 6 MiB per block: 24 MiB, six pieces
    save_file(tensors, str(folder / "model.safetensors"))
    nodes = make_swarm(tmp_path, ["a"], KEY)
    nodes["a"].source = ModelSource(folder, "hf-model")
    async with running(nodes):
        client = FederationClient(keys=KeyRing(KEY))
        manifest = (await ask_models(client, holders([nodes["a"]])[0])).manifests[0]
        library = model_library(fetching_config(tmp_path, []))
        fetched: list[int] = []
        fetcher = ModelFetcher(library, client, on_progress=lambda p: fetched.append(p.done_bytes))
        path = await fetcher.fetch_blocks(manifest, holders([nodes["a"]]), "model.safetensors",
                                          range(2, 3))
        await client.close()
    with safe_open(str(path), "np") as f:
        assert np.array_equal(f.get_tensor("model.layers.2.mlp.weight"),
                              tensors["model.layers.2.mlp.weight"])
    assert max(fetched) <= 4 * PIECE_BYTES < manifest.size  # the header's piece and block 2's
