"""Models on disk: finding the embedded default model and converting GGUF files once into a cached
folder (`store.py`). Model sharing over the LAN will keep its store here.

May import: `swarm.errors`.
"""
