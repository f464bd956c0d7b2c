"""Who leads, what the swarm plans, and where each request goes: the election, a pure state machine
(`election.py`, with its turn and vote rules in `turns.py` and its records in `records.py`), its
async driver over the peer table and the signed channel (`driver.py`), which keeps the
coordinator's plan through its follower (`following.py`) and holds a connection to it that
tells of its crash at once (`tether.py`), its durable term (`store.py`), sleep
detection from the two clocks (`wake.py`), the coordinator's swarm plan (`plan.py`), the one source
chooser that route mode and consensus share, which honours that plan (`chooser.py`), and the span
planner that gives each node a contiguous range of transformer blocks (`spans.py`, searching with
`placement.py`).

May import: `network.wire`, `network.membership`, `network.trust` (the driver and the store),
`swarm.engine.source` (the chooser reads sources through it); `election.py`, `turns.py`,
`records.py`, `wake.py`, `plan.py`, `chooser.py`, `spans.py` and `placement.py` stay
pure (tests/test_purity.py).
"""
