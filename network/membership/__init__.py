"""Who is alive: the peer table, a pure state machine fed by discovery, heartbeat and clock events
(`table.py`, with its records in `records.py`), the heartbeat prober that feeds it (`monitor.py`,
through the node's one peer session), and the rows of `GET /v1/federation/peers` (`rows.py`).

May import: `network.wire`, `network.trust`, `network.discovery` (its events), `swarm.errors`;
`table.py` and `records.py` stay pure.
"""
