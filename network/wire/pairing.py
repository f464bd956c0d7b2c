"""The join exchange's messages (network/trust/exchange.py runs it): a fresh machine asks a swarm's
members to let it in, and one approval on any member sends it the swarm key, sealed.

    joiner -> member  JoinHello   its node id, name, the swarm it asks (fingerprint) and a
                                  commitment to its one-time X25519 key and nonce
    member -> joiner  JoinOffer   the member side's one-time public key for this commitment
    joiner -> member  JoinReveal  the key and nonce committed to; both sides now show one code
    joiner -> member  JoinWait    wait (long poll) for the decision on that request
    member -> joiner  JoinStatus  pending, refused, or approved with the sealed swarm key

Binary values travel as unpadded base64url text (so JSON carries them as well as msgpack). Join
messages are unauthenticated by nature: the routes bound and rate-limit them, and nothing in them
is a secret (the sealed key opens only with the joiner's one-time private key).
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import asdict, dataclass
from typing import Any

from network.wire.fields import Check, Fields, WireDecodeError, choice, ident, number, text

PAIRING_STATES = ("", "fresh", "open")  # advertised: closed (or older node), solo key, member
JOIN_STATES = ("pending", "approved", "refused")
PUBLIC_KEY_BYTES = 32  # X25519
NONCE_BYTES = 16
COMMITMENT_BYTES = 32  # SHA-256
SEALED_BYTES = 32 + 16  # the swarm key under ChaCha20-Poly1305 (with its tag)
MAX_WAIT_S = 25.0  # the longest a JoinWait is held open
MAX_JOINER_NAME = 64
_B64 = re.compile(r"[A-Za-z0-9_-]*", re.ASCII)


def pairing_state(value: str) -> str:
    """An advertised pairing state as this version knows it (an unknown one reads as closed)."""
    return value if value in PAIRING_STATES else ""


def b64(raw: bytes) -> str:
    """`raw` as unpadded base64url text."""
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def unb64(value: str) -> bytes:
    """The bytes of unpadded base64url text (ValueError when it is not)."""
    if _B64.fullmatch(value) is None:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64url") from exc


def blob(size: int) -> Check[bytes]:
    """Exactly `size` bytes, written as unpadded base64url."""
    chars = (size * 8 + 5) // 6

    def check(value: object, where: str) -> bytes:
        if not isinstance(value, str) or len(value) != chars:
            raise WireDecodeError(f"{where}: expected {size} bytes as {chars} base64url characters")
        try:
            raw = unb64(value)
        except ValueError:
            raise WireDecodeError(f"{where}: not base64url") from None
        if len(raw) != size:
            raise WireDecodeError(f"{where}: expected {size} bytes")
        return raw
    return check


def _wire(message: Any) -> dict[str, Any]:
    return {k: b64(v) if isinstance(v, bytes) else v for k, v in asdict(message).items()}


@dataclass(frozen=True, kw_only=True)
class JoinHello:
    """A fresh machine asks to join the swarm whose key has fingerprint `swarm`."""

    node_id: str
    name: str
    swarm: str
    commitment: bytes

    def to_wire(self) -> dict[str, Any]:
        """Plain msgpack/JSON types."""
        return _wire(self)

    @classmethod
    def from_wire(cls, data: object) -> JoinHello:
        """Validate a decoded map; `WireDecodeError` names the first bad field."""
        f = Fields(data, "JoinHello")
        return cls(node_id=f.get("node_id", ident()), name=f.get("name", text(MAX_JOINER_NAME)),
                   swarm=f.get("swarm", ident()),
                   commitment=f.get("commitment", blob(COMMITMENT_BYTES)))


@dataclass(frozen=True, kw_only=True)
class JoinOffer:
    """A member's answer to a hello: its one-time public key for that commitment (every member of
    one swarm answers the same, so every member shows the same code)."""

    node_id: str
    swarm: str
    member_key: bytes
    expires_s: float

    def to_wire(self) -> dict[str, Any]:
        """Plain msgpack/JSON types."""
        return _wire(self)

    @classmethod
    def from_wire(cls, data: object) -> JoinOffer:
        """Validate a decoded map; `WireDecodeError` names the first bad field."""
        f = Fields(data, "JoinOffer")
        return cls(node_id=f.get("node_id", ident()), swarm=f.get("swarm", ident()),
                   member_key=f.get("member_key", blob(PUBLIC_KEY_BYTES)),
                   expires_s=f.get("expires_s", number(0.0, 86400.0)))


@dataclass(frozen=True, kw_only=True)
class JoinReveal:
    """The joiner opens its commitment: its one-time public key and nonce."""

    node_id: str
    commitment: bytes
    joiner_key: bytes
    nonce: bytes

    def to_wire(self) -> dict[str, Any]:
        """Plain msgpack/JSON types."""
        return _wire(self)

    @classmethod
    def from_wire(cls, data: object) -> JoinReveal:
        """Validate a decoded map; `WireDecodeError` names the first bad field."""
        f = Fields(data, "JoinReveal")
        return cls(node_id=f.get("node_id", ident()),
                   commitment=f.get("commitment", blob(COMMITMENT_BYTES)),
                   joiner_key=f.get("joiner_key", blob(PUBLIC_KEY_BYTES)),
                   nonce=f.get("nonce", blob(NONCE_BYTES)))


@dataclass(frozen=True, kw_only=True)
class JoinWait:
    """Wait up to `wait_s` for the decision on the request (`node_id`, `commitment`)."""

    node_id: str
    commitment: bytes
    wait_s: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        """Plain msgpack/JSON types."""
        return _wire(self)

    @classmethod
    def from_wire(cls, data: object) -> JoinWait:
        """Validate a decoded map; `WireDecodeError` names the first bad field."""
        f = Fields(data, "JoinWait")
        return cls(node_id=f.get("node_id", ident()),
                   commitment=f.get("commitment", blob(COMMITMENT_BYTES)),
                   wait_s=f.get("wait_s", number(0.0, MAX_WAIT_S), 0.0))


@dataclass(frozen=True, kw_only=True)
class JoinStatus:
    """Where a join request stands; `sealed` (approved only) opens with the joiner's key alone."""

    state: str
    sealed: bytes = b""
    expires_s: float = 0.0

    def to_wire(self) -> dict[str, Any]:
        """Plain msgpack/JSON types."""
        return _wire(self)

    @classmethod
    def from_wire(cls, data: object) -> JoinStatus:
        """Validate a decoded map; `WireDecodeError` names the first bad field."""
        f = Fields(data, "JoinStatus")
        state = f.get("state", choice(JOIN_STATES))
        raw = f.get("sealed", text(128), "")
        sealed = blob(SEALED_BYTES)(raw, "JoinStatus.sealed") if raw else b""
        if (state == "approved") != bool(sealed):
            raise WireDecodeError("JoinStatus: an approved request carries the sealed key, "
                                  "no other does")
        return cls(state=state, sealed=sealed,
                   expires_s=f.get("expires_s", number(0.0, 86400.0), 0.0))
