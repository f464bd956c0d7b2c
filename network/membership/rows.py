"""The rows of `GET /v1/federation/peers`: one per tracked peer plus this node, and the filters."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from network.membership.table import Peer, PeerState
from network.wire.messages import Heartbeat
from swarm.errors import RequestError

FILTERS = frozenset({"min_ram_gb", "min_vram_gb", "model", "status", "idle"})
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _number(query: Mapping[str, str], key: str) -> float | None:
    raw = query.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise RequestError(f"{key} must be a non-negative number, got {raw!r}", param=key,
                           code="invalid_value")
    return value


def row_passes(row: Mapping[str, Any], query: Mapping[str, str]) -> bool:
    """True when `row` matches every filter of `query` (already checked by `check_filters`)."""
    for key, field in (("min_ram_gb", "ram_gb"), ("min_vram_gb", "vram_gb")):
        least = _number(query, key)
        if least is not None and (row[field] or 0.0) < least:
            return False
    model = query.get("model")
    if model is not None and (row["model"] or "").lower() != model.lower():
        return False
    status = query.get("status")
    if status is not None and row["state"] != status:
        return False
    idle = query.get("idle")
    return idle is None or (row["load"] == 0 and not row["queue_depth"]) == _BOOLEANS[idle]


def check_filters(query: Mapping[str, str]) -> None:
    """Raise `RequestError` (400) for an unknown filter or a bad value; see `/v1/federation/peers`."""
    unknown = sorted(set(query) - FILTERS)
    if unknown:
        raise RequestError(f"unknown filter {unknown[0]!r}; filters are {', '.join(sorted(FILTERS))}",
                           param=unknown[0], code="invalid_value")
    _number(query, "min_ram_gb")
    _number(query, "min_vram_gb")
    states = [s.value for s in PeerState]
    if "status" in query and query["status"] not in states:
        raise RequestError(f"status must be one of {', '.join(states)}", param="status",
                           code="invalid_value")
    if "idle" in query and query["idle"] not in _BOOLEANS:
        raise RequestError("idle must be true or false", param="idle", code="invalid_value")
    if "model" in query and not 0 < len(query["model"]) <= 256:
        raise RequestError("model must be 1 to 256 characters", param="model", code="invalid_value")


def self_row(beat: Heartbeat, address: str | None) -> dict[str, Any]:
    """This node's row, from its own heartbeat; `coordinator` when it leads (its own id)."""
    return {"node_id": beat.node_id, "self": True, "state": PeerState.ALIVE.value,
            "address": address, "api_port": beat.api_port,
            "model": beat.model_id, "load": beat.load, "queue_depth": beat.queue_depth,
            "bench_score": beat.bench_score, "ram_gb": beat.ram_gb, "vram_gb": beat.vram_gb,
            "last_seen_s_ago": 0.0, "boot_id": beat.boot_id, "reason": "this node",
            "term": beat.term, "coordinator": beat.coordinator == beat.node_id,
            "solo": beat.solo, "tok_s": beat.tok_s, "tokens": beat.tokens}


def peer_row(peer: Peer, now: float) -> dict[str, Any]:
    """One `/v1/federation/peers` row for a tracked peer (heartbeat fields None until it answers);
    `coordinator` is True when its last heartbeat names itself the coordinator, `solo` when it
    leads only itself."""
    beat = peer.heartbeat
    return {"node_id": peer.node_id, "self": False, "state": peer.state.value,
            "address": peer.address.host,
            "api_port": peer.advert.api_port,
            "model": beat.model_id if beat else peer.advert.model_id,
            "load": beat.load if beat else None, "queue_depth": beat.queue_depth if beat else None,
            "bench_score": beat.bench_score if beat else peer.advert.score,
            "ram_gb": beat.ram_gb if beat else None, "vram_gb": beat.vram_gb if beat else None,
            "last_seen_s_ago": None if peer.last_ok is None else round(now - peer.last_ok, 3),
            "boot_id": peer.advert.boot_id, "reason": peer.reason,
            "term": beat.term if beat else None,
            "coordinator": bool(beat and beat.coordinator == peer.node_id),
            "solo": bool(beat and beat.solo),
            "tok_s": beat.tok_s if beat else None, "tokens": beat.tokens if beat else None}
