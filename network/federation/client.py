"""The federation client: the one aiohttp ClientSession that asks peers for votes and heartbeats.

Votes, cancels, election messages, plan reads and forwarded route requests are signed with the
swarm key (network/trust/signing.py): with the accepted key whose fingerprint the peer advertises (so a
node that rotated its key still talks to peers that have only the previous one), else the current
key. Vote, cancel, election and plan answers must come back signed over the request's nonce.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from yarl import URL

from network.coordination.election import Message
from network.tasks import stop_tasks
from network.trust.signing import NONCE_HEADER, check_reply, sign_request
from network.trust.swarm_key import KeyRing, SwarmKey
from network.wire import codec
from network.wire.election import ElectionEnvelope, ElectionReply, SwarmPlan
from network.wire.fields import WireDecodeError
from network.wire.paths import CANCEL_PATH, ELECTION_PATH, PLAN_PATH, VOTE_PATH
from network.wire.votes import CancelRequest, VoteReply, VoteRequest
from swarm.engine.backend import Completion, GenerationRequest
from swarm.errors import PeerError

log = logging.getLogger(__name__)

CANCEL_TIMEOUT_S = 2.0  # a best-effort cancel gives up after this long
CLOSE_GRACE_S = 1.0  # `close()` lets pending cancels finish for this long, then stops them
BULK_KEEPALIVE_S = 15.0  # an idle kept-alive bulk connection is closed after this long


def peer_url(address: str, port: int, path: str) -> URL:
    """The URL of `path` on a peer (IPv6 literals bracketed)."""
    return URL.build(scheme="http", host=address.strip("[]"), port=port, path=path)


class FederationClient:
    """Votes, cancels and heartbeats over one owned session; aiohttp errors become `PeerError`.

    Without `keys` requests go unsigned (peers refuse them); `key_for(node_id)` names the
    fingerprint a peer holds (from its advert or heartbeat), `clock` is the wall clock.
    """

    def __init__(self, *, connect_timeout_s: float = 0.5, request_timeout_s: float = 5.0,
                 max_reply_bytes: int = codec.MAX_BYTES,
                 close_grace_s: float = CLOSE_GRACE_S, keys: KeyRing | None = None,
                 key_for: Callable[[str], str | None] = lambda _node_id: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.key_for = key_for
        self.clock = clock
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_reply_bytes = max_reply_bytes
        self.close_grace_s = close_grace_s
        self._session: aiohttp.ClientSession | None = None
        self._bulk: aiohttp.ClientSession | None = None
        self._cancels: set[asyncio.Task[None]] = set()
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count()

    def new_request_id(self) -> str:
        """A vote id no other vote from this client (or, most likely, any node) has used."""
        return f"{self._id_prefix}-{next(self._ids)}"

    def session(self) -> aiohttp.ClientSession:
        """The node's one client session to its peers (made on first use): votes, cancels,
        election messages, plan reads, forwarded requests and the heartbeat probes of
        network/membership/monitor.py. Connections are not kept alive and not capped per host,
        so a probe always connects afresh (a vanished peer fails at connect, within the connect
        timeout) and never waits behind votes for a connection slot."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True, limit=0),
                trust_env=False, auto_decompress=False)
        return self._session

    def bulk_session(self) -> aiohttp.ClientSession:
        """A second session for bulk transfers (model files): connections are kept alive, so
        the ranged requests of a download reuse a warm TCP connection (no handshake, no slow
        start, no close per piece) instead of the probes' fresh one each time."""
        if self._bulk is None or self._bulk.closed:
            self._bulk = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=BULK_KEEPALIVE_S),
                trust_env=False, auto_decompress=False)
        return self._bulk

    def _timeout(self, total_s: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=total_s, sock_connect=self.connect_timeout_s)

    def signing_key(self, node_id: str) -> SwarmKey | None:
        """The key to sign for `node_id`: the accepted one it advertises, else the current one."""
        if self.keys is None:
            return None
        return self.keys.get(self.key_for(node_id)) or self.keys.current

    def sign(self, node_id: str, method: str, url: URL, body: bytes) -> dict[str, str]:
        """The X-Swarm-* headers for one request to `node_id` (none without keys)."""
        key = self.signing_key(node_id)
        if key is None:
            return {}
        return sign_request(key, method, url.raw_path_qs, body, now=self.clock(),
                            audience=node_id)

    async def _exchange(self, method: str, url: URL, node_id: str, timeout_s: float,
                        body: bytes | None = None, *, signed: bool = False,
                        reply_nonce: str | None = None,
                        headers: Mapping[str, str] | None = None) -> tuple[str | None, bytes]:
        """One request (signed when `signed`; its answer must then be signed back, as must one
        to `reply_nonce`); the reply's Content-Type and size-limited body, or `PeerError`."""
        signature = self.sign(node_id, method, url, body or b"") if signed else {}
        reply_nonce = signature.get(NONCE_HEADER, reply_nonce)
        try:
            async with self.session().request(method, url, data=body,
                                              headers={**(headers or {}), **signature},
                                              timeout=self._timeout(timeout_s)) as response:
                raw = await self.read_body(response, node_id)
                if response.status != 200:
                    raise PeerError(f"{url.path} answered {response.status}: "
                                    f"{_error_message(raw)}", status=response.status, node_id=node_id)
                if reply_nonce is not None and self.keys is not None:
                    wrong = check_reply(self.keys, reply_nonce, raw, response.headers)
                    if wrong is not None:
                        raise PeerError(f"{url.path} answer refused: {wrong}", node_id=node_id)
                return response.headers.get("Content-Type"), raw
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            what = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
            raise PeerError(f"{url.path} {what}", node_id=node_id) from exc

    async def read_body(self, response: aiohttp.ClientResponse, node_id: str) -> bytes:
        """A peer's whole answer, refused (PeerError) past `max_reply_bytes`."""
        if (response.content_length or 0) > self.max_reply_bytes:
            raise PeerError(f"reply of {response.content_length} bytes is over the limit", node_id=node_id)
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > self.max_reply_bytes:
                raise PeerError(f"reply over {self.max_reply_bytes} bytes", node_id=node_id)
        return bytes(body)

    async def vote(self, peer_address: str, api_port: int, node_id: str,
                   request: GenerationRequest, request_id: str, timeout_s: float) -> Completion:
        """One candidate from a peer; on cancellation or timeout the peer is told to stop."""
        body = codec.encode(VoteRequest.from_generation(request_id, request), codec.MSGPACK)
        url = peer_url(peer_address, api_port, VOTE_PATH)
        try:
            kind, raw = await self._exchange("POST", url, node_id, timeout_s, body, signed=True,
                                             headers={"Content-Type": codec.MSGPACK,
                                                      "Accept": codec.MSGPACK})
        except asyncio.CancelledError:
            self._cancel_soon(peer_address, api_port, node_id, request_id)
            raise
        except PeerError as exc:
            if isinstance(exc.__cause__, TimeoutError):
                self._cancel_soon(peer_address, api_port, node_id, request_id)
            raise
        try:
            reply = codec.decode(raw, kind, VoteReply, max_bytes=self.max_reply_bytes)
        except WireDecodeError as exc:
            raise PeerError(f"bad VoteReply: {exc}", node_id=node_id) from exc
        if reply.request_id != request_id or reply.node_id != node_id:
            raise PeerError(f"answered vote {reply.request_id!r} as {reply.node_id!r}", node_id=node_id)
        if len(reply.logprobs) != reply.completion_tokens:
            raise PeerError("VoteReply logprobs do not match completion_tokens", node_id=node_id)
        return reply.to_completion()

    async def cancel(self, peer_address: str, api_port: int, node_id: str, request_id: str,
                     timeout_s: float = CANCEL_TIMEOUT_S) -> bool:
        """Tell a peer to stop generating `request_id`; True when it was still running there."""
        body = codec.encode(CancelRequest(request_id=request_id), codec.MSGPACK)
        url = peer_url(peer_address, api_port, CANCEL_PATH)
        _kind, raw = await self._exchange("POST", url, node_id, timeout_s, body, signed=True,
                                          headers={"Content-Type": codec.MSGPACK})
        try:
            return bool(codec.decode_json(raw)["cancelled"])
        except (codec.WireDecodeError, KeyError, TypeError) as exc:
            raise PeerError("bad cancel reply", node_id=node_id) from exc

    async def election(self, address: str, port: int, node_id: str, message: Message,
                       timeout_s: float) -> list[Message]:
        """Send one Claim, Ack or Announce to `node_id`, signed; the messages it answers with
        (its signature over our nonce checked), or `PeerError`."""
        body = codec.encode(ElectionEnvelope(message), codec.MSGPACK)
        url = peer_url(address, port, ELECTION_PATH)
        kind, raw = await self._exchange("POST", url, node_id, timeout_s, body, signed=True,
                                         headers={"Content-Type": codec.MSGPACK,
                                                  "Accept": codec.MSGPACK})
        try:
            reply = codec.decode(raw, kind, ElectionReply, max_bytes=self.max_reply_bytes)
        except WireDecodeError as exc:
            raise PeerError(f"bad ElectionReply: {exc}", node_id=node_id) from exc
        return list(reply.messages)

    async def plan(self, address: str, port: int, node_id: str, timeout_s: float) -> SwarmPlan:
        """The swarm plan `node_id` serves, asked with a signed GET and signed back over our
        nonce; `PeerError` on any failure (503 while it has no plan included)."""
        url = peer_url(address, port, PLAN_PATH)
        kind, raw = await self._exchange("GET", url, node_id, timeout_s, signed=True,
                                         headers={"Accept": codec.MSGPACK})
        try:
            return codec.decode(raw, kind, SwarmPlan, max_bytes=self.max_reply_bytes)
        except WireDecodeError as exc:
            raise PeerError(f"bad SwarmPlan: {exc}", node_id=node_id) from exc

    async def read_signed(self, address: str, port: int, node_id: str, path: str,
                          timeout_s: float) -> bytes:
        """GET a federation view of `node_id` (the model manifests), signed; its answer must
        come back signed over our nonce; `PeerError` on any failure."""
        _kind, raw = await self._exchange("GET", peer_url(address, port, path), node_id,
                                          timeout_s, signed=True,
                                          headers={"Accept": codec.JSON})
        return raw

    @asynccontextmanager
    async def forward(self, address: str, port: int, node_id: str, path: str, body: bytes,
                      headers: Mapping[str, str],
                      read_timeout_s: float) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST a client's request, signed, to a peer's own API and yield the response to relay.

        Connecting and the response head raise `PeerError`; errors while relaying the body are
        the caller's (it has already answered its own client by then). The response is not
        signed (it may stream): relayed as the peer sent it.
        """
        url = peer_url(address, port, path)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s,
                                        sock_read=read_timeout_s)
        signed = {**headers, **self.sign(node_id, "POST", url, body)}
        try:
            response = await self.session().post(url, data=body, headers=signed,
                                                 timeout=timeout)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerError(f"{path} unreachable: {type(exc).__name__}: {exc}", node_id=node_id) from exc
        try:
            yield response
        finally:
            response.release()

    def _cancel_soon(self, address: str, port: int, node_id: str, request_id: str) -> None:
        """Send a cancel in a task this client owns (awaited or stopped by `close()`)."""
        task = asyncio.get_running_loop().create_task(
            self._cancel_quietly(address, port, node_id, request_id), name=f"cancel-{request_id}")
        self._cancels.add(task)
        task.add_done_callback(self._cancels.discard)

    async def _cancel_quietly(self, address: str, port: int, node_id: str,
                              request_id: str) -> None:
        try:
            await self.cancel(address, port, node_id, request_id)
        except PeerError as exc:
            log.debug("cancel of vote %s not delivered: %s", request_id, exc)

    async def drain(self) -> None:
        """Wait for the cancels already sent to finish (each gives up after its own timeout)."""
        while self._cancels:
            await asyncio.gather(*list(self._cancels), return_exceptions=True)

    async def close(self) -> None:
        """Let pending cancels finish briefly, stop the rest, and close the session."""
        if self._cancels:
            await asyncio.wait(list(self._cancels), timeout=self.close_grace_s)
        await stop_tasks(*self._cancels)
        for session in (self._session, self._bulk):
            if session is not None:
                await session.close()
        self._session = self._bulk = None


def _error_message(raw: bytes) -> str:
    """The message of an OpenAI-style error body, else a short prefix of the raw body."""
    try:
        body: Any = codec.decode_json(raw)
        return str(body["error"]["message"])[:300]
    except (codec.WireDecodeError, KeyError, TypeError):
        return raw[:100].decode("utf-8", "replace")
