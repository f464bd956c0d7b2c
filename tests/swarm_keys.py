"""Fixed swarm keys for tests: one swarm (`RING`), another (`OTHER`), and signing helpers."""
from __future__ import annotations

import time

from network.trust.signing import sign_request
from network.trust.swarm_key import KeyRing, SwarmKey

KEY = SwarmKey(bytes(range(32)))
RING = KeyRing(KEY)
OTHER_KEY = SwarmKey(bytes(range(100, 132)))
OTHER = KeyRing(OTHER_KEY)


def signed(path: str, body: bytes, key: SwarmKey = KEY, *, audience: str = "node-a",
           method: str = "POST", now: float | None = None, **headers: str) -> dict[str, str]:
    """Headers for one request to `path` on node `audience`, signed with `key` now (or at
    `now`)."""
    return {**headers, **sign_request(key, method, path, body, audience=audience,
                                      now=time.time() if now is None else now)}
