"""Sizing this machine: the hardware probe (`hardware.py`), the first-run benchmark (`benchmark.py`)
and its results and their cache (`results.py`), the pure `--auto` planner (`autoplan.py`) and the
glue that runs them (`autorun.py`).

May import: `swarm.engine`, `swarm.models`, `swarm.node.config`.
"""
