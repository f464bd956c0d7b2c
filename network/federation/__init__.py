"""The node-to-node half of a node: its membership in the swarm (`node.py`, owner of discovery,
heartbeats and the election), the one aiohttp client session that asks peers (`client.py`), the
`/v1/federation/*` routes (`server.py`, behind `gate.py`'s signature and body checks), peers as
sources and the sources a request may use (`sources.py`), and route-mode forwarding
(`forwarding.py`). The coming model sharing routes live here too.

May import: every other `network` room, `consensus`, `swarm.engine`, `swarm.node.config`.
"""
