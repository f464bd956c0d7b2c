"""A pushed heartbeat: the one datagram a node sends each peer every heartbeat interval over UDP,
on the port number of its API.

Its layout is fixed, so a receiver checks the signature before it parses anything else:

    "LSB1" | key id (8 bytes) | MAC (32 bytes) | seq (u64) | sent_at (u64) | sender length (u8)
    | sender (UTF-8) | heartbeat (codec bytes of the sender's `Heartbeat`, msgpack, no nonce)

All integers are big-endian. The MAC (network/trust/signing.py `beat_mac`) covers everything after
it. `seq` counts up from 1 through one boot and `sent_at` is the sender's wall clock (whole
seconds), so a receiver refuses replays and stale copies without asking back. Pure: no I/O.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from network.wire.fields import MAX_BEAT_BYTES, WireDecodeError, is_identifier

MAGIC = b"LSB1"
KEY_ID_BYTES = 8
MAC_BYTES = 32
_COUNTS = struct.Struct(">QQB")
_HEAD = len(MAGIC) + KEY_ID_BYTES + MAC_BYTES
MAX_SEQ = 2**63 - 1
BEAT_HEAD_BYTES = _HEAD + _COUNTS.size  # what a datagram carries besides its sender and heartbeat


@dataclass(frozen=True)
class Beat:
    """One heartbeat datagram's content; `signed` is the part its MAC covers."""

    sender: str
    seq: int
    sent_at: int
    heartbeat: bytes

    @property
    def signed(self) -> bytes:
        """The bytes the MAC covers (everything after it in the datagram)."""
        sender = self.sender.encode("utf-8")
        return _COUNTS.pack(self.seq, self.sent_at, len(sender)) + sender + self.heartbeat

    def pack(self, key_id: str, mac: bytes) -> bytes:
        """The datagram, signed with the key `key_id` (16 hex digits) as `mac`."""
        data = MAGIC + bytes.fromhex(key_id) + mac + self.signed
        if len(data) > MAX_BEAT_BYTES:
            raise ValueError(f"heartbeat datagram of {len(data)} bytes, over {MAX_BEAT_BYTES}")
        return data


@dataclass(frozen=True)
class Datagram:
    """A received datagram split into its parts; its `beat` is unauthenticated until the MAC over
    `signed` verifies."""

    key_id: str
    mac: bytes
    signed: bytes
    beat: Beat


def unpack(data: bytes) -> Datagram:
    """Split a received datagram; every way it can be malformed raises `WireDecodeError`."""
    if len(data) > MAX_BEAT_BYTES:
        raise WireDecodeError(f"datagram of {len(data)} bytes is over {MAX_BEAT_BYTES}")
    if len(data) < _HEAD + _COUNTS.size or not data.startswith(MAGIC):
        raise WireDecodeError("not a heartbeat datagram")
    key_id = data[len(MAGIC):len(MAGIC) + KEY_ID_BYTES].hex()
    mac = data[len(MAGIC) + KEY_ID_BYTES:_HEAD]
    signed = data[_HEAD:]
    seq, sent_at, size = _COUNTS.unpack_from(signed)
    start = _COUNTS.size
    try:
        sender = signed[start:start + size].decode("utf-8")
    except UnicodeDecodeError:
        raise WireDecodeError("Beat.sender: not UTF-8") from None
    if len(signed) < start + size or not is_identifier(sender):
        raise WireDecodeError("Beat.sender: not a node id")
    if not 1 <= seq <= MAX_SEQ:
        raise WireDecodeError("Beat.seq: out of range")
    return Datagram(key_id, mac, signed, Beat(sender, seq, sent_at, signed[start + size:]))
