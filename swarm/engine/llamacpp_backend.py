"""The fast CPU/Metal backend: llama.cpp through llama-cpp-python, sampled here with OpenAI's semantics."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swarm.engine.backend import GenerationRequest, TokenEvent, check_context
from swarm.engine.constraint import Guides
from swarm.engine.embedding import Embeddings
from swarm.engine.llamacpp_embedding import LlamaEmbedder
from swarm.engine.sampler import generate
from swarm.engine.toolprompt import template_messages

log = logging.getLogger(__name__)


PROMPT_CHUNK = 16  # prompt tokens evaluated between two looks at `cancel`


def prompt_chunks(ids: list[int], size: int = PROMPT_CHUNK) -> list[list[int]]:
    """`ids` in pieces of `size`, a lone last token joined to the piece before it: llama.cpp
    takes another code path for one-token batches, and its logits would differ in the last bits
    from one whole-prompt batch (multi-token pieces match it exactly; see the tests)."""
    pieces = [ids[i:i + size] for i in range(0, len(ids), size)]
    if len(pieces) > 1 and len(pieces[-1]) == 1:
        pieces[-2:] = [pieces[-2] + pieces[-1]]
    return pieces


class LlamaCppBackend:
    """A GGUF model in llama.cpp. We sample from its raw logits ourselves (`sampler.generate`), so
    temperature, top_p, seed and logprobs mean what they mean in OpenAI's API (llama.cpp's own
    defaults differ: temperature 0.2, repeat penalty 1.1) and constraints mask the same logits."""

    name = "llamacpp"

    def __init__(self, path: Path, model_id: str, *, threads: int = 1, n_ctx: int = 0,
                 gpu: bool = False) -> None:
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._lib = llama_cpp
        self.model_id = model_id
        self.llm = llama_cpp.Llama(
            model_path=str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
            n_gpu_layers=-1 if gpu else 0, logits_all=False, verbose=False,
        )
        self.context_length = self.llm.n_ctx()
        self._n_vocab = self.llm.n_vocab()
        self._eos = {self.llm.token_eos()}
        meta = self.llm.metadata
        eot = meta.get("tokenizer.ggml.eot_token_id")
        if eot is not None:
            self._eos.add(int(eot))
        self._guides = Guides(self._lltokenizer)
        # A recurrent (or hybrid) model's state cannot be cut back to a prefix: evaluate anew.
        model = self.llm.model
        self._exact = 0  # cached positions evaluated in whole PROMPT_CHUNK pieces from the start
        self._reuses_prefix = not any(getattr(llama_cpp, f, lambda _m: True)(model) for f in (
            "llama_model_is_recurrent", "llama_model_is_hybrid"))
        self._threads = threads
        self._embedder: LlamaEmbedder | None = None
        template = meta.get("tokenizer.chat_template")
        self._template = template or None
        self._formatter = None
        if template:
            vocab = self.llm
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=vocab.detokenize([vocab.token_eos()], special=True).decode(
                    errors="replace"),
                bos_token=vocab.detokenize([vocab.token_bos()], special=True).decode(
                    errors="replace"),
            )

    def prompt_text(self, request: GenerationRequest) -> str:
        """Apply the model's own chat template (from the GGUF), with the request's tools
        (swarm/engine/toolprompt.py), or pass a raw prompt through."""
        if request.prompt is not None:
            return request.prompt
        messages, tools = template_messages(request.messages, request.tools, self._template)
        if self._formatter is None:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        turns: list[Any] = messages
        functions: Any = tools
        return self._formatter(messages=turns, tools=functions).prompt

    def count_tokens(self, text: str) -> int:
        """Number of tokens in `text` (special tokens parsed, no BOS added)."""
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=True))

    def _logits(self) -> np.ndarray:
        """The last position's logits: a float32 view of llama.cpp's buffer (no copy)."""
        ptr = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,))

    def _lltokenizer(self) -> object:
        from llguidance.llamacpp import lltokenizer_from_vocab

        vocab = self._lib.llama_model_get_vocab(self.llm.model)
        return lltokenizer_from_vocab(vocab, eos_token=sorted(self._eos))

    def _feed(self, token: int) -> np.ndarray:
        self.llm.eval([token])
        return self._logits()

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[TokenEvent]:
        """Yield tokens until EOS, `max_tokens`, `cancel` (checked before every prompt batch and
        every token) or the end of the constraint."""
        ids = self.llm.tokenize(self.prompt_text(request).encode(), add_bos=False, special=True)
        check_context(len(ids), request.params.max_tokens, self.context_length)
        self._exact = self._keep_cached(ids)
        for chunk in prompt_chunks(ids[self._exact:]):  # a cancel lands between chunks
            if cancel.is_set():
                return
            self.llm.eval(chunk)
            if len(chunk) == PROMPT_CHUNK and self._exact == self.llm.n_tokens - PROMPT_CHUNK:
                self._exact = self.llm.n_tokens
        yield from generate(
            request, cancel, first=self._logits(), feed=self._feed, eos=self._eos,
            decode=lambda toks: self.llm.detokenize(toks).decode("utf-8", errors="replace"),
            guides=self._guides)

    def _keep_cached(self, ids: list[int]) -> int:
        """Keep the longest start of `ids` that llama.cpp already holds exactly as a fresh
        evaluation would make it, and return its length: only the rest is evaluated (`eval` drops
        what follows from the KV cache). Another choice of the same prompt, the next turn of a
        chat or the same tools evaluate only their last piece, or what is new.

        Exactly: llama.cpp's results differ in the last bits with the size of a batch, and a
        near-tie could then flip a greedy answer. So only whole `PROMPT_CHUNK` pieces of an earlier
        prompt are kept (never its answer, evaluated a token at a time), up to a piece boundary of
        `ids`: what follows is evaluated in the very pieces a fresh evaluation uses."""
        usable = min(self.llm.n_tokens, self._exact, len(ids)) if self._reuses_prefix else 0
        same = self.llm.input_ids[:usable] == np.asarray(ids[:usable], dtype=np.intc)
        common = usable if same.all() else int(np.argmin(same))
        last_piece = (len(prompt_chunks(ids)) - 1) * PROMPT_CHUNK
        kept = min(common // PROMPT_CHUNK * PROMPT_CHUNK, last_piece)
        if kept == 0:
            self.llm.reset()
        self.llm.n_tokens = kept
        return kept

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Pooled, unit-length embeddings of `texts` (swarm/engine/llamacpp_embedding.py)."""
        ids = [self.llm.tokenize(t.encode(), add_bos=False, special=True) for t in texts]
        if self._embedder is None:
            self._embedder = LlamaEmbedder(self._lib, self.llm.model, threads=self._threads,
                                           context_length=self.context_length)
        return self._embedder.embed(ids)

    def close(self) -> None:
        """Free the llama.cpp contexts and weights."""
        if self._embedder is not None:
            self._embedder.close()
        self.llm.close()
