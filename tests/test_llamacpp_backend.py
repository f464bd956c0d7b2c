"""The optional llama.cpp backend on the embedded GGUF: OpenAI sampling semantics and logprobs."""
from __future__ import annotations

import math
import threading

import pytest

pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (extra [llamacpp])")

from swarm.engine.backend import (  # noqa: E402
    ChatMessage,
    ContextOverflowError,
    GenerationRequest,
    SamplingParams,
)
from swarm.engine.llamacpp_backend import LlamaCppBackend  # noqa: E402
from swarm.models.store import embedded_model  # noqa: E402

pytestmark = pytest.mark.llamacpp


@pytest.fixture(scope="module")
def backend():
    source = embedded_model()
    b = LlamaCppBackend(source.path, source.model_id, threads=1)
    yield b
    b.close()


def ask(content: str, **params) -> GenerationRequest:
    return GenerationRequest(messages=(ChatMessage("user", content),),
                             params=SamplingParams(**params))


def test_uses_the_models_own_chat_template(backend):
    text = backend.prompt_text(ask("Hi"))
    assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")


def test_seeded_sampling_is_reproducible_and_logprobs_are_real(backend):
    request = ask("Name a colour.", max_tokens=12, temperature=0.9, seed=11)
    first = list(backend.stream(request, threading.Event()))
    second = list(backend.stream(request, threading.Event()))
    assert [t.token_id for t in first] == [t.token_id for t in second]
    assert all(t.logprob <= 0 and math.isfinite(t.logprob) for t in first)
    assert "".join(t.text for t in first).strip()


def test_max_tokens_and_cancel(backend):
    tokens = list(backend.stream(ask("Count to fifty.", max_tokens=5, temperature=0),
                                 threading.Event()))
    assert len(tokens) == 5
    cancel = threading.Event()
    stream = backend.stream(ask("Count to fifty.", max_tokens=50, temperature=0), cancel)
    next(stream)
    cancel.set()
    assert len(list(stream)) <= 1


def test_context_overflow(backend):
    with pytest.raises(ContextOverflowError):
        list(backend.stream(ask("word " * (backend.context_length + 10), max_tokens=4),
                            threading.Event()))


def test_a_prompt_evaluated_in_chunks_gives_the_same_logits_as_in_one_batch(backend):
    from swarm.engine.llamacpp_backend import prompt_chunks

    assert prompt_chunks(list(range(33)), 16) == [list(range(16)), list(range(16, 33))]
    assert prompt_chunks(list(range(5)), 16) == [list(range(5))]
    for content in ("What is the capital of France?", "Count from one to ten. " * 6):
        ids = backend.llm.tokenize(backend.prompt_text(ask(content)).encode(), add_bos=False,
                                   special=True)
        backend.llm.reset()
        backend.llm.eval(ids)
        whole = backend._logits().copy()
        backend.llm.reset()
        for chunk in prompt_chunks(ids):
            backend.llm.eval(chunk)
        assert (backend._logits() == whole).all()


def test_a_cancel_during_the_prompt_stops_before_the_first_token(backend):
    cancel = threading.Event()
    cancel.set()
    assert list(backend.stream(ask("Count to fifty. " * 20, max_tokens=5), cancel)) == []


def _ids(backend, request: GenerationRequest) -> list[int]:
    return backend.llm.tokenize(backend.prompt_text(request).encode(), add_bos=False,
                                special=True)


def _fresh_logits(backend, ids: list[int]):
    from swarm.engine.llamacpp_backend import prompt_chunks

    backend.llm.reset()
    for chunk in prompt_chunks(ids):
        backend.llm.eval(chunk)
    return backend._logits().copy()


def test_a_prompt_start_already_cached_is_kept_and_the_logits_are_those_of_a_fresh_prompt(backend):
    """Another choice of the same prompt, or the next turn of a chat, evaluates only its last
    piece or what is new; the first logits are bit for bit those of the prompt evaluated afresh."""
    from swarm.engine.llamacpp_backend import PROMPT_CHUNK, prompt_chunks

    system = ChatMessage("system", "You are a helpful assistant who answers in one short "
                                   "sentence, names cities exactly and never adds anything. " * 3)
    first = GenerationRequest(messages=(system, ChatMessage("user", "Capital of France?")),
                              params=SamplingParams(max_tokens=12, temperature=0))
    answer = "".join(e.text for e in backend.stream(first, threading.Event()))
    then = GenerationRequest(messages=(*first.messages, ChatMessage("assistant", answer),
                                       ChatMessage("user", "And of Italy?")),
                             params=first.params)
    first_ids = _ids(backend, first)
    assert len(first_ids) > 3 * PROMPT_CHUNK
    last_piece = (len(prompt_chunks(first_ids)) - 1) * PROMPT_CHUNK
    for request, expected in ((first, last_piece),  # all but the last piece
                              (then, len(first_ids) // PROMPT_CHUNK * PROMPT_CHUNK)):
        ids = _ids(backend, request)
        fresh = _fresh_logits(backend, ids)
        list(backend.stream(first, threading.Event()))  # the cache holds `first` and its answer
        kept = backend._keep_cached(ids)
        assert kept in (expected, expected - PROMPT_CHUNK) and kept > 0  # a lone last token
        for chunk in prompt_chunks(ids[kept:]):
            backend.llm.eval(chunk)
        assert (backend._logits() == fresh).all()
    list(backend.stream(first, threading.Event()))
    assert backend._keep_cached(_ids(backend, ask("Name a colour."))) == 0  # no whole piece


def test_greedy_answers_and_logprobs_do_not_depend_on_what_was_cached(backend):
    request = ask("Count from one to ten.", max_tokens=16, temperature=0, logprobs=True)
    backend.llm.reset()
    alone = [(e.token_id, e.logprob) for e in backend.stream(request, threading.Event())]
    list(backend.stream(ask("Count from one to five.", max_tokens=8), threading.Event()))
    again = [(e.token_id, e.logprob) for e in backend.stream(request, threading.Event())]
    twice = [(e.token_id, e.logprob) for e in backend.stream(request, threading.Event())]
    assert alone == again == twice
