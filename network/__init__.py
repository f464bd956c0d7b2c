"""Everything between machines and between a node and its clients, one sub-package per topic.

`api/` the HTTP surface clients call; `wire/` the bytes peers exchange; `trust/` who may talk;
`discovery/` how peers are found; `membership/` who is alive; `coordination/` who leads, what the
swarm plans and where a request goes; `federation/` the node-to-node routes and peers as sources;
`petals/` the span runtime. Pure cores (election, membership table, plan, chooser, the wire)
reach no asyncio, aiohttp, socket, time or random, however indirectly: tests/test_purity.py
checks it. Each room's `__init__.py` says what it may import: tests/test_rooms.py checks that.
`tasks.py` (how a component stops the background tasks it owns) is open to every room.
"""
