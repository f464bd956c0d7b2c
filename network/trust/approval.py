"""Peer approval (`--approve-peers`): the approved node ids on disk, and the local-only route that
changes them (`python main.py peers approve ID` / `peers revoke ID`).

Approval is per node id. Anyone holding the swarm key can claim any node id, so it keeps out
machines that merely have the key (a copied config, a stale laptop), not a malicious key holder.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from network.api.limits import parse_json_body
from network.membership.table import Peer
from network.trust.private_file import write_private
from network.wire.fields import is_identifier
from network.wire.paths import APPROVE_PATH
from swarm.errors import RequestError

log = logging.getLogger(__name__)

APPROVED_FILE = "approved-peers.json"
MAX_APPROVED = 1024
_FORMAT = 1


class ApprovalError(RequestError):
    """The approved set cannot take this change: a malformed node id, or the set is full."""


def approved_path(cache_dir: Path) -> Path:
    """Where a node keeps its approved node ids."""
    return cache_dir / APPROVED_FILE


class ApprovedPeers:
    """Approved node ids, persisted as JSON at `path` (mode 0600, replaced atomically) on every
    change; `path` None keeps them in memory only. At most `limit` ids."""

    def __init__(self, path: Path | None = None, ids: Iterable[str] = (),
                 limit: int = MAX_APPROVED) -> None:
        self.path = path
        self.limit = limit
        self._ids: set[str] = set()
        for node_id in ids:
            if is_identifier(node_id) and len(self._ids) < limit:
                self._ids.add(node_id)

    @classmethod
    def load(cls, path: Path, limit: int = MAX_APPROVED) -> ApprovedPeers:
        """The store kept at `path`: empty when the file is absent; an unreadable file is moved
        aside (`.bad`) and logged, leaving nobody approved (fail closed)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            ids = data["approved"] if isinstance(data, dict) else None
            if not isinstance(ids, list):
                raise ValueError("no 'approved' list")
        except FileNotFoundError:
            return cls(path, (), limit)
        except (OSError, ValueError, KeyError) as exc:
            bad = path.with_name(path.name + ".bad")
            log.error("cannot read the approved peers in %s (%s); moved it to %s: no peer is "
                      "approved until you approve them again", path, exc, bad)
            try:
                os.replace(path, bad)
            except OSError:
                pass
            return cls(path, (), limit)
        skipped = [i for i in ids if not is_identifier(i)]
        if skipped:
            log.warning("%s: ignoring %d entries that are not node ids", path, len(skipped))
        store = cls(path, (i for i in ids if is_identifier(i)), limit)
        if len(store) < len(ids) - len(skipped):
            log.warning("%s: only the first %d approved ids are kept", path, limit)
        return store

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> tuple[str, ...]:
        """The approved node ids, sorted."""
        return tuple(sorted(self._ids))

    def add(self, node_id: str) -> bool:
        """Approve `node_id` and save; False when it already was. ApprovalError on a malformed
        id or a full set; OSError (change undone) when the file cannot be written."""
        if not is_identifier(node_id):
            raise ApprovalError(f"not a node id: {str(node_id)[:80]!r} (1 to 64 letters, "
                                "digits and ._:- starting with a letter or digit)")
        if node_id in self._ids:
            return False
        if len(self._ids) >= self.limit:
            raise ApprovalError(f"already {self.limit} approved node ids; revoke some first")
        self._ids.add(node_id)
        self._save_or_undo(lambda: self._ids.discard(node_id))
        return True

    def remove(self, node_id: str) -> bool:
        """Withdraw the approval of `node_id` and save; False when it was not approved."""
        if node_id not in self._ids:
            return False
        self._ids.discard(node_id)
        self._save_or_undo(lambda: self._ids.add(node_id))
        return True

    def _save_or_undo(self, undo: Callable[[], object]) -> None:
        try:
            self._save()
        except OSError:
            undo()
            raise

    def _save(self) -> None:
        if self.path is None:
            return
        text = json.dumps({"version": _FORMAT, "approved": self.ids()}, indent=1) + "\n"
        write_private(self.path, text.encode("utf-8"))


def is_loopback(remote: str | None) -> bool:
    """True when `remote` (aiohttp's `request.remote`) is this machine: 127.0.0.0/8 or ::1."""
    try:
        address = ipaddress.ip_address((remote or "").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


# decide(node_id, code, approved): the join request's outcome, or None when it has none here
JoinDecision = Callable[[str, str | None, bool], dict[str, Any] | None]


class ApprovalRoutes:
    """POST /v1/federation/approve {"node_id": ID, "approved": true|false, "code": C}, from this
    machine only: approve (default) or revoke a peer; `reconsider(ID)` applies it and returns the
    peer. When `joins` holds a join request of ID, approving it seals the swarm key to that
    machine (the one showing `code`, when given) and revoking refuses it."""

    def __init__(self, store: ApprovedPeers, reconsider: Callable[[str], Peer | None], *,
                 enforced: bool = True, joins: JoinDecision | None = None) -> None:
        self.store = store
        self.reconsider = reconsider
        self.enforced = enforced  # False: the node runs without --approve-peers (shown, saved)
        self.joins = joins

    def add_to(self, app: web.Application) -> None:
        """Register the route."""
        app.router.add_post(APPROVE_PATH, self.approve)

    async def approve(self, request: web.Request) -> web.Response:
        """Approve or revoke one node id; 403 unless the caller is on this machine."""
        if not is_loopback(request.remote):
            raise RequestError("peers can only be approved from the node's own machine "
                               "(`python main.py peers approve ID` there)", status=403,
                               code="not_local", type_="permission_error")
        node_id, approved, code = _parse(parse_json_body(await request.read()))
        join = self.joins(node_id, code, approved) if self.joins is not None else None
        if join is not None:
            peer = self.reconsider(node_id)
            return web.json_response({"node_id": node_id, "approved": approved, "join": join,
                                      "state": peer.state.value if peer else None,
                                      "approve_peers": self.enforced})
        try:
            changed = self.store.add(node_id) if approved else self.store.remove(node_id)
        except ApprovalError as exc:
            status = 409 if is_identifier(node_id) else 400
            raise RequestError(str(exc), status=status, param="node_id",
                               code="invalid_value" if status == 400 else "approvals_full") from None
        except OSError as exc:
            log.error("cannot save the approved peers to %s: %s", self.store.path, exc)
            raise RequestError(f"could not save the approval: {exc.strerror or exc}",
                               status=500, code="not_saved", type_="server_error") from None
        if changed:
            log.info("peer %s %s from %s", node_id, "approved" if approved else "no longer approved",
                     request.remote)
        peer = self.reconsider(node_id)
        return web.json_response({"node_id": node_id, "approved": approved, "join": None,
                                  "state": peer.state.value if peer else None,
                                  "approve_peers": self.enforced})


def _parse(body: Any) -> tuple[str, bool, str | None]:
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object: {\"node_id\": \"ID\"}",
                           code="invalid_value")
    node_id, approved = body.get("node_id"), body.get("approved", True)
    if not is_identifier(node_id):
        raise RequestError("node_id must be a node id: 1 to 64 letters, digits and ._:- "
                           "starting with a letter or digit", param="node_id",
                           code="invalid_value")
    if not isinstance(approved, bool):
        raise RequestError("approved must be true or false", param="approved",
                           code="invalid_value")
    code = body.get("code")
    if code is not None and (not isinstance(code, str) or not 0 < len(code) <= 32):
        raise RequestError("code must be the join code a machine shows, as 4821-0937",
                           param="code", code="invalid_value")
    return node_id, approved, code
