"""A pushed heartbeat: the one datagram a node sends each peer every heartbeat interval over UDP,
on the port number of its API.

`heartbeat` holds the codec bytes of the sender's `Heartbeat` (no nonce). The datagram is signed
with the swarm key over the sender's id, `seq` (counting up from 1 through one boot), `sent_at`
(the sender's wall clock, whole seconds) and those bytes (network/trust/signing.py
`beat_signature`), so a receiver can refuse forgeries, replays (a `seq` not above the last one)
and stale copies without asking back. Pure: no I/O, no clock.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from network.wire.fields import MAX_BEAT_BYTES, MAX_COUNT, Fields, blob, ident, integer, text

MAX_SEQ = 2**63 - 1
_KEY_ID_CHARS = 16
_SIGNATURE_CHARS = 64


@dataclass(frozen=True, kw_only=True)
class Beat:
    """One signed heartbeat datagram from node `sender`."""

    sender: str
    seq: int
    sent_at: int
    key_id: str
    signature: str
    heartbeat: bytes

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack types (`heartbeat` stays bytes: msgpack only)."""
        return asdict(self)

    @classmethod
    def from_wire(cls, data: object) -> Beat:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        f = Fields(data, "Beat")
        return cls(sender=f.get("sender", ident()), seq=f.get("seq", integer(1, MAX_SEQ)),
                   sent_at=f.get("sent_at", integer(0, MAX_COUNT * 8)),
                   key_id=f.get("key_id", text(_KEY_ID_CHARS)),
                   signature=f.get("signature", text(_SIGNATURE_CHARS)),
                   heartbeat=f.get("heartbeat", blob(MAX_BEAT_BYTES)))
