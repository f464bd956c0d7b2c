"""HMAC-SHA256 signatures with the swarm key: federation requests, their replies, heartbeats.

A signed request carries four headers:

    X-Swarm-Key-Id:    fingerprint of the signing key (16 hex digits; picks current or previous)
    X-Swarm-Timestamp: the sender's wall clock, whole seconds since the Unix epoch
    X-Swarm-Nonce:     16 to 64 URL-safe base64 characters, fresh per request
    X-Swarm-Signature: 64 lowercase hex digits,
                       HMAC-SHA256(key, "local-swarm/1 request\\n" NODE_ID "\\n" METHOD "\\n"
                                        PATH?QUERY "\\n" TIMESTAMP "\\n" NONCE "\\n"
                                        hex(SHA-256(body)))

where NODE_ID is the receiving node's id (the audience): a request captured on its way to one
node does not verify on another node of the same swarm.

A signed reply (the heartbeat to `?nonce=N`, a vote or cancel answer) carries X-Swarm-Key-Id and
X-Swarm-Signature = HMAC-SHA256(key, "local-swarm/1 reply\\n" N "\\n" hex(SHA-256(body))), where N
is the caller's nonce. The two prefixes keep a reply signature from ever passing as a request's.
Requests more than 30 s off the verifier's clock, and nonces seen in the last 61 s, are refused.

A pushed heartbeat (network/wire/beat.py, one UDP datagram) carries its key id and the raw
HMAC-SHA256(key, "local-swarm/1 beat\n" + the datagram's bytes after the MAC: seq, sent_at,
sender, heartbeat); the receiver's beat ledger refuses a seq not above the last one and a sent_at
more than 30 s off its clock.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from network.trust.swarm_key import KeyRing, SwarmKey
from network.wire.fields import NONCE_PATTERN

KEY_ID_HEADER = "X-Swarm-Key-Id"
TIMESTAMP_HEADER = "X-Swarm-Timestamp"
NONCE_HEADER = "X-Swarm-Nonce"
SIGNATURE_HEADER = "X-Swarm-Signature"
MAX_SKEW_S = 30.0
MAX_NONCES = 65536
_REQUEST = b"local-swarm/1 request"
_REPLY = b"local-swarm/1 reply"
_BEAT = b"local-swarm/1 beat"
# What each request header must match (the OpenAPI document states these very patterns).
KEY_ID_PATTERN = re.compile(r"[0-9a-f]{16}", re.ASCII)
TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}", re.ASCII)
REQUEST_NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}", re.ASCII)
SIGNATURE_PATTERN = re.compile(r"[0-9a-f]{64}", re.ASCII)


def _mac(key: SwarmKey, *parts: bytes) -> str:
    return hmac.new(key.secret, b"\n".join(parts), hashlib.sha256).hexdigest()


def _digest(body: bytes) -> bytes:
    return hashlib.sha256(body).hexdigest().encode("ascii")


def request_signature(key: SwarmKey, method: str, path_qs: str, timestamp: str, nonce: str,
                      body: bytes, audience: str = "") -> str:
    """The X-Swarm-Signature of one request to node `audience` (see the module docstring)."""
    return _mac(key, _REQUEST, audience.encode("utf-8"), method.upper().encode("ascii"),
                path_qs.encode("utf-8"), timestamp.encode("ascii"), nonce.encode("ascii"),
                _digest(body))


def reply_signature(key: SwarmKey, nonce: str, body: bytes) -> str:
    """The X-Swarm-Signature of a reply to the request (or probe) that sent `nonce`."""
    return _mac(key, _REPLY, nonce.encode("ascii"), _digest(body))


def beat_mac(key: SwarmKey, signed: bytes) -> bytes:
    """The MAC of one pushed heartbeat datagram over its `signed` part (see the module doc)."""
    return hmac.digest(key.secret, _BEAT + b"\n" + signed, "sha256")


def check_beat(keys: KeyRing, key_id: str, mac: bytes, signed: bytes) -> str | None:
    """None when a pushed heartbeat's MAC verifies with an accepted key, else the reason."""
    key = keys.get(key_id)
    if key is None:
        return f"signed with another swarm key (fingerprint {key_id})"
    if not hmac.compare_digest(beat_mac(key, signed), mac):
        return "the signature does not verify"
    return None


def new_nonce() -> str:
    """A fresh request nonce (22 URL-safe characters, 128 random bits)."""
    return secrets.token_urlsafe(16)


def sign_request(key: SwarmKey, method: str, path_qs: str, body: bytes, *, now: float,
                 audience: str = "", nonce: str | None = None) -> dict[str, str]:
    """The four headers that sign `method path_qs` with `body`, for node `audience`, at
    wall-clock time `now`."""
    nonce = nonce or new_nonce()
    timestamp = str(int(now))
    signature = request_signature(key, method, path_qs, timestamp, nonce, body, audience)
    return {KEY_ID_HEADER: key.fingerprint, TIMESTAMP_HEADER: timestamp, NONCE_HEADER: nonce,
            SIGNATURE_HEADER: signature}


def sign_reply(key: SwarmKey, nonce: str, body: bytes) -> dict[str, str]:
    """The two headers that sign a reply to the request that carried `nonce`."""
    return {KEY_ID_HEADER: key.fingerprint, SIGNATURE_HEADER: reply_signature(key, nonce, body)}


