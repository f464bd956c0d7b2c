"""The swarm at a glance in the terminal: the same snapshot the dashboard shows
(network/api/dashboard/snapshot.py), rendered by pure functions, so tests render it to text.
`main.py status` prints it once; the node's live view redraws it on every change."""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from network.federation.changes import Changes
from swarm.node.peer_view import join_lines, render_peers

MAX_REQUESTS = 8  # requests the terminal lists (the page shows all the ledger keeps)


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def render_headline(snap: Mapping[str, Any]) -> Text:
    """One line: who sees the swarm, how many nodes are alive, the coordinator, total tok/s."""
    summary = snap.get("summary") or {}
    coordinator = (f"coordinator {snap['coordinator']} (term {snap.get('term')})"
                   if snap.get("coordinator") else "no coordinator")
    return Text(f"seen by {snap.get('node_id')}: {summary.get('alive', 0)} of "
                f"{summary.get('nodes', 0)} node(s) alive, {coordinator}, "
                f"{summary.get('tok_s', 0.0):.1f} tok/s")


def render_span_map(spans: Mapping[str, Any] | None, width: int = 60) -> RenderableType:
    """Each node's blocks as a bar over the model's blocks, and the gaps (red)."""
    if not spans:
        return Text("spans: none (the swarm serves whole models)", style="dim")
    blocks = max(int(spans.get("num_blocks") or 0), 1)
    table = Table(title=f"spans of {spans.get('model')} ({blocks} blocks)", expand=False)
    table.add_column("node")
    table.add_column("blocks", justify="right")
    table.add_column("map")
    table.add_column("state")

    def bar(start: int, end: int, char: str, style: str) -> Text:
        cells = [int(start * width / blocks), max(int(end * width / blocks),
                                                  int(start * width / blocks) + 1)]
        return Text.assemble((" " * cells[0], ""), (char * (cells[1] - cells[0]), style),
                             (" " * (width - cells[1]), ""))

    for item in spans.get("assignments") or ():
        style = "green" if item.get("live") else "red"
        table.add_row(str(item["node_id"]), f"{item['start']}:{item['end']}",
                      bar(item["start"], item["end"], "█", style),
                      Text(str(item.get("state")), style=style))
    gaps = spans.get("gaps") or []
    marks = [" "] * width
    for start, end in gaps:
        first = int(start * width / blocks)
        for i in range(first, max(int(end * width / blocks), first + 1)):
            marks[min(i, width - 1)] = "░"
    coverage = Text("".join(marks), style="bold red")
    table.add_row("coverage", "", coverage,
                  Text("gaps " + ", ".join(f"{a}:{b}" for a, b in gaps), style="bold red")
                  if gaps else Text("every block served", style="green"))
    return table


def render_requests(requests: Sequence[Mapping[str, Any]]) -> RenderableType:
    """The last requests: strategy, status, winner, and each candidate's node, tokens and vote."""
    if not requests:
        return Text("requests: none yet", style="dim")
    table = Table(title="last requests", expand=False)
    for column in ("time", "strategy", "api", "status", "took", "tokens", "winner", "candidates"):
        table.add_column(column)
    for req in list(requests)[:MAX_REQUESTS]:
        candidates = []
        for c in req.get("candidates") or ():
            vote = (f" votes {c['votes']:.2f}" if c.get("votes") is not None else
                    f" score {c['score']:.2f}" if c.get("score") is not None else "")
            mark = "*" if c.get("winner") else ("!" if c.get("error") else "")
            candidates.append(f"{mark}{c.get('node')} {c.get('tokens')}t{vote}")
        status = req.get("status", 0)
        table.add_row(datetime.fromtimestamp(req.get("at", 0)).strftime("%H:%M:%S"),
                      str(req.get("strategy")), f"{req.get('api')} {req.get('endpoint')}",
                      Text(str(status), style="red" if status >= 400 else "green"),
                      _ms(req.get("duration_ms")), str(req.get("completion_tokens", 0)),
                      str(req.get("winner") or req.get("forwarded_to") or "-"),
                      ", ".join(candidates) or (req.get("error") or "-")[:60])
    return table


def render_usage(usage: Mapping[str, Any]) -> RenderableType:
    """Requests and tokens by strategy, and tokens by the node that generated them."""
    table = Table(title="usage", expand=False)
    for column in ("by", "name", "requests", "errors", "candidates", "wins", "tokens"):
        table.add_column(column, justify="left" if column in ("by", "name") else "right")
    for name, t in (usage.get("by_strategy") or {}).items():
        table.add_row("strategy", name, str(t["requests"]), str(t["errors"]), "", "",
                      str(t["completion_tokens"]))
    for name, t in (usage.get("by_node") or {}).items():
        table.add_row("node", name, "", "", str(t["candidates"]), str(t["wins"]),
                      str(t["tokens"]))
    return table


def render_swarm(snap: Mapping[str, Any]) -> Group:
    """The whole picture: headline, nodes, join requests, span map, last requests, usage."""
    joins = [Text(line, style="yellow") for line in join_lines(snap.get("joins") or {})]
    return Group(render_headline(snap), render_peers(snap.get("nodes") or [], title="nodes"),
                 *joins,
                 render_span_map(snap.get("spans")), render_requests(snap.get("requests") or []),
                 render_usage(snap.get("usage") or {}))


async def show_live(snapshot: Callable[[], Mapping[str, Any]], changes: Changes,
                    console: Console, refresh_s: float = 1.0) -> None:
    """Keep the swarm's picture at the bottom of the terminal until cancelled: redrawn on every
    change (its own place in `changes`, so other watchers miss nothing) and every `refresh_s` so
    'last seen' ages; rich's Live redraws in place, without flicker."""
    seen = changes.version
    with Live(render_swarm(snapshot()), console=console, auto_refresh=False,
              transient=True) as live:
        while True:
            seen = await changes.wait_newer(seen, refresh_s)
            live.update(render_swarm(snapshot()), refresh=True)
