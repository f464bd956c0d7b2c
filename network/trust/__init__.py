"""Who may talk to whom: the swarm key and its ring (`swarm_key.py`), HMAC signatures of requests,
replies and heartbeats (`signing.py`), this node's lasting identity (`identity.py`), peer approval
(`approval.py`) and the 0600 atomic writer they share (`private_file.py`), and the pure cores of
joining a swarm by approval: the exchange's cryptography (`exchange.py`: commitment, the code both
screens show, the swarm key sealed to the joiner), the join requests a member holds
(`joins.py`) and which swarm a fresh node asks (`join_target.py`).

May import: `network.wire`, `swarm.errors`; `approval.py` also serves its local-only route (aiohttp,
`network.api.limits`) and reads peer records (`network.membership`), as does `join_target.py`.
`exchange.py`, `joins.py` and `join_target.py` stay pure (tests/test_purity.py).
"""