def check_reply(keys: KeyRing, nonce: str, body: bytes, headers: Mapping[str, str]) -> str | None:
    """None when the reply is signed over `nonce` by an accepted key, else the reason (fit for
    the peer table: it names the fingerprint the peer claims, never a key)."""
    key_id = headers.get(KEY_ID_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not key_id and not signature:
        return "no swarm key (its answer is not signed)"
    if not KEY_ID_PATTERN.fullmatch(key_id) or not SIGNATURE_PATTERN.fullmatch(signature) \
            or not NONCE_PATTERN.fullmatch(nonce):
        return "malformed swarm signature"
    key = keys.get(key_id)
    if key is None:
        return f"another swarm key (fingerprint {key_id})"
    expected = reply_signature(key, nonce, body)
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        return f"another swarm key (fingerprint {key_id} claimed, signature does not verify)"
    return None


@dataclass(frozen=True)
class Verdict:
    """The outcome of checking a request: `ok`, or the HTTP status, code and reason to refuse."""

    ok: bool
    status: int = 200
    code: str = ""
    reason: str = ""
    key: SwarmKey | None = None  # the key that verified (sign the reply with it)
    nonce: str = ""


def _refuse(code: str, reason: str, status: int = 401) -> Verdict:
    return Verdict(False, status, code, reason)


class ReplayCache:
    """Nonces of verified requests, each kept `window_s` (longer than the whole accepted skew
    window), at most `max_entries`. When full, the oldest entry is dropped and every request
    signed at or before its timestamp is refused from then on, so a dropped nonce cannot replay.
    """

    def __init__(self, window_s: float, max_entries: int = MAX_NONCES) -> None:
        self.window_s = window_s
        self.max_entries = max_entries
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()  # nonce -> (expiry, ts)
        self.floor = -1  # requests signed at or before this timestamp are refused

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, nonce: str, timestamp: int, now: float) -> str | None:
        """Record `nonce`; the reason to refuse when it was seen before or is below the floor."""
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest][0] > now:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return "replayed request (this nonce was already used)"
        if timestamp <= self.floor:
            return ("request signed too long ago for this node's replay cache (under heavy "
                    "load); send it again")
        while len(self._seen) >= self.max_entries:
            _nonce, (_expiry, dropped_ts) = self._seen.popitem(last=False)
            self.floor = max(self.floor, dropped_ts)
        self._seen[nonce] = (now + self.window_s, timestamp)
        return None


class Verifier:
    """Checks signed requests to node `audience` against a `KeyRing`: constant-time MAC compare,
    clock skew beyond `max_skew_s` refused, replayed nonces refused. `clock` is the wall clock."""

    def __init__(self, keys: KeyRing, *, audience: str = "",
                 clock: Callable[[], float] = time.time, max_skew_s: float = MAX_SKEW_S,
                 max_nonces: int = MAX_NONCES) -> None:
        self.keys = keys
        self.audience = audience
        self.clock = clock
        self.max_skew_s = max_skew_s
        self.replays = ReplayCache(2 * max_skew_s + 1, max_nonces)

    def precheck(self, headers: Mapping[str, str]) -> Verdict:
        """The checks that need no body: headers present and well formed, key known, fresh."""
        values = [headers.get(h, "") for h in (KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER,
                                               SIGNATURE_HEADER)]
        key_id, timestamp, nonce, signature = values
        if not any(values):
            return _refuse("missing_signature", "this federation route needs a request signed "
                           "with the swarm key (X-Swarm-* headers)")
        missing = [h for h, v in zip((KEY_ID_HEADER, TIMESTAMP_HEADER, NONCE_HEADER,
                                      SIGNATURE_HEADER), values, strict=True) if not v]
        if missing:
            return _refuse("missing_signature", f"signed request lacks {', '.join(missing)}")
        if not (KEY_ID_PATTERN.fullmatch(key_id) and TIMESTAMP_PATTERN.fullmatch(timestamp)
                and REQUEST_NONCE_PATTERN.fullmatch(nonce) and SIGNATURE_PATTERN.fullmatch(signature)):
            return _refuse("malformed_signature", "malformed X-Swarm-* headers")
        key = self.keys.get(key_id)
        if key is None:
            return _refuse("unknown_swarm_key", f"signed with another swarm key (fingerprint "
                           f"{key_id}); this node's is {self.keys.fingerprint}", status=403)
        skew = int(timestamp) - self.clock()
        if abs(skew) > self.max_skew_s:
            return _refuse("stale_request", f"request timestamp is {skew:+.0f} s off this "
                           f"node's clock (more than {self.max_skew_s:.0f} s): a replay, or "
                           "clocks out of sync (enable NTP on both machines)")
        return Verdict(True, key=key, nonce=nonce)

    def verify(self, method: str, path_qs: str, headers: Mapping[str, str],
               body: bytes) -> Verdict:
        """Check one request; on success its nonce is recorded, so the same request fails next."""
        verdict = self.precheck(headers)
        if not verdict.ok or verdict.key is None:
            return verdict
        timestamp = headers[TIMESTAMP_HEADER]
        expected = request_signature(verdict.key, method, path_qs, timestamp, verdict.nonce,
                                     body, self.audience)
        if not hmac.compare_digest(expected.encode("ascii"),
                                   headers[SIGNATURE_HEADER].encode("ascii")):
            return _refuse("bad_signature", "the request signature does not verify (meant for "
                           "another node, or altered on the way)")
        replay = self.replays.add(verdict.nonce, int(timestamp), self.clock())
        if replay is not None:
            return _refuse("replayed_request", replay)
        return verdict
