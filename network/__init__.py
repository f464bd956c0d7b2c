"""Everything between machines and between a node and its clients, one sub-package per topic.

`api/` the HTTP surface clients call; `wire/` the bytes peers exchange; `trust/` who may talk;
`discovery/` how peers are found; `membership/` who is alive; `coordination/` who leads and what
the swarm plans; `federation/` the node-to-node routes and peers as sources; `petals/` the span
runtime. Pure cores (election, membership table, plan, chooser) import no asyncio, aiohttp, socket,
time or random: tests/test_purity.py checks it.
"""
