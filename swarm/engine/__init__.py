"""Local inference: the `Backend` protocol and its records (`backend.py`), the `Source` seam every
answerer implements, local or not (`source.py`), the llama.cpp, transformers and scripted backends,
engine-independent decoding helpers (`decoding.py`), the loader that turns a plan into loaded
backends (`loader.py`) and the instance pool, whose instances are sources (`pool.py`). torch,
transformers and llama_cpp are imported lazily, inside the backend that needs them.

May import: `swarm.models`, `swarm.errors`, and `swarm.node.config` (the loader reads the
configuration); never `network` or `consensus`. `backend.py` and `source.py` stay pure.
"""
