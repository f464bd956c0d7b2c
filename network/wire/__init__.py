"""The bytes peers exchange: frozen message dataclasses (`messages.py` for the heartbeat, `votes.py`
for a consensus vote, its reply and its cancel, `election.py` for the election and plan, `spans.py`
for the plan's span map) read with the checks and limits of `fields.py` (the one id pattern
included), the one codec that turns them into msgpack or JSON and back (`codec.py`, the only msgpack
user), the fixed layout of a pushed heartbeat datagram (`beat.py`), the mDNS TXT record (`txt.py`),
a peer's typed endpoint (`address.py`) and the federation routes' paths (`paths.py`).
Pure: no I/O, no clock.

May import: `swarm.errors`, the engine's records (`swarm.engine.backend`), and, in `election.py`,
the election core's messages (`network.coordination.election`, itself pure).
"""
