"""Models shared over the LAN: the routes that list a node's models and serve their files by sha256
(`routes.py`), the finder that asks live peers which models they hold (`finder.py`), and the
fetcher that pulls a model's pieces from several holders at once into the store (`fetcher.py`;
its records, holders and progress, in `download.py`),
and the start-up step that fetches a missing `--model NAME` (or, for `--model swarm`, the model
most peers hold) before the node loads it (`startup.py`). The store itself, its manifests and the
pure piece schedule are in `swarm/models/`.

May import: what `network.federation` may, and `swarm.models`.
"""
