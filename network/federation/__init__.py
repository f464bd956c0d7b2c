"""The node-to-node half of a node: its membership in the swarm (`node.py`, owner of discovery,
heartbeats and the election), the one aiohttp client session that asks peers (`client.py`), the
`/v1/federation/*` routes (`server.py`, with votes and cancels in `vote_routes.py`, the
followers' held tethers in `tether_routes.py`, behind `gate.py`'s signature and body checks),
peers as
sources and the sources a request may use (`sources.py`), route-mode forwarding
(`forwarding.py`), joining by approval: the node's pairing (`pairing.py`: its join requests,
its own asking while fresh, adopting a swarm's key without a restart), one join attempt
(`joining.py`) and the join routes (`join_routes.py`), and model sharing over the LAN
(`models/`: the routes, finder and fetcher).

May import: every other `network` room, `consensus`, `swarm.engine`, `swarm.models` (the model
store), `swarm.node.config`.
"""
