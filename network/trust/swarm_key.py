"""The swarm key: the shared secret that makes machines one swarm. Generated once, stored 0600.

A key is 32 random bytes written as `lsk_` + unpadded base64url (47 characters). Only its
fingerprint (16 hex digits of a domain-separated SHA-256) ever leaves the machine: in the mDNS TXT
record, in heartbeats and in the X-Swarm-Key-Id header, so a verifier can pick the right key.

Precedence for the current key: `--swarm-key` > LOCAL_SWARM_FEDERATION_SWARM_KEY >
`[federation] swarm_key` (all merged by swarm.node.config) > cache_dir/swarm.key (created on first use).
The file holds the current key on its first key line and, after a rotation, the keys it replaced
on the following ones; those and `[federation] previous_swarm_keys` are still accepted.

A key generated here is *solo* until it leaves this node: `swarm.key.solo` beside the key file
holds its fingerprint, and goes away when a member answers with the key, a joiner is given it,
the key is printed, set or rotated, or this node adopts another swarm's key by joining it. Only
a solo node asks to join another swarm (network/trust/join_target.py).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from network.trust.private_file import write_private
from swarm.errors import ConfigError

log = logging.getLogger(__name__)

PREFIX = "lsk_"
KEY_BYTES = 32
KEY_FILE = "swarm.key"
MAX_PREVIOUS = 4  # keys a rotation keeps accepting; older ones are dropped from the file
_BASE64URL_43 = re.compile(r"[A-Za-z0-9_-]{43}", re.ASCII)
_FINGERPRINT_DOMAIN = b"local-swarm swarm-key fingerprint v1\x00"
_HEADER = ("# Local Swarm swarm key. Keep it secret: it lets a machine join this swarm, vote and\n"
           "# read prompts. The first key line is the current key; any further ones are previous\n"
           "# keys, still accepted until `python main.py swarm-key --forget-previous`.\n")


class SwarmKeyError(ConfigError):
    """A swarm key or key file is unusable; the message says how to fix it (never the key)."""


def fingerprint(secret: bytes) -> str:
    """16 hex digits naming `secret` (SHA-256 over a domain-separated input; not reversible)."""
    return hashlib.sha256(_FINGERPRINT_DOMAIN + secret).hexdigest()[:16]


@dataclass(frozen=True)
class SwarmKey:
    """One key. Its repr shows the fingerprint only, so logging a key never leaks it."""

    secret: bytes = field(repr=False)
    fingerprint: str = field(init=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise SwarmKeyError(f"a swarm key has {KEY_BYTES} bytes")
        object.__setattr__(self, "fingerprint", fingerprint(self.secret))

    @classmethod
    def generate(cls) -> SwarmKey:
        """A fresh random key."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def parse(cls, text: str, where: str = "the swarm key") -> SwarmKey:
        """The key written as `lsk_...`; the error names `where`, never the text."""
        text = text.strip()
        raw = text.removeprefix(PREFIX)
        try:
            if not text.startswith(PREFIX) or _BASE64URL_43.fullmatch(raw) is None:
                raise ValueError
            secret = base64.urlsafe_b64decode(raw + "=")
            if len(secret) != KEY_BYTES:
                raise ValueError
        except (ValueError, binascii.Error):
            raise SwarmKeyError(f"{where} is not a swarm key: one looks like {PREFIX} followed "
                                "by 43 letters, digits, '-' or '_'. Print this swarm's key with "
                                "`python main.py swarm-key` on a machine that has it") from None
        return cls(secret)

    @property
    def text(self) -> str:
        """The key as users copy it: `lsk_` + base64url without padding."""
        return PREFIX + base64.urlsafe_b64encode(self.secret).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class KeyRing:
    """The key this node signs with, and the previous keys it still accepts (rotation)."""

    current: SwarmKey
    previous: tuple[SwarmKey, ...] = ()

    def __post_init__(self) -> None:
        seen = {self.current.fingerprint}
        unique = []
        for key in self.previous:
            if key.fingerprint not in seen:
                seen.add(key.fingerprint)
                unique.append(key)
        object.__setattr__(self, "previous", tuple(unique))

    @classmethod
    def generate(cls) -> KeyRing:
        """A ring of one fresh key nobody else has (a node that accepts no one)."""
        return cls(SwarmKey.generate())

    @property
    def fingerprint(self) -> str:
        """The current key's fingerprint (the one this node advertises)."""
        return self.current.fingerprint

    @property
    def accepted(self) -> frozenset[str]:
        """Fingerprints of every key accepted: current and previous."""
        return frozenset({self.current.fingerprint, *(k.fingerprint for k in self.previous)})

    def get(self, key_id: str | None) -> SwarmKey | None:
        """The accepted key with fingerprint `key_id`, if any."""
        for key in (self.current, *self.previous):
            if key.fingerprint == key_id:
                return key
        return None


@dataclass(frozen=True)
class LoadedKeys:
    """The ring and where it came from, for the startup panel and `main.py swarm-key`."""

    ring: KeyRing
    source: str  # "configured" (flag, env or config file) or "file"
    path: Path
    generated: bool = False

    @property
    def solo_path(self) -> Path:
        """The marker of a key generated here that never left this node."""
        return solo_path(self.path)

    def solo(self) -> bool:
        """True while the key is this node's own, generated here and never shared: from the key
        file, no previous keys, and the solo marker names it."""
        if self.source != "file" or self.ring.previous:
            return False
        try:
            return self.solo_path.read_text(encoding="utf-8").strip() == self.ring.fingerprint
        except OSError:
            return False

    def describe(self) -> str:
        """The startup panel's line: fingerprint and origin, never the key."""
        origin = ("new: show it with `main.py swarm-key`" if self.generated
                  else "stored" if self.source == "file" else "configured")
        previous = (f"; also accepts {len(self.ring.previous)} previous" if self.ring.previous
                    else "")
        return f"fingerprint {self.ring.fingerprint} ({origin}{previous})"


