"""Route mode across machines: send a whole request to the least-loaded node and relay its reply.

A forwarded request is signed with the swarm key (FederationClient.forward) and carries
X-Local-Swarm-Forwarded, which tells the receiving node to serve it itself (one hop only). That
header is honoured only with a valid signature; an unsigned or badly signed one is refused with
401/403 (logged once per address), so the header can never be forged, and the forwarding node,
seeing the refusal, serves the request locally: no loop, no lost request.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

from aiohttp import web

from network.federation.client import FederationClient, PeerError
from network.federation.sources import RemoteSource
from network.trust.signing import Verdict, Verifier
from network.trust.swarm_key import KeyRing
from network.wire import codec
from swarm.engine.pool import InstancePool
from swarm.errors import RequestError

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Local-Swarm-Forwarded"
# The request key holding verify_forwarded's verdict.
_VERDICT = web.RequestKey("local_swarm_forward_verdict", Verdict)
_RELAYED_HEADERS = ("Content-Type", "Cache-Control", "Retry-After")


def choose_target(local_active: int, remotes: Sequence[RemoteSource],
                  in_flight: Mapping[str, int] | None = None) -> RemoteSource | None:
    """The remote to forward to, or None to serve here: a local idle instance always wins; else
    the remote strictly less busy than our least-busy instance (ties: fastest, then id).

    A peer's busyness is its last heartbeat (up to one interval old) plus what we forwarded to
    it since and is still running, so a burst spreads over peers instead of piling on one.
    """
    if local_active == 0 or not remotes:
        return None
    pending = in_flight or {}

    def busy(r: RemoteSource) -> float:
        return r.active + pending.get(r.node_id, 0)

    best = min(remotes, key=lambda r: (busy(r), -r.bench_score, r.node_id))
    return best if busy(best) < local_active else None


class RouteForwarder:
    """Forwards route-mode requests to peers; any failure before relaying falls back to local."""

    def __init__(self, pool: InstancePool, client: FederationClient, self_id: str,
                 remotes: Callable[[], Sequence[RemoteSource]],
                 read_timeout_s: float = 120.0, verifier: Verifier | None = None) -> None:
        self.pool = pool
        self.client = client
        self.self_id = self_id
        self.remotes = remotes
        self.read_timeout_s = read_timeout_s
        # Without a verifier no forwarded header verifies: a random key nobody shares.
        self.verifier = verifier or Verifier(KeyRing.generate(), audience=self_id)
        self.forwarded = 0
        self.in_flight: dict[str, int] = {}
        self._warned: set[str] = set()

    async def verify_forwarded(self, request: web.Request) -> Verdict:
        """Whether `request` is a forward signed by a swarm member (reads the cached body).

        The verdict is kept on the request, so a second call (say, an auth check before the
        handler) does not see its own nonce as a replay.
        """
        if _VERDICT in request:
            return request[_VERDICT]
        verdict = self.verifier.precheck(request.headers)
        if verdict.ok:
            verdict = self.verifier.verify(request.method, request.raw_path, request.headers,
                                           await request.read())
        request[_VERDICT] = verdict
        return verdict

    async def maybe_forward(self, request: web.Request) -> web.StreamResponse | None:
        """Relay `request` to a less-loaded peer and return the relayed response, or None;
        a forwarded header without a valid swarm signature is refused (401/403)."""
        if request.headers.get(FORWARDED_HEADER):
            verdict = await self.verify_forwarded(request)
            if not verdict.ok:
                self.refuse(request, verdict)
            return None  # one hop only: the peer that received it serves it
        local_active = min(i.active for i in self.pool.instances)
        target = choose_target(local_active, self.remotes(), self.in_flight)
        if target is None:
            return None
        self.in_flight[target.node_id] = self.in_flight.get(target.node_id, 0) + 1
        try:
            return await self._forward(request, target)
        finally:
            self.in_flight[target.node_id] -= 1
            if not self.in_flight[target.node_id]:
                del self.in_flight[target.node_id]

    async def _forward(self, request: web.Request,
                       target: RemoteSource) -> web.StreamResponse | None:
        body = await request.read()
        headers = {"Content-Type": "application/json", FORWARDED_HEADER: self.self_id}
        try:
            async with self.client.forward(target.address, target.api_port, target.node_id,
                                           request.path, body, headers,
                                           self.read_timeout_s) as upstream:
                if upstream.status >= 500 or upstream.status in (401, 403):
                    log.info("peer %s answered %d; serving locally", target.node_id,
                             upstream.status)
                    return None
                self.forwarded += 1
                return await self._relay(request, upstream, target.node_id)
        except PeerError as exc:
            log.info("forwarding to %s failed (%s); serving locally", target.node_id, exc)
            return None

    def refuse(self, request: web.Request, verdict: Verdict) -> NoReturn:
        """Raise the 401/403 for a forward whose signature failed (logged once per address)."""
        remote = request.remote or "unknown"
        message = f"{FORWARDED_HEADER} from {remote} refused: {verdict.code}: {verdict.reason}"
        if remote in self._warned or len(self._warned) >= 1024:
            log.debug("%s", message)
        else:
            self._warned.add(remote)
            log.warning("%s (further ones logged at debug)", message)
        status = verdict.status
        raise RequestError(f"{FORWARDED_HEADER} is only for swarm peers: {verdict.reason}",
                           status=status, code=verdict.code,
                           type_="authentication_error" if status == 401 else "permission_error",
                           headers={"WWW-Authenticate": "Swarm-HMAC"} if status == 401 else None)

    async def _relay(self, request: web.Request, upstream, node_id: str) -> web.StreamResponse:
        headers = {h: upstream.headers[h] for h in _RELAYED_HEADERS if h in upstream.headers}
        if not upstream.headers.get("Content-Type", "").startswith("text/event-stream"):
            # Read and parsed under the limits of every other peer message (PeerError beyond:
            # the request is then served here).
            raw = await self.client.read_body(upstream, node_id)
            body = codec.decode_json(raw, max_bytes=self.client.max_reply_bytes) if raw else {}
            if isinstance(body, dict) and isinstance(body.get("swarm"), dict):
                body["swarm"]["node"] = node_id
            return web.json_response(body, status=upstream.status,
                                     headers={k: v for k, v in headers.items()
                                              if k != "Content-Type"})
        response = web.StreamResponse(status=upstream.status, headers=headers)
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response
