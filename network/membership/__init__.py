"""Who is alive: the peer table, a pure state machine fed by discovery, heartbeat and clock events
(`table.py`, with its records in `records.py`), the heartbeat datagrams peers push over UDP
(`beacon.py`) and the pure check of which ones to take (`ledger.py`), the monitor that feeds
the table from those and probes over HTTP the peers whose datagrams do not come (`monitor.py`,
with the probe in `probe.py` and a probed address and its outcomes in `target.py`, through the
node's one peer session), and the rows of `GET /v1/federation/peers` (`rows.py`).

May import: `network.wire`, `network.trust`, `network.discovery` (its events), `swarm.errors`;
`table.py`, `records.py` and `ledger.py` stay pure.
"""