def key_path(cache_dir: Path) -> Path:
    """Where the generated key lives: cache_dir/swarm.key."""
    return cache_dir / KEY_FILE


def solo_path(path: Path) -> Path:
    """The solo marker beside the key file `path`."""
    return path.with_name(path.name + ".solo")


def end_solo(path: Path) -> bool:
    """The key in `path` has left (or may have left) this node; True when it was solo."""
    try:
        solo_path(path).unlink()
    except FileNotFoundError:
        return False
    return True


def adopt(path: Path, key: SwarmKey) -> None:
    """Store `key`, received by joining its swarm, as the only key (the solo key it replaces was
    never shared, so nothing needs it any more), mode 0600."""
    write_key_file(path, [key], replace=True)
    end_solo(path)


def read_key_file(path: Path) -> list[SwarmKey]:
    """The keys in `path` (current first); refuse a file others may read, write or own."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise
    except OSError as exc:  # a folder, no permission
        raise SwarmKeyError(f"cannot read the swarm key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "r", encoding="utf-8") as fh:
        _check_private(path, os.fstat(fh.fileno()))
        text = fh.read(64 * 1024)
    keys = [SwarmKey.parse(line, f"line {n} of {path}")
            for n, line in enumerate(text.splitlines(), 1)
            if line.strip() and not line.lstrip().startswith("#")]
    if not keys:
        raise SwarmKeyError(f"the swarm key file {path} holds no key; delete it to generate a "
                            "new one, or store this swarm's key with `python main.py swarm-key "
                            "--set -`")
    return keys


def _check_private(path: Path, st: os.stat_result) -> None:
    if os.name != "posix":
        return  # Windows: the file inherits the profile folder's ACL
    if st.st_mode & 0o077:
        raise SwarmKeyError(f"the swarm key file {path} is accessible to group or others (mode "
                            f"{stat.S_IMODE(st.st_mode):04o}); anyone who reads it can join the "
                            f"swarm. Fix it with: chmod 600 {path} (and consider `python main.py "
                            "swarm-key --rotate` if others may have read it)")
    if st.st_uid != os.geteuid():
        raise SwarmKeyError(f"the swarm key file {path} belongs to another user (uid "
                            f"{st.st_uid}); it must belong to the user running the node")


def write_key_file(path: Path, keys: list[SwarmKey], *, replace: bool) -> bool:
    """Write `keys` (current first) with mode 0600, atomically; False when `replace` is False and
    the file already exists (another process created it first)."""
    text = _HEADER + keys[0].text + "\n"
    if keys[1:]:
        text += "# previous keys, still accepted:\n" + "".join(k.text + "\n" for k in keys[1:])
    return write_private(path, text.encode("utf-8"), replace=replace)


def load_keys(swarm_key: str, previous: tuple[str, ...], cache_dir: Path, *,
              create: bool = True) -> LoadedKeys:
    """The node's ring: the configured key (`[federation] swarm_key`, already merged from flag,
    env and file), else cache_dir/swarm.key, generated on first use when `create` is True."""
    path = key_path(cache_dir)
    extra = tuple(SwarmKey.parse(text, f"previous_swarm_keys[{i}]")
                  for i, text in enumerate(previous))
    if swarm_key:
        current = SwarmKey.parse(swarm_key, "the configured swarm key (--swarm-key, "
                                            "LOCAL_SWARM_FEDERATION_SWARM_KEY or [federation] "
                                            "swarm_key)")
        return LoadedKeys(KeyRing(current, extra), "configured", path)
    generated = False
    try:
        stored = read_key_file(path)
    except FileNotFoundError:
        if not create:
            raise SwarmKeyError(f"no swarm key yet: {path} does not exist. Run "
                                "`python main.py swarm-key` to create one") from None
        generated = write_key_file(path, [SwarmKey.generate()], replace=False)
        stored = read_key_file(path)
        if generated:
            write_private(solo_path(path), (stored[0].fingerprint + "\n").encode("ascii"))
            log.info("generated a new swarm key (fingerprint %s) in %s; show it with "
                     "`python main.py swarm-key` and copy it to the other machines",
                     stored[0].fingerprint, path)
    return LoadedKeys(KeyRing(stored[0], (*stored[1:], *extra)), "file", path, generated)


def store_new_current(path: Path, new: SwarmKey) -> list[SwarmKey]:
    """Make `new` the stored current key, keeping the replaced ones as previous (at most
    `MAX_PREVIOUS`); returns the keys now in the file."""
    try:
        old = read_key_file(path)
    except FileNotFoundError:
        old = []
    keys = [new, *[k for k in old if k.fingerprint != new.fingerprint]][:1 + MAX_PREVIOUS]
    write_key_file(path, keys, replace=True)
    end_solo(path)
    return keys


def forget_previous(path: Path) -> list[SwarmKey]:
    """Keep only the stored current key; returns the keys dropped."""
    keys = read_key_file(path)
    if len(keys) > 1:
        write_key_file(path, keys[:1], replace=True)
    return keys[1:]
