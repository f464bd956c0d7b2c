"""Who leads, what the swarm plans, and where each request goes: the election, a pure state machine
(`election.py`), its async driver over the peer table and the signed channel (`driver.py`) and
its durable term (`store.py`), the coordinator's swarm plan (`plan.py`) and the one source chooser
that route mode and consensus share, which honours that plan (`chooser.py`). The coming span
planner lives here too (`spans.py`).

May import: `network.wire`, `network.membership`, `network.trust` (the driver and the store),
`swarm.engine.source` (the chooser reads sources through it); `election.py`, `plan.py` and
`chooser.py` stay pure (tests/test_purity.py).
"""
