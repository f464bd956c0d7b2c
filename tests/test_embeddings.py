"""Embeddings: pooling and batching (pure), POST /v1/embeddings through the official openai SDK
over the real embedded model (unit vectors, deterministic, base64 = floats, dimensions, batches
equal single inputs, related sentences closer than unrelated ones), the 400s, and llama.cpp
pooling the same way as transformers."""
from __future__ import annotations

import base64
import dataclasses

import httpx
import numpy as np
import openai
import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.api.app import build_app
from swarm.engine.embedding import batches, pool, shorten
from swarm.node.config import ApiConfig
from tests.node_apps import scripted_pool
from tests.server import ServerThread

TEXTS = ["The cat sat on the mat.", "A kitten was sitting on the rug.",
         "Interest rates rose again this quarter.", "hello"]


@given(st.lists(st.integers(1, 300), min_size=1, max_size=40), st.integers(1, 2000),
       st.integers(1, 16))
def test_batches_cover_every_input_once_within_their_bounds(lengths, max_tokens, max_inputs):
    groups = batches(lengths, max_tokens, max_inputs)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= max_inputs
        assert len(group) == 1 or max(lengths[i] for i in group) * len(group) <= max_tokens


def test_pooling_weights_later_tokens_more_and_normalises():
    states = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    vector = pool(states)
    assert vector == pytest.approx(np.array([1.0, 2.0]) / np.sqrt(5.0))
    cut = shorten(np.array([[3.0, 4.0, 12.0]], dtype=np.float32), 2)
    assert cut[0] == pytest.approx([0.6, 0.8])
    with pytest.raises(ValueError):
        pool(np.zeros((0, 2), dtype=np.float32))


@pytest.fixture()
def client(api_server):
    return openai.OpenAI(base_url=api_server.url + "/v1", api_key="none", max_retries=0)


def test_the_sdk_gets_unit_vectors_identical_for_the_same_input(client):
    reply = client.embeddings.create(model="default", input=TEXTS + TEXTS[:1],
                                     encoding_format="float")
    vectors = np.array([d.embedding for d in reply.data])
    assert [d.index for d in reply.data] == list(range(5))
    assert vectors.shape == (5, 576)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx(np.ones(5), abs=1e-5)
    assert np.array_equal(vectors[0], vectors[4])
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 5
    related, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert related > unrelated
    single = client.embeddings.create(model="default", input=TEXTS[2], encoding_format="float")
    # padded in a batch or alone, the same vector (up to float arithmetic)
    assert np.array(single.data[0].embedding) == pytest.approx(vectors[2], abs=1e-4)
    # the SDK asks for base64 by default and decodes it: the same floats
    default = client.embeddings.create(model="default", input=TEXTS)
    assert np.array([d.embedding for d in default.data]) == pytest.approx(vectors[:4], abs=1e-6)


def test_base64_is_little_endian_float32_and_dimensions_cut_and_renormalise(api_server):
    with httpx.Client(base_url=api_server.url, timeout=120) as http:
        body = {"model": "default", "input": "hello", "encoding_format": "base64",
                "dimensions": 64}
        reply = http.post("/v1/embeddings", json=body).json()
    raw = np.frombuffer(base64.b64decode(reply["data"][0]["embedding"]), dtype="<f4")
    assert raw.shape == (64,) and float(np.linalg.norm(raw)) == pytest.approx(1.0, abs=1e-5)
    assert reply["object"] == "list" and reply["swarm"]["strategy"] == "route"


@pytest.fixture(scope="module")
def small_limits():
    api = dataclasses.replace(ApiConfig(), max_embedding_inputs=3, max_embedding_tokens=5)
    server = ServerThread(lambda: build_app(scripted_pool(1), api)).start()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        yield http
    server.stop()


@pytest.mark.parametrize(("body", "param"), [
    ({"input": ["a", "b", "c", "d"]}, "input"),
    ({"input": ["a", ""]}, "input.1"),
    ({"input": "one two three four five six"}, "input"),
    ({"input": [[1, 2, 3]]}, "input"),
    ({"input": "a", "dimensions": 9}, "dimensions"),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"input": []}, "input"),
    ({"input": "a", "model": "gpt-nope"}, "model"),
])
def test_what_cannot_be_embedded_is_a_400_that_names_it(small_limits, body, param):
    response = small_limits.post("/v1/embeddings", json={"model": "default", **body})
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == param


def test_the_scripted_backend_embeds_within_the_limits(small_limits):
    reply = small_limits.post("/v1/embeddings", json={"model": "default",
                                                      "input": ["a b", "c"]}).json()
    assert len(reply["data"]) == 2 and reply["usage"]["prompt_tokens"] == 3


@pytest.mark.llamacpp
def test_llamacpp_pools_the_same_vectors_as_transformers(transformers_pool):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra [llamacpp])")
    from swarm.engine.llamacpp_backend import LlamaCppBackend
    from swarm.models.store import embedded_model

    source = embedded_model()
    llama = LlamaCppBackend(source.path, source.model_id, threads=1)
    try:
        ours = llama.embed(TEXTS)
        again = llama.embed(TEXTS[::-1])
    finally:
        llama.close()
    theirs = transformers_pool.instances[0].backend.embed(TEXTS)
    assert ours.tokens == theirs.tokens
    assert np.linalg.norm(ours.vectors, axis=1) == pytest.approx(np.ones(4), abs=1e-5)
    assert np.array(again.vectors[::-1]) == pytest.approx(ours.vectors, abs=1e-4)
    cosines = np.sum(ours.vectors * theirs.vectors, axis=1)
    assert cosines.min() > 0.98, cosines


def test_ollama_embed_gives_the_same_vectors_in_its_shape(small_limits):
    openai_reply = small_limits.post("/v1/embeddings", json={"model": "default", "input": ["a b", "c"],
                                                             "encoding_format": "float"}).json()
    reply = small_limits.post("/api/embed", json={"model": "scripted", "input": ["a b", "c"]})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["embeddings"] == [d["embedding"] for d in openai_reply["data"]]
    assert body["model"] == "scripted" and body["prompt_eval_count"] == 3
    one = small_limits.post("/api/embed", json={"model": "scripted:latest", "input": "a"}).json()
    assert len(one["embeddings"]) == 1
    wrong = small_limits.post("/api/embed", json={"model": "llama3", "input": "a"})
    assert wrong.status_code == 404 and "error" in wrong.json()
    too_many = small_limits.post("/api/embed", json={"model": "scripted",
                                                     "input": ["a", "b", "c", "d"]})
    assert too_many.status_code == 400 and "at most 3" in too_many.json()["error"]
