"""The exact default: an F16 copy of the embedded Q4_1 GGUF, made once, hash-checked, reused;
the embedded model installed from its wheel without declaring the wheel's dependencies."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest

from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.engine.loader import llamacpp_quant, model_file, plan_from_config
from swarm.models.embedded import install
from swarm.models.precision import copy_path, precision_copy, sha256_of, verified_copy
from swarm.models.store import (
    EMBEDDED_FILE,
    EMBEDDED_PACKAGE,
    EMBEDDED_SHA256,
    ModelError,
    embedded_model,
)
from swarm.node.config import load_config

FRANCE = GenerationRequest(messages=(ChatMessage("user", "What is the capital of France?"),),
                           params=SamplingParams(max_tokens=16, temperature=0))


def greedy_ids(backend) -> list[int]:
    return [event.token_id for event in backend.stream(FRANCE, threading.Event())]


@pytest.fixture(scope="module")
def f16_copy(node_config):
    """The F16 copy in the user's cache (made once, as the node makes it)."""
    return precision_copy(embedded_model(), "f16", node_config.cache_path,
                          expected_sha256=EMBEDDED_SHA256)


def test_quant_choice_is_f16_for_the_embedded_model_and_the_file_for_yours():
    assert llamacpp_quant("auto", embedded=True) == "f16"
    assert llamacpp_quant("auto", embedded=False) == "gguf"
    assert llamacpp_quant("file", embedded=True) == "gguf"
    assert llamacpp_quant("f32", embedded=False) == "f32"


@pytest.mark.llamacpp
def test_default_plan_runs_the_embedded_model_as_f16_and_quant_file_keeps_q4_1(tmp_path):
    pytest.importorskip("llama_cpp")
    plan = plan_from_config(load_config(env={}, cli={"model.cache_dir": str(tmp_path)}))
    assert (plan.backend, plan.dtype, plan.embedded) == ("llamacpp", "f16", True)
    config = load_config(env={}, cli={"model.quant": "file"})
    q4 = plan_from_config(config)
    assert q4.dtype == "gguf" and model_file(q4, config) == embedded_model().path


@pytest.mark.llamacpp
def test_the_f16_copy_answers_the_readme_example_like_the_float32_reference(
        f16_copy, transformers_pool):
    pytest.importorskip("llama_cpp")
    from swarm.engine.llamacpp_backend import LlamaCppBackend

    assert verified_copy(f16_copy)
    manifest = json.loads(f16_copy.with_suffix(".json").read_text())
    assert manifest["source_sha256"] == EMBEDDED_SHA256 and manifest["precision"] == "f16"
    exact = LlamaCppBackend(f16_copy, "f16", threads=1)
    q4 = LlamaCppBackend(embedded_model().path, "q4", threads=1)
    try:
        reference = greedy_ids(transformers_pool.instances[0].backend)
        assert greedy_ids(exact) == reference
        assert "".join(e.text for e in exact.stream(FRANCE, threading.Event())) == \
            "The capital of France is Paris."
        assert greedy_ids(q4) != reference  # the reason the copy exists
    finally:
        exact.close()
        q4.close()


def test_a_copy_is_reused_and_a_damaged_one_is_made_again(f16_copy, tmp_path):
    source = embedded_model()
    target = copy_path(source, "f16", tmp_path)
    target.parent.mkdir(parents=True)
    shutil.copyfile(f16_copy, target)
    shutil.copyfile(f16_copy.with_suffix(".json"), target.with_suffix(".json"))
    stamp = target.stat().st_mtime_ns
    assert precision_copy(source, "f16", tmp_path) == target
    assert target.stat().st_mtime_ns == stamp  # reused, not rewritten
    with open(target, "r+b") as fh:  # damage one byte of the weights
        fh.seek(-1000, 2)
        byte = fh.read(1)
        fh.seek(-1000, 2)
        fh.write(bytes([byte[0] ^ 0xFF]))
    assert not verified_copy(target)
    assert precision_copy(source, "f16", tmp_path) == target
    assert sha256_of(target) == sha256_of(f16_copy)


def test_nodes_starting_together_make_one_copy_and_all_use_it(f16_copy, tmp_path):
    """Three nodes on one machine start at once (the LAN test does): one converts, the others
    wait on the lock and reuse its copy; no process sees another's partial file."""
    script = ("import sys, logging; logging.basicConfig(level=logging.INFO); "
              "from pathlib import Path; from swarm.models.precision import precision_copy; "
              "from swarm.models.store import embedded_model; "
              "print(precision_copy(embedded_model(), 'f16', Path(sys.argv[1])))")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    results = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in results]
    target = copy_path(embedded_model(), "f16", tmp_path)
    assert {out.strip() for out, _ in results} == {str(target)}
    assert sum("writing an F16 copy" in err for _, err in results) == 1
    assert sha256_of(target) == sha256_of(f16_copy) and verified_copy(target)
    assert not list(tmp_path.rglob("*.partial"))


def test_a_source_with_another_hash_is_refused(tmp_path):
    with pytest.raises(ModelError, match="damaged"):
        precision_copy(embedded_model(), "f16", tmp_path, expected_sha256="0" * 64)
    assert not any(tmp_path.rglob("*.gguf*"))


def _wheel(path, payload: bytes | None):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{EMBEDDED_PACKAGE}/__init__.py", "import llm\n")
        if payload is not None:
            archive.writestr(f"{EMBEDDED_PACKAGE}/{EMBEDDED_FILE}", payload)
    return path


def test_the_embedded_file_is_taken_from_the_wheel_and_hash_checked(tmp_path):
    good = tmp_path / "good.whl"
    with zipfile.ZipFile(good, "w") as archive:
        archive.write(embedded_model().path, f"{EMBEDDED_PACKAGE}/{EMBEDDED_FILE}")
    target = install(good, tmp_path / "share")
    assert target == tmp_path / "share" / EMBEDDED_FILE and sha256_of(target) == EMBEDDED_SHA256
    with pytest.raises(ModelError, match="SHA-256"):
        install(_wheel(tmp_path / "bad.whl", b"GGUF not the model"), tmp_path / "other")
    with pytest.raises(ModelError, match="holds no"):
        install(_wheel(tmp_path / "empty.whl", None), tmp_path / "other")
    assert not any((tmp_path / "other").iterdir())
