"""How peers look to a person: the rich table of `/v1/federation/peers` rows, and why one is missing."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

_STATE_STYLE = {"alive": "green", "self": "bold cyan", "joining": "yellow", "suspect": "yellow",
                "dead": "red", "foreign": "magenta", "pending": "blue"}


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None or value == "" else fmt.format(value)


def render_peers(rows: Sequence[Mapping[str, Any]], title: str = "peers") -> Table:
    """A table of peer rows (the JSON rows of /v1/federation/peers); pure, so it renders to text."""
    table = Table(title=title, expand=False)
    for column, justify in (("node", "left"), ("coord", "center"), ("state", "left"),
                            ("address", "left"), ("model", "left"), ("load", "right"),
                            ("queue", "right"),
                            ("score", "right"), ("last seen", "right"), ("note", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        state = "self" if row.get("self") else str(row.get("state", "?"))
        style = _STATE_STYLE.get(state, "")
        address = f"{row.get('address') or '-'}:{row.get('api_port') or '-'}"
        seen = row.get("last_seen_s_ago")
        table.add_row(
            str(row.get("node_id", "?")),
            ("alone" if row.get("solo") else "yes") if row.get("coordinator") is True else "",
            f"[{style}]{state}[/]" if style else state, address,
            _cell(row.get("model")), _cell(row.get("load"), "{:.0%}"),
            _cell(row.get("queue_depth")), _cell(row.get("bench_score"), "{:.1f}"),
            "now" if row.get("self") else _cell(seen, "{:.1f}s ago"), _cell(row.get("reason")))
    return table


def missing_peer_hints(rows: Sequence[Mapping[str, Any]],
                       discovery: Mapping[str, Any]) -> list[str]:
    """Sentences that explain why an expected peer may be missing, from what this node sees."""
    hints: list[str] = []
    if not discovery.get("mdns"):
        reason = discovery.get("mdns_reason") or "turned off (--no-mdns)"
        hints.append(f"mDNS discovery is not running: {reason}. Peers are found only through "
                     "--peer / --peers-file.")
    for row in rows:
        state, reason = row.get("state"), row.get("reason") or ""
        who = f"{row.get('node_id')} at {row.get('address')}:{row.get('api_port')}"
        if state == "foreign":
            hints.append(f"{who} is foreign and never used: {reason}.")
        elif state == "pending":
            hints.append(f"{who} holds the swarm key but is not approved, so it is never used: "
                         f"if you know that machine, run `python main.py peers approve "
                         f"{row.get('node_id')}` here.")
        elif state == "dead" and row.get("last_seen_s_ago") is None:
            hints.append(f"{who} was discovered but its API port never answered ({reason}); "
                         "check its firewall and --host.")
    for node_id, reason in (discovery.get("ignored") or {}).items():
        if "our id" in reason:
            hints.append(f"another machine uses this node's id {node_id!r}: give each machine "
                         "its own (delete cache_dir/node-id on a cloned machine, or --node-id).")
        else:
            hints.append(f"{node_id} is not tracked: {reason}.")
    for address, reason in (discovery.get("unanswered") or {}).items():
        hints.append(f"manual peer {address} does not answer: {reason}.")
    if not any(not r.get("self") for r in rows):
        hints.append("No peer seen yet. Check that the other machines run with --federation on "
                     "the same LAN, that UDP port 5353 (mDNS) is not blocked, or list them with "
                     "--peer HOST:PORT.")
    return hints


async def show_live(rows: Callable[[], Sequence[Mapping[str, Any]]], changed: asyncio.Event,
                    console: Console, refresh_s: float = 1.0) -> None:
    """Keep a live peer table at the bottom of the terminal until cancelled (redrawn on change
    and every `refresh_s` so 'last seen' ages; rich's Live redraws in place, without flicker)."""
    with Live(render_peers(rows()), console=console, auto_refresh=False,
              transient=True) as live:
        while True:
            try:
                await asyncio.wait_for(changed.wait(), timeout=refresh_s)
            except TimeoutError:
                pass
            changed.clear()
            live.update(render_peers(rows()), refresh=True)
