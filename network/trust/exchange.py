"""The join exchange's cryptography: a commitment, a short code both screens show, and the swarm
key sealed to the joiner. Pure: randomness comes in as arguments (the joiner's one-time key and
nonce), so every step is a function of its inputs.

    joiner:  one-time X25519 key pair (j, J), nonce N; C = SHA-256(tag, node id, J, N)
             -> hello(C)
    member:  m = HKDF(swarm key, salt C): every member of the swarm derives the same one-time key
             pair (m, M) for this commitment without talking to the others
             <- offer(M)
    joiner:  -> reveal(J, N); the member checks C. Now
             T    = SHA-256(tag, fingerprint, node id, C, J, N, M)    (the transcript)
             code = 8 digits of SHA-256(code tag, T), shown on both screens
    member:  on approval, k = HKDF(X25519(m, J), salt T), sealed = ChaCha20-Poly1305(k, swarm
             key, associated data T)
    joiner:  opens it with X25519(j, M), and keeps the key only when its fingerprint is the one
             it asked for.

Why it holds (THREAT_MODEL.md, "Joining by approval"): the joiner commits to J before it sees M,
and M is fixed by C, so a device in the middle that runs one exchange with each side cannot
steer the two codes to match (a 1 in 10^8 chance per try, and each try is a visible request);
only the holder of j opens the sealed key, so a device that answers in the joiner's place gets
nothing a human did not approve against the joiner's own screen; and only a holder of the swarm
key can send a key with that swarm's fingerprint, so a device that poses as the swarm cannot
pull the joiner into a swarm of its own under that name.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from network.trust.swarm_key import KEY_BYTES, SwarmKey
from network.wire.pairing import (
    NONCE_BYTES,
    PUBLIC_KEY_BYTES,
    JoinHello,
    JoinOffer,
    JoinReveal,
    JoinStatus,
)
from swarm.errors import PeerError

CODE_DIGITS = 8
_COMMIT = b"local-swarm/1 join commitment"
_MEMBER = b"local-swarm/1 join member key"
_TRANSCRIPT = b"local-swarm/1 join transcript"
_CODE = b"local-swarm/1 join code"
_SEAL = b"local-swarm/1 join seal"
_AEAD_NONCE = bytes(12)  # every sealing key is used for one transcript only


class PairingError(PeerError):
    """A join message does not hold up: a commitment that does not open, a key that is not a
    usable X25519 point, a sealed key that does not open or names another swarm."""


def _hkdf(secret: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


def _public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


def _shared(private: X25519PrivateKey, public: bytes) -> bytes:
    try:
        return private.exchange(X25519PublicKey.from_public_bytes(public))
    except ValueError as exc:  # a low-order point gives an all-zero secret: refused
        raise PairingError("the exchange key is not a usable X25519 public key") from exc


def _framed(*parts: bytes) -> bytes:
    """Length-prefixed concatenation, so no two different part lists hash alike."""
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def commitment(node_id: str, joiner_key: bytes, nonce: bytes) -> bytes:
    """The joiner's commitment to its one-time public key and nonce."""
    return hashlib.sha256(_framed(_COMMIT, node_id.encode(), joiner_key, nonce)).digest()


def member_private(key: SwarmKey, commit: bytes) -> X25519PrivateKey:
    """The member side's one-time key for `commit`: the same on every holder of `key`."""
    return X25519PrivateKey.from_private_bytes(_hkdf(key.secret, commit, _MEMBER))


def member_public(key: SwarmKey, commit: bytes) -> bytes:
    """The public half of `member_private`, as a JoinOffer carries it."""
    return _public(member_private(key, commit))


def transcript(swarm: str, node_id: str, commit: bytes, joiner_key: bytes, nonce: bytes,
               member_key: bytes) -> bytes:
    """The hash of everything both sides agreed on; the code and the seal are bound to it."""
    return hashlib.sha256(_framed(_TRANSCRIPT, swarm.encode(), node_id.encode(), commit,
                                  joiner_key, nonce, member_key)).digest()


def short_code(transcript_hash: bytes) -> str:
    """The code both screens show: 8 digits, as 4821-0937."""
    digest = hashlib.sha256(_framed(_CODE, transcript_hash)).digest()
    digits = f"{int.from_bytes(digest[:8], 'big') % 10 ** CODE_DIGITS:0{CODE_DIGITS}d}"
    return f"{digits[:4]}-{digits[4:]}"


