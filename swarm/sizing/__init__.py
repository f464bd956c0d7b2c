"""Sizing this machine: the hardware probe (`hardware.py`, with what a Mac's `sysctl` says read
purely in `apple.py`), the first-run benchmark (`benchmark.py`) and its results and their cache
(`results.py`), the pure `--auto` planner (`autoplan.py`, with where the model runs in
`placement.py`) and the glue that runs them (`autorun.py`).

May import: `swarm.engine`, `swarm.models`, `swarm.node.config`.
"""
