"""The span map as a person sees it: which node serves which blocks, replicas and gaps (the
JSON of GET /v1/federation/spans); pure, so it renders to text in tests."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text


def render_spans(view: Mapping[str, Any]) -> Group:
    """A table of the plan's spans with this node's server state, and a line on coverage."""
    plan = view.get("plan")
    me = view.get("node") or {}
    if not plan:
        return Group(Text("spans: no span map yet (waiting for the coordinator's plan)"))
    server = me.get("server") or {}
    table = Table(title=f"spans of {plan['model']} ({plan['num_blocks']} blocks)", expand=False)
    for column, justify in (("node", "left"), ("blocks", "right"), ("count", "right"),
                            ("replicas", "right"), ("state", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for item in plan["assignments"]:
        start, end = item["start"], item["end"]
        replicas = min(sum(1 for a in plan["assignments"] if a["start"] <= b < a["end"])
                       for b in range(start, end))
        state = server.get("state", "") if item["node_id"] == me.get("node_id") else ""
        table.add_row(item["node_id"], f"{start}:{end}", str(end - start), str(replicas), state)
    gaps = plan.get("gaps") or []
    line = ("every block served" if not gaps else
            "not served: " + ", ".join(f"{a}:{b}" for a, b in gaps))
    return Group(table, Text(f"spans: {line}; DHT {' '.join(plan['initial_peers'][:1])}"))