def normal_code(text: str) -> str | None:
    """A code as typed (`48210937`, `4821 0937`) in its shown form, or None when it is not one."""
    digits = "".join(c for c in text if c not in " -")
    if len(digits) != CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        return None
    return f"{digits[:4]}-{digits[4:]}"


def check_reveal(reveal: JoinReveal, expected_commitment: bytes) -> None:
    """PairingError unless the revealed key and nonce open the commitment made in the hello."""
    opened = commitment(reveal.node_id, reveal.joiner_key, reveal.nonce)
    if not hmac.compare_digest(opened, expected_commitment):
        raise PairingError("the revealed key does not match the commitment of the join request")


def seal(key: SwarmKey, reveal: JoinReveal, swarm: str) -> tuple[bytes, str]:
    """(the swarm key sealed to the revealed joiner key, the code of this exchange)."""
    private = member_private(key, reveal.commitment)
    t = transcript(swarm, reveal.node_id, reveal.commitment, reveal.joiner_key, reveal.nonce,
                   _public(private))
    k = _hkdf(_shared(private, reveal.joiner_key), t, _SEAL)
    return ChaCha20Poly1305(k).encrypt(_AEAD_NONCE, key.secret, t), short_code(t)


def member_code(key: SwarmKey, reveal: JoinReveal, swarm: str) -> str:
    """The code a member shows for a revealed request (the joiner shows the same)."""
    return seal(key, reveal, swarm)[1]


@dataclass
class JoinerExchange:
    """The joiner's side of one attempt to join swarm `swarm`, from its one-time `private` key
    bytes and `nonce` (random, given by the caller)."""

    node_id: str
    name: str
    swarm: str
    private: bytes
    nonce: bytes
    member_key: bytes | None = None  # from the first offer; every member must send the same

    def __post_init__(self) -> None:
        if len(self.private) != 32 or len(self.nonce) != NONCE_BYTES:
            raise ValueError("a joiner needs 32 private key bytes and a 16-byte nonce")
        self._key = X25519PrivateKey.from_private_bytes(self.private)
        self.public = _public(self._key)
        self.commitment = commitment(self.node_id, self.public, self.nonce)

    def hello(self) -> JoinHello:
        """The first message: who asks, which swarm, and the commitment."""
        return JoinHello(node_id=self.node_id, name=self.name, swarm=self.swarm,
                         commitment=self.commitment)

    def offered(self, offer: JoinOffer) -> str:
        """Take a member's offer; the code to show. PairingError when it names another swarm or
        disagrees with an earlier member's (then some device poses as this swarm)."""
        if offer.swarm != self.swarm:
            raise PairingError(f"{offer.node_id} answered for swarm {offer.swarm}, not "
                               f"{self.swarm}")
        if len(offer.member_key) != PUBLIC_KEY_BYTES:
            raise PairingError("the member key is not an X25519 public key")
        if self.member_key is not None and not hmac.compare_digest(offer.member_key,
                                                                  self.member_key):
            raise PairingError(f"{offer.node_id} answered unlike another member of swarm "
                               f"{self.swarm}: a device on the LAN poses as that swarm")
        self.member_key = offer.member_key
        return self.code

    @property
    def transcript(self) -> bytes:
        """The transcript hash (after an offer)."""
        if self.member_key is None:
            raise PairingError("no member has answered yet")
        return transcript(self.swarm, self.node_id, self.commitment, self.public, self.nonce,
                          self.member_key)

    @property
    def code(self) -> str:
        """The code this machine shows (the members show the same one)."""
        return short_code(self.transcript)

    def reveal(self) -> JoinReveal:
        """The second message: the committed key and nonce."""
        return JoinReveal(node_id=self.node_id, commitment=self.commitment,
                          joiner_key=self.public, nonce=self.nonce)

    def open(self, status: JoinStatus) -> SwarmKey:
        """The swarm key from an approved status; PairingError when it does not open or is not
        the key of the swarm asked for."""
        if status.state != "approved" or self.member_key is None:
            raise PairingError("the request is not approved")
        t = self.transcript
        k = _hkdf(_shared(self._key, self.member_key), t, _SEAL)
        try:
            secret = ChaCha20Poly1305(k).decrypt(_AEAD_NONCE, status.sealed, t)
        except InvalidTag:
            raise PairingError("the sealed swarm key does not open with this exchange") from None
        if len(secret) != KEY_BYTES:
            raise PairingError("the sealed swarm key has the wrong size")
        key = SwarmKey(secret)
        if key.fingerprint != self.swarm:
            raise PairingError(f"the key sent is of swarm {key.fingerprint}, not {self.swarm}")
        return key
