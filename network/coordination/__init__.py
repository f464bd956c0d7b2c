"""Who leads and what the swarm plans: the election, a pure state machine (`election.py`), its async
driver over the peer table and the signed channel (`driver.py`) and its durable term (`store.py`),
the coordinator's swarm plan (`plan.py`) and the one source chooser that route and consensus share
(`chooser.py`), and the span planner (`spans.py`).

May import: `network.wire`, `network.membership`, `network.trust` (the driver only);
`election.py`, `plan.py`, `chooser.py` and `spans.py` stay pure.
"""
