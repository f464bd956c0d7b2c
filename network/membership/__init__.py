"""Who is alive: the peer table, a pure state machine fed by discovery, heartbeat and clock events
(`table.py`, over its storage and queries in `roster.py` and its records in `records.py`), the
heartbeat datagrams peers push over UDP (`beacon.py`) and the pure check of which ones to take
(`ledger.py`), the monitor that feeds the table from those and probes over HTTP the peers whose
datagrams do not come (`monitor.py`, with the probe in `probe.py`, the probed addresses kept from
discovery in `address_book.py`, one address and its outcomes in `target.py`, through the node's
one peer session), the pure judgement of whose fault a failed probe is and how many probes a
suspicion may set off (`suspicion.py`), and the rows of `GET /v1/federation/peers` (`rows.py`).

May import: `network.wire`, `network.trust`, `network.discovery` (its events), `swarm.errors`;
`table.py`, `roster.py`, `records.py`, `ledger.py` and `suspicion.py` stay pure.
"""
