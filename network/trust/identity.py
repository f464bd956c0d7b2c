"""Who this node is on the LAN: a node id that survives restarts and a boot id that does not."""
from __future__ import annotations

import logging
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from network.wire.fields import ID_PATTERN, is_identifier
from swarm.errors import ConfigError

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class NodeIdentity:
    """This node's ids as peers see them; `fingerprint` names its swarm key (never the key)."""

    node_id: str
    boot_id: str
    name: str
    protocol: int = PROTOCOL_VERSION
    fingerprint: str = ""


def _stored_node_id(cache_dir: Path) -> str:
    path = cache_dir / "node-id"
    try:
        value = path.read_text().strip()
        if value:
            if not is_identifier(value):
                raise ConfigError(f"{path} holds {value[:80]!r}, which peers would refuse as a "
                                  f"node id ({ID_PATTERN.pattern}); fix or delete the file")
            return value
    except FileNotFoundError:
        pass
    value = secrets.token_hex(6)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    log.info("new node id %s (stored in %s)", value, path)
    return value


def load_identity(cache_dir: Path, configured_id: str = "", fingerprint: str = "") -> NodeIdentity:
    """The configured node id, else the one stored in `cache_dir` (created once), and a new boot
    id; `fingerprint` is the current swarm key's (network.trust.swarm_key.fingerprint). An id
    that peers would refuse (see network/wire/fields.py) is a `ConfigError`."""
    if configured_id and not is_identifier(configured_id):
        raise ConfigError(f"federation.node_id = {configured_id!r} is not a node id peers accept "
                          f"({ID_PATTERN.pattern})")
    node_id = configured_id or _stored_node_id(cache_dir)
    return NodeIdentity(node_id=node_id, boot_id=secrets.token_hex(4),
                        name=socket.gethostname().split(".")[0][:40] or "node",
                        fingerprint=fingerprint)
