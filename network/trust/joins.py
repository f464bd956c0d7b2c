"""Join requests on a member: a bounded, rate-limited, expiring table, and the approval that seals
the swarm key to one of them. Pure: every method takes `now`; the routes
(network/federation/join_routes.py) own the clock and the waiting.

Join requests are unauthenticated by nature, so the table never trusts them: at most
`max_pending` requests in all and `MAX_PER_NODE` per claimed node id, hellos from one address
limited to a burst of `BURST` and one per `REFILL_S` after that, every request gone `ttl_s` after
its hello (an approved one `COLLECT_S` after its approval), a refused one gone at once. Nothing
is forwarded to other members, and nothing leaves this table but the offer (a public key) and,
after an approval, the sealed key, which only the joiner's one-time key opens.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from network.trust.exchange import PairingError, check_reveal, member_public, normal_code, seal
from network.trust.swarm_key import SwarmKey
from network.wire.pairing import JoinHello, JoinOffer, JoinReveal, JoinStatus
from swarm.errors import RequestError

MAX_PENDING = 16
MAX_PER_NODE = 4
BURST = 5
REFILL_S = 10.0
MAX_ADDRESSES = 1024
COLLECT_S = 60.0


class JoinRefused(RequestError):
    """A join message this member will not take: rate-limited, full, unknown, expired, off."""


@dataclass(frozen=True)
class JoinRequest:
    """One join request as this member holds it; `code` and `sealed` once revealed / approved."""

    node_id: str
    name: str
    address: str
    commitment: bytes
    since: float
    expires: float
    reveal: JoinReveal | None = None
    code: str = ""
    sealed: bytes = b""

    @property
    def state(self) -> str:
        """offered (no reveal yet), pending (shows a code), or approved."""
        return "approved" if self.sealed else "pending" if self.reveal else "offered"

    def status(self, now: float) -> JoinStatus:
        """What the joiner is told about it."""
        return JoinStatus(state="approved" if self.sealed else "pending", sealed=self.sealed,
                          expires_s=max(0.0, self.expires - now))

    def row(self, now: float) -> dict[str, object]:
        """Its row in `GET /v1/federation/joins` (never the sealed key)."""
        return {"node_id": self.node_id, "name": self.name, "address": self.address,
                "state": self.state, "code": self.code or None,
                "age_s": round(now - self.since, 3), "expires_in_s": round(self.expires - now, 3)}


class JoinHost:
    """The join requests member `self_id` holds for the swarm of fingerprint `swarm`."""

    def __init__(self, self_id: str, swarm: str, *, ttl_s: float,
                 max_pending: int = MAX_PENDING) -> None:
        self.self_id = self_id
        self.swarm = swarm
        self.ttl_s = ttl_s
        self.max_pending = max_pending
        self._requests: dict[tuple[str, bytes], JoinRequest] = {}
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def __len__(self) -> int:
        return len(self._requests)

    def requests(self, now: float) -> tuple[JoinRequest, ...]:
        """Every live request, oldest first."""
        self.expire(now)
        return tuple(sorted(self._requests.values(), key=lambda r: (r.since, r.node_id)))

    def hello(self, hello: JoinHello, address: str, now: float, key: SwarmKey) -> JoinOffer:
        """Take a hello from `address` and answer with this swarm's offer; JoinRefused (429
        with a retry delay) beyond the address's rate or the table's bounds."""
        if hello.swarm != self.swarm:
            raise JoinRefused(f"this node is in swarm {self.swarm}, not {hello.swarm}",
                              status=409, code="other_swarm")
        self._spend(address, now)
        self.expire(now)
        slot = (hello.node_id, hello.commitment)
        request = self._requests.get(slot)
        if request is None:
            if len(self._requests) >= self.max_pending:
                raise JoinRefused(f"{self.max_pending} join requests are already waiting here; "
                                  "try again later", status=429, code="joins_full",
                                  headers={"Retry-After": str(int(self.ttl_s))})
            if sum(1 for n, _c in self._requests if n == hello.node_id) >= MAX_PER_NODE:
                raise JoinRefused(f"{MAX_PER_NODE} join requests already claim node id "
                                  f"{hello.node_id}", status=429, code="joins_full",
                                  headers={"Retry-After": str(int(self.ttl_s))})
            request = JoinRequest(hello.node_id, hello.name, address, hello.commitment, now,
                                  now + self.ttl_s)
            self._requests[slot] = request
        return JoinOffer(node_id=self.self_id, swarm=self.swarm,
                         member_key=member_public(key, hello.commitment),
                         expires_s=request.expires - now)

    def revealed(self, reveal: JoinReveal, now: float, key: SwarmKey) -> JoinRequest:
        """Open the request's commitment: it now shows a code. JoinRefused when unknown or
        expired, or when the reveal does not match its hello."""
        request = self._live((reveal.node_id, reveal.commitment), now)
        if request.reveal is not None:
            if request.reveal != reveal:
                raise JoinRefused("this join request was already revealed otherwise",
                                  status=409, code="join_revealed")
            return request
        try:
            check_reveal(reveal, request.commitment)
            _sealed, code = seal(key, reveal, self.swarm)
        except PairingError as exc:
            raise JoinRefused(str(exc), code="bad_reveal") from None
        request = replace(request, reveal=reveal, code=code)
        self._requests[(request.node_id, request.commitment)] = request
        return request

    def status(self, node_id: str, commit: bytes, now: float) -> JoinRequest:
        """The live request (`node_id`, `commit`); JoinRefused (404) when there is none."""
        return self._live((node_id, commit), now)

    def approve(self, node_id: str, code: str | None, now: float, key: SwarmKey) -> JoinRequest:
        """Seal the swarm key to the one pending request of `node_id` (the one showing `code`
        when given); JoinRefused when there is none, or several and no code tells them apart."""
        self.expire(now)
        mine = [r for r in self._requests.values() if r.node_id == node_id and r.reveal]
        if code is not None:
            wanted = normal_code(code)
            if wanted is None:
                raise JoinRefused(f"{code!r} is not a code (8 digits, as 4821-0937)",
                                  code="invalid_value", param="code")
            mine = [r for r in mine if r.code == wanted]
        if not mine:
            raise JoinRefused(f"no join request from {node_id} is waiting here"
                              + (" with that code" if code else "")
                              + " (an expired one cannot be approved: the machine asks again, "
                              "with a new code)", status=404, code="no_join_request")
        if len(mine) > 1:
            codes = ", ".join(sorted(r.code for r in mine))
            raise JoinRefused(f"{len(mine)} machines ask to join as {node_id} (codes {codes}): "
                              "one of them is not that machine. Approve the one whose code that "
                              f"machine shows: `python main.py peers approve {node_id} --code "
                              "NNNN-NNNN`", status=409, code="ambiguous_join")
        request = mine[0]
        if not request.sealed:
            assert request.reveal is not None
            sealed, _code = seal(key, request.reveal, self.swarm)
            request = replace(request, sealed=sealed, expires=now + COLLECT_S)
            self._requests[(request.node_id, request.commitment)] = request
        return request

    def refuse(self, node_id: str, now: float) -> list[JoinRequest]:
        """Drop every request of `node_id` (nothing of them stays); the requests dropped."""
        self.expire(now)
        gone = [r for r in self._requests.values() if r.node_id == node_id]
        for request in gone:
            del self._requests[(request.node_id, request.commitment)]
        return gone

    def joined(self, node_id: str) -> None:
        """`node_id` now answers with the swarm key: its requests are done."""
        for slot in [s for s in self._requests if s[0] == node_id]:
            del self._requests[slot]

    def expire(self, now: float) -> list[JoinRequest]:
        """Drop the requests past their time; the requests dropped."""
        gone = [r for r in self._requests.values() if r.expires <= now]
        for request in gone:
            del self._requests[(request.node_id, request.commitment)]
        return gone

    def clear(self) -> None:
        """Forget every request (this node's key changed)."""
        self._requests.clear()

    def _live(self, slot: tuple[str, bytes], now: float) -> JoinRequest:
        self.expire(now)
        request = self._requests.get(slot)
        if request is None:
            raise JoinRefused("no such join request here (expired, refused or never made)",
                              status=404, code="no_join_request")
        return request

    def _spend(self, address: str, now: float) -> None:
        """One hello from `address`: a token of its bucket, or 429."""
        tokens, at = self._buckets.pop(address, (float(BURST), now))
        tokens = min(float(BURST), tokens + max(0.0, now - at) / REFILL_S)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            wait = int((1.0 - tokens) * REFILL_S) + 1
            raise JoinRefused("too many join requests from this address; try again later",
                              status=429, code="rate_limited", headers={"Retry-After": str(wait)})
        self._buckets[address] = (tokens - 1.0, now)
        while len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
