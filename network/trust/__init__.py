"""Who may talk to whom: the swarm key and its ring (`swarm_key.py`), HMAC signatures of requests,
replies and heartbeats (`signing.py`), this node's lasting identity (`identity.py`), peer approval
(`approval.py`) and the 0600 atomic writer they share (`private_file.py`). The coming pairing flow
(joining a swarm by approval) lives here too.

May import: `network.wire`, `swarm.errors`; `approval.py` also serves its local-only route (aiohttp,
`network.api.limits`) and reads peer records (`network.membership`).
"""
