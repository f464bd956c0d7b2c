"""Route mode across machines: send a whole request to the least-loaded node and relay its reply.

Where it goes is the chooser's call (`chooser.route`) over the sources of `SwarmSources`, so a
route request honours the coordinator's plan exactly as a consensus request does.

A forwarded request is signed with the swarm key (FederationClient.forward) and carries
X-Local-Swarm-Forwarded, which tells the receiving node to serve it itself (one hop only). That
header is honoured only with a valid signature; an unsigned or badly signed one is refused with
401/403 (logged once per address), so the header can never be forged, and the forwarding node,
seeing the refusal, serves the request locally: no loop, no lost request.
"""
from __future__ import annotations

import logging
from typing import NoReturn

import aiohttp
from aiohttp import web

from network.coordination.chooser import route
from network.federation.client import FederationClient, PeerError
from network.federation.gate import refusal, verify_signed
from network.federation.sources import RemoteSource, SwarmSources
from network.trust.signing import Verdict, Verifier
from network.trust.swarm_key import KeyRing
from network.wire import codec

log = logging.getLogger(__name__)

FORWARDED_HEADER = "X-Local-Swarm-Forwarded"
SERVED_BY_HEADER = "X-Local-Swarm-Served-By"  # on a relayed answer: the peer that served it
_RELAYED_HEADERS = ("Content-Type", "Cache-Control", "Retry-After")
_STREAMS = ("text/event-stream", "application/x-ndjson")  # relayed as they arrive


class RouteForwarder:
    """Forwards route-mode requests to peers; any failure before relaying falls back to local."""

    def __init__(self, sources: SwarmSources, client: FederationClient, self_id: str, *,
                 read_timeout_s: float = 120.0, verifier: Verifier | None = None) -> None:
        self.sources = sources
        self.client = client
        self.self_id = self_id
        self.read_timeout_s = read_timeout_s
        # Without a verifier no forwarded header verifies: a random key nobody shares.
        self.verifier = verifier or Verifier(KeyRing.generate(), audience=self_id)
        self.forwarded = 0
        self.in_flight: dict[str, int] = {}
        self._warned: set[str] = set()

    async def maybe_forward(self, request: web.Request,
                            needs: frozenset[str] = frozenset()) -> web.StreamResponse | None:
        """Relay `request` to a less-loaded peer that serves `needs` (features such as tools)
        and return the relayed response, or None; a forwarded header without a valid swarm
        signature is refused (401/403)."""
        if request.headers.get(FORWARDED_HEADER):
            verdict = await verify_signed(request, self.verifier)
            if not verdict.ok:
                self.refuse(request, verdict)
            return None  # one hop only: the peer that received it serves it
        target = route(self.sources.local(), self.sources.remote(needs), self.in_flight)
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
            async with self.client.forward(target.endpoint.host, target.endpoint.port, target.node_id,
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
        raise refusal(verdict, f"{FORWARDED_HEADER} is only for swarm peers: {verdict.reason}")

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse,
                     node_id: str) -> web.StreamResponse:
        headers = {h: upstream.headers[h] for h in _RELAYED_HEADERS if h in upstream.headers}
        headers[SERVED_BY_HEADER] = node_id
        if not upstream.headers.get("Content-Type", "").startswith(_STREAMS):
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
