"""The reference backend: transformers + torch, one forward step at a time through the shared decode
loop (`sampler.generate`) for streaming, logprobs and constraints.

On Apple's MPS every step that puts work on the GPU (copying tokens in, the forward pass, reading
the logits back) holds one process-wide lock: PyTorch's MPS aborts the whole process when two
threads encode work at once (pytorch#197805), and each instance decodes in its own thread. Locking
per token, not per request, lets several instances take turns token by token.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from swarm.engine.backend import GenerationRequest, TokenEvent, check_context
from swarm.engine.constraint import Guides
from swarm.engine.embedding import Embeddings, batches, pool
from swarm.engine.sampler import generate
from swarm.engine.toolprompt import template_messages
from swarm.models.store import force_offline

log = logging.getLogger(__name__)

_DTYPES = ("float32", "bfloat16", "float16")
MPS_LOCK = threading.Lock()  # module doc: one thread at a time puts work on MPS


def device_lock(device: str) -> contextlib.AbstractContextManager[Any]:
    """The lock that GPU work on `device` must hold: `MPS_LOCK` on MPS, none elsewhere."""
    return MPS_LOCK if device == "mps" else contextlib.nullcontext()


EMBED_BATCH_TOKENS = 4096  # padded tokens per forward pass when embedding
EMBED_BATCH_INPUTS = 64


def pick_device(requested: str) -> str:
    """Resolve "auto" to cuda, mps or cpu, whichever this machine has."""
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class TransformersBackend:
    """A causal LM loaded from an HF folder; `stream` runs one generation at a time."""

    name = "transformers"

    def __init__(
        self, folder: Path, model_id: str, *, device: str = "auto", dtype: str = "float32"
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, not {dtype!r}")
        force_offline()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        self.model_id = model_id
        self.device = pick_device(device)
        self._gpu = device_lock(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, dtype=getattr(torch, dtype)
        )
        with self._gpu:
            self.model = model.to(self.device)  # type: ignore[arg-type]  # transformers types .to oddly
        self.model.eval()
        self.context_length = int(
            getattr(self.model.config, "max_position_embeddings", 2048) or 2048
        )
        self._eos = self._eos_ids()
        self._vocab_size = int(self.model.config.vocab_size)
        self._guides = Guides(self._lltokenizer)
        # The KV cache argument: `cache` since transformers 5.2x, `past_key_values` before.
        forward = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if isinstance(source, int):
                ids.add(source)
            elif source:
                ids.update(int(i) for i in source)
        return frozenset(ids)

    def prompt_text(self, request: GenerationRequest) -> str:
        """Apply the model's own chat template, with the request's tools
        (swarm/engine/toolprompt.py), or pass a raw prompt through."""
        if request.prompt is not None:
            return request.prompt
        template = self.tokenizer.chat_template
        messages, functions = template_messages(request.messages, request.tools,
                                                template if isinstance(template, str) else None)
        tools: Any = functions
        if not template:
            return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"
        return str(
            self.tokenizer.apply_chat_template(
                messages, tools=tools, tokenize=False, add_generation_prompt=True
            )
        )

    def count_tokens(self, text: str) -> int:
        """Number of tokens in `text`, without added special tokens."""
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def _encode(self, request: GenerationRequest) -> list[int]:
        ids = self.tokenizer.encode(self.prompt_text(request), add_special_tokens=False)
        check_context(len(ids), request.params.max_tokens, self.context_length)
        return ids

    def prompt_tokens(self, request: GenerationRequest) -> int:
        """Number of prompt tokens after templating."""
        return len(self._encode(request))

    def _lltokenizer(self) -> object:
        from llguidance.hf import from_tokenizer

        return from_tokenizer(self.tokenizer,  # type: ignore[arg-type]  # a fast tokenizer here
                              n_vocab=self._vocab_size, eos_token=sorted(self._eos))

    def stream(self, request: GenerationRequest, cancel: threading.Event) -> Iterator[TokenEvent]:
        """Yield tokens until EOS, `max_tokens`, `cancel` (checked before the prompt and every
        token) or the end of the constraint."""
        torch = self._torch
        ids = self._encode(request)
        state: dict[str, Any] = {}

        def run(tokens: list[int]) -> np.ndarray:
            """One forward pass after the cache: the last position's logits on the CPU, holding
            the device's lock while work is on the GPU (module doc)."""
            with self._gpu:
                inputs = torch.tensor([tokens], device=self.device)
                out = self.model(input_ids=inputs, use_cache=True, **state)
                state[self._cache_arg] = getattr(out, self._cache_arg)
                return out.logits[0, -1].to("cpu", torch.float32).numpy()

        if cancel.is_set():
            return
        with torch.inference_mode():
            yield from generate(
                request, cancel, first=run(ids), feed=lambda token: run([token]), eos=self._eos,
                decode=lambda toks: str(self.tokenizer.decode(toks, skip_special_tokens=True)),
                guides=self._guides)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        """Pooled, unit-length embeddings of `texts` (swarm/engine/embedding.py): padded
        batches through the base model, each input's own tokens pooled."""
        torch = self._torch
        ids = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        lengths = [len(i) for i in ids]
        if any(n == 0 for n in lengths):
            raise ValueError("cannot embed an input of no tokens")
        vectors = np.zeros((len(ids), int(self.model.config.hidden_size)), dtype=np.float32)
        base = self.model.base_model
        with torch.inference_mode():
            for group in batches(lengths, EMBED_BATCH_TOKENS, EMBED_BATCH_INPUTS):
                longest = max(lengths[i] for i in group)
                inputs = torch.zeros((len(group), longest), dtype=torch.long)
                mask = torch.zeros((len(group), longest), dtype=torch.long)
                for row, i in enumerate(group):
                    inputs[row, :lengths[i]] = torch.tensor(ids[i])
                    mask[row, :lengths[i]] = 1
                with device_lock(self.device):
                    out = base(input_ids=inputs.to(self.device),
                               attention_mask=mask.to(self.device))
                    states = out.last_hidden_state.to("cpu", torch.float32).numpy()
                for row, i in enumerate(group):
                    vectors[i] = pool(states[row, :lengths[i]])
        return Embeddings(vectors, tuple(lengths))

    def close(self) -> None:
        """Drop the weights and hand the GPU's cached memory back (the GC frees the weights once
        no request holds a reference)."""
        self.model = None
        if self.device == "cuda":
            self._torch.cuda.empty_cache()
        elif self.device == "mps":
            with self._gpu:
                self._torch.mps.empty_cache()
