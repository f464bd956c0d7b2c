"""Local inference: the `Backend` protocol and its records (`backend.py`), the llama.cpp,
transformers and scripted backends, engine-independent decoding helpers (`decoding.py`), the loader
that turns a plan into loaded backends (`loader.py`) and the instance pool (`pool.py`). torch,
transformers and llama_cpp are imported lazily, inside the backend that needs them.

May import: `swarm.models`, `swarm.errors`; never `network` or `consensus`.
"""
