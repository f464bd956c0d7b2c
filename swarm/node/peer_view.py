"""How peers look to a person: the rich table of `/v1/federation/peers` rows, and why one is missing
(the live view of the whole swarm is swarm_view.py)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.table import Table

from network.discovery.privacy import LOCAL_NETWORK_HINT

_JOIN_ADVICE = ("in another swarm: to join it, approve this machine from one of its members "
                "(`python main.py peers approve ID` there), or paste its key "
                "(`python main.py swarm-key --set -`)")
_STATE_STYLE = {"alive": "green", "self": "bold cyan", "joining": "yellow", "suspect": "yellow",
                "dead": "red", "foreign": "magenta", "pending": "blue"}


def _cell(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None or value == "" else fmt.format(value)


def render_peers(rows: Sequence[Mapping[str, Any]], title: str = "peers") -> Table:
    """A table of peer rows (the JSON rows of /v1/federation/peers); pure, so it renders to text."""
    table = Table(title=title, expand=False)
    for column, justify in (("node", "left"), ("coord", "center"), ("state", "left"),
                            ("address", "left"), ("model", "left"), ("load", "right"),
                            ("queue", "right"), ("tok/s", "right"),
                            ("score", "right"), ("last seen", "right"), ("note", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        state = "self" if row.get("self") else str(row.get("state", "?"))
        style = _STATE_STYLE.get(state, "")
        address = f"{row.get('address') or '-'}:{row.get('api_port') or '-'}"
        seen = row.get("last_seen_s_ago")
        note = _note(row)
        table.add_row(
            str(row.get("node_id", "?")),
            ("alone" if row.get("solo") else "yes") if row.get("coordinator") is True else "",
            f"[{style}]{state}[/]" if style else state, address,
            _cell(row.get("model")), _cell(row.get("load"), "{:.0%}"),
            _cell(row.get("queue_depth")), _cell(row.get("tok_s"), "{:.1f}"),
            _cell(row.get("bench_score"), "{:.1f}"),
            "now" if row.get("self") else _cell(seen, "{:.1f}s ago"), _cell(note))
    return table


def _note(row: Mapping[str, Any]) -> str:
    """A row's reason, with how to join when the peer is in another swarm."""
    reason = str(row.get("reason") or "")
    if row.get("state") == "foreign" and "another swarm" in reason:
        return f"{reason}; {_JOIN_ADVICE}"
    return reason


def join_lines(view: Mapping[str, Any]) -> list[str]:
    """What a person reads of `GET /v1/federation/joins`: each machine asking to join here with
    its code and the command that lets it in, and this node's own request while it asks."""
    lines: list[str] = []
    for request in view.get("requests") or ():
        node_id, code = request.get("node_id"), request.get("code")
        if request.get("state") == "pending" and code:
            lines.append(f"{request.get('name') or node_id} ({node_id}) asks to join; code "
                         f"{code}; approve with `python main.py peers approve {node_id}` once "
                         "that machine shows the same code (expires in "
                         f"{float(request.get('expires_in_s') or 0):.0f} s)")
        elif request.get("state") == "approved":
            lines.append(f"{request.get('name') or node_id} ({node_id}) was approved (code "
                         f"{code}) and is joining")
    joining = view.get("joining")
    if isinstance(joining, Mapping) and joining.get("code"):
        members = ", ".join(joining.get("members") or ())
        lines.append(f"this machine asks to join swarm {joining.get('swarm')} (via {members}); "
                     f"code {joining.get('code')}: approve it on one of them with `python "
                     f"main.py peers approve {view.get('node_id')}`")
    elif view.get("pairing") == "fresh" and view.get("reason"):
        lines.append(f"this machine is new (its key never left it): {view.get('reason')}")
    return lines


def missing_peer_hints(rows: Sequence[Mapping[str, Any]],
                       discovery: Mapping[str, Any]) -> list[str]:
    """Sentences that explain why an expected peer may be missing, from what this node sees."""
    hints: list[str] = []
    if any(LOCAL_NETWORK_HINT in str(row.get("reason") or "") for row in rows):
        hints.append("macOS blocks this node's connections to the LAN (No route to host): "
                     f"{LOCAL_NETWORK_HINT}.")
    if discovery.get("firewall"):
        hints.append(f"{discovery['firewall']}.")
    if not discovery.get("mdns"):
        reason = discovery.get("mdns_reason") or "turned off (--no-mdns)"
        hints.append(f"mDNS discovery is not running: {reason}. Peers are found only through "
                     "--peer / --peers-file.")
    for row in rows:
        state, reason = row.get("state"), row.get("reason") or ""
        who = f"{row.get('node_id')} at {row.get('address')}:{row.get('api_port')}"
        if state == "foreign":
            hints.append(f"{who} is foreign and never used: {_note(row)}.")
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
                     "the same LAN, that UDP port 5353 (mDNS) is not blocked (on a Mac: Local "
                     "Network access for the terminal app, and the firewall allowing Python), or "
                     "list them with --peer HOST:PORT.")
    return hints
