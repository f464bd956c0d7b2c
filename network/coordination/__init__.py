"""Who leads, what the swarm plans, and where each request goes: the election, a pure state machine
(`election.py`, with its turn and vote rules in `turns.py` and its records in `records.py`), its
async driver over the peer table and the signed channel (`driver.py`), its durable term
(`store.py`), sleep detection from the two clocks (`wake.py`), the coordinator's swarm plan
(`plan.py`) and the one source chooser that route mode and consensus share, which honours that
plan (`chooser.py`). The coming span planner lives here too (`spans.py`).

May import: `network.wire`, `network.membership`, `network.trust` (the driver and the store),
`swarm.engine.source` (the chooser reads sources through it); `election.py`, `turns.py`,
`records.py`, `wake.py`, `plan.py` and `chooser.py` stay pure (tests/test_purity.py).
"""
