"""The bytes peers exchange: frozen message dataclasses (`messages.py`, `election.py` for the
election and plan, `spans.py` for the span map), the one codec that turns them into msgpack or
JSON and back (`codec.py`, the only msgpack user), and the mDNS TXT record (`txt.py`). Pure: no
I/O, no clock.

May import: nothing from other rooms except `swarm.errors`.
"""
