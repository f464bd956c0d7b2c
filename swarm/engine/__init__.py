"""Local inference: the `Backend` protocol and its records (`backend.py`), the `Source` seam every
answerer implements, local or not (`source.py`), the llama.cpp, transformers and scripted backends,
the decode loop both real engines share (`sampler.py`: sampling, logprobs), structured output
enforced while decoding (`constraint.py`, the one llguidance user), engine-independent decoding
helpers (`decoding.py`), tool calls (`tools.py`: the records and the grammar that holds calls to
their schemas; `toolcalls.py`: reading answers as calls, whole or streamed; `toolprompt.py`: tools
and tool turns in the chat template, or the fallback format), embeddings (`embedding.py`: pooling
and batching; `llamacpp_embedding.py`: llama.cpp's embeddings context), the loader that turns a
plan into loaded backends (`loader.py`) and the instance pool (`pool.py`), whose
instances are sources (`instance.py`: one worker thread, a bounded queue, closing without a
use-after-free). torch, transformers, llama_cpp and
llguidance are imported lazily, inside the code that needs them.

May import: `swarm.models`, `swarm.errors`, and `swarm.node.config` (the loader reads the
configuration); never `network` or `consensus`. `backend.py` and `source.py` stay pure.
"""
