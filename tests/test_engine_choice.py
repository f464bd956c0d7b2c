"""Which engine and device the loader picks, and the message when none is installed."""
from __future__ import annotations

import pytest

from swarm.engine import loader
from swarm.models.store import ModelError, embedded_model
from tests.engines import needs_llamacpp


def test_without_any_engine_the_message_says_what_to_install(monkeypatch):
    source = embedded_model()
    monkeypatch.setattr(loader, "llamacpp_available", lambda: False)
    monkeypatch.setattr(loader, "transformers_available", lambda: False)
    with pytest.raises(ModelError, match=r"llama-cpp-python is not installed.*\.\[transformers\]"):
        loader.choose_backend("auto", source)
    with pytest.raises(ModelError, match=r"Intel Macs"):
        loader.choose_backend("transformers", source)


def test_llama_cpp_is_chosen_for_a_gguf_file_even_without_torch(monkeypatch):
    monkeypatch.setattr(loader, "llamacpp_available", lambda: True)
    monkeypatch.setattr(loader, "transformers_available", lambda: False)
    assert loader.choose_backend("auto", embedded_model()) == "llamacpp"


def test_every_gpu_device_name_offloads_with_llama_cpp():
    assert {"cuda", "mps", "metal", "gpu"} <= loader.GPU_DEVICES and "cpu" not in loader.GPU_DEVICES


@needs_llamacpp
def test_the_installed_build_is_asked_whether_it_can_offload():
    import llama_cpp

    assert loader.llamacpp_gpu_offload() == bool(llama_cpp.llama_supports_gpu_offload())
