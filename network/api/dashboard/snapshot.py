"""The swarm as one JSON snapshot: every node, the coordinator, the span map with its gaps, the
last requests and the usage. Pure functions of what the node knows (no clock, no I/O), so the
page (network/api/dashboard/static/), `main.py status` and the live terminal view
(swarm/node/swarm_view.py) all show the same picture, and tests render it to text.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DEAD_STATES = frozenset({"dead", "foreign", "pending"})  # nodes that serve no block


def _ranges(flags: Sequence[bool]) -> list[list[int]]:
    """[start, end) ranges of the True runs of `flags`."""
    out: list[list[int]] = []
    for i, flag in enumerate(flags):
        if flag and out and out[-1][1] == i:
            out[-1][1] = i + 1
        elif flag:
            out.append([i, i + 1])
    return out


def span_map(plan: Mapping[str, Any] | None,
             states: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The plan's layer spans (`plan["spans"]`, network/wire/spans.py), with each assignment's
    node state and the coverage: `gaps` are the blocks no live node serves (a span on a dead
    node is a gap too), `replicas` the live servers of each block. None without spans."""
    spans = (plan or {}).get("spans")
    if not isinstance(spans, Mapping):
        return None
    blocks = int(spans.get("num_blocks") or 0)
    states = states or {}
    assignments = []
    replicas = [0] * blocks
    for item in spans.get("assignments") or ():
        start, end = int(item["start"]), int(item["end"])
        state = states.get(str(item["node_id"]), "unknown")
        live = state not in DEAD_STATES
        assignments.append({"node_id": item["node_id"], "start": start, "end": end,
                            "state": state, "live": live})
        for block in range(max(start, 0), min(end, blocks)):
            replicas[block] += live
    assignments.sort(key=lambda a: (a["start"], a["end"], a["node_id"]))
    return {"model": spans.get("model", ""), "num_blocks": blocks, "assignments": assignments,
            "gaps": _ranges([r == 0 for r in replicas]), "replicas": replicas,
            "planned_gaps": [list(g) for g in spans.get("gaps") or ()]}


def _node_order(row: Mapping[str, Any]) -> tuple[int, str]:
    return (0 if row.get("self") else 1, str(row.get("node_id", "")))


def build_snapshot(*, node_id: str, rows: Sequence[Mapping[str, Any]],
                   election: Mapping[str, Any], plan: Mapping[str, Any] | None,
                   requests: Sequence[Mapping[str, Any]], usage: Mapping[str, Any],
                   version: int, now: float,
                   joins: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What one node sees of the swarm at wall-clock `now` (Unix seconds): its peer rows
    (`/v1/federation/peers`), its election status, the coordinator's plan (JSON), the last
    requests and usage of its ledger, the change `version` the page waits past, and the join
    requests (`/v1/federation/joins`: who asks to join, with which code)."""
    nodes = sorted((dict(r) for r in rows), key=_node_order)
    coordinator = election.get("coordinator")
    for row in nodes:
        row["coordinator"] = bool(row.get("coordinator")) or row.get("node_id") == coordinator
    states = {str(r.get("node_id")): ("alive" if r.get("self") else str(r.get("state")))
              for r in nodes}
    live = [r for r in nodes if states[str(r.get("node_id"))] == "alive"]
    return {
        "object": "swarm.snapshot", "node_id": node_id, "version": version, "at": now,
        "term": election.get("term"), "coordinator": coordinator, "role": election.get("role"),
        "nodes": nodes,
        "summary": {"nodes": len(nodes), "alive": len(live),
                    "tok_s": round(sum(float(r.get("tok_s") or 0.0) for r in live), 1),
                    "load": round(sum(float(r.get("load") or 0.0) for r in live)
                                  / max(len(live), 1), 3)},
        "plan": None if plan is None else {
            "term": plan.get("term"), "coordinator": plan.get("coordinator"),
            "consensus": list(plan.get("consensus") or ()),
            "members": [dict(m) for m in plan.get("members") or ()]},
        "spans": span_map(plan, states),
        "requests": [dict(r) for r in requests],
        "usage": dict(usage),
        "joins": dict(joins or {}),
    }
