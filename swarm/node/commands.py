"""The client commands: `main.py status` (the swarm as the running node's dashboard shows it),
`main.py peers` (what the running node sees, why an expected peer is missing, and its span map),
`main.py peers approve|revoke ID` and `main.py setup-spans` (build the span runtime), each picked by
`client_command`, which also dispatches `main.py swarm-key` (key_command.py), `main.py models`
(model_list.py) and `benchmark` (swarm/sizing). The node commands ask this machine's node over plain
blocking HTTP (urllib): a command asks once and exits, so it needs no event loop."""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from network.api.dashboard.routes import SNAPSHOT_PATH
from network.discovery.lan import bind_addresses
from network.wire.fields import is_identifier
from network.wire.paths import APPROVE_PATH, JOINS_PATH, PEERS_PATH, SPANS_PATH
from swarm.node.cli import Invocation
from swarm.node.config import Config
from swarm.node.key_command import swarm_key
from swarm.node.peer_view import join_lines, missing_peer_hints, render_peers
from swarm.node.swarm_view import render_swarm
from swarm.node.terminal import plain_console

log = logging.getLogger("local_swarm")

TIMEOUT_S = 5.0


def client_command(invocation: Invocation) -> int:
    """Run a command other than `serve`; the process's exit status."""
    command, config = invocation.command, invocation.config
    if command == "swarm-key":
        return swarm_key(config, invocation.key_action, invocation.new_key)
    if command == "setup-spans":
        return setup_spans(config)
    if command == "benchmark":
        from swarm.sizing.autorun import run_benchmark_command

        run_benchmark_command(config)
        return 0
    if command == "status":
        return show_status(config)
    if command == "models":
        from swarm.node.model_list import show_models

        return show_models(config)
    if command == "peers" and invocation.peer_action:
        return approve_peer(config, invocation.peer_id, invocation.peer_action == "approve",
                            invocation.code)
    if command == "peers":
        return show_peers(config)
    raise ValueError(f"not a client command: {command}")


@dataclass(frozen=True)
class Reply:
    """What the node answered: its HTTP status and its JSON body (an error body when not JSON)."""

    status: int
    body: dict[str, Any]

    @property
    def error_code(self) -> Any:
        """The `code` of an OpenAI-style error body, if any."""
        error = self.body.get("error")
        return error.get("code") if isinstance(error, dict) else None

    @property
    def error(self) -> Any:
        """The message of an OpenAI-style error body (or the body itself)."""
        error = self.body.get("error", self.body)
        return error.get("message", error) if isinstance(error, dict) else error


def ask_node(config: Config, url: str, payload: dict[str, Any] | None = None) -> Reply | None:
    """GET (or POST `payload` as JSON to) this machine's node with the first API key of the
    config; None after logging why no node answered (none listening, or a refused API key)."""
    headers = {"Accept": "application/json"}
    if config.api.keys:
        headers["Authorization"] = f"Bearer {config.api.keys[0]}"
    data = None if payload is None else json.dumps(payload).encode()
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310 (our node)
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except OSError as exc:
        log.error("no node answers at %s (%s). Start one with: python main.py --federation",
                  url, exc)
        return None
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = {"error": {"message": raw[:200].decode("utf-8", "replace")}}
    if status == 401:
        sent = ("the key sent (the first of [api] keys) is not one it accepts"
                if config.api.keys else "none was sent")
        log.error("the node at %s requires an API key and %s: set [api] keys in the config "
                  "file, LOCAL_SWARM_API_KEYS or --api-key KEY to one of the node's keys",
                  url, sent)
        return None
    return Reply(status, body if isinstance(body, dict) else {"error": body})


def _node_url(config: Config, path: str) -> str:
    host, _lan = bind_addresses(config.api.host, config.federation.enabled,
                                "api.host" in config.explicit)
    return f"http://{host}:{config.api.port}{path}"


def show_status(config: Config) -> int:
    """`main.py status`: print the swarm as the local node sees it (its dashboard's snapshot:
    nodes, coordinator, span map, last requests, usage) and exit."""
    url = _node_url(config, SNAPSHOT_PATH)
    reply = ask_node(config, url)
    if reply is None:
        return 1
    if reply.status != 200 or "nodes" not in reply.body:
        log.error("%s answered %d: %s", url, reply.status, reply.error)
        return 1
    out = plain_console()
    out.print(render_swarm(reply.body))
    out.print(f"Live in a browser: {url.removesuffix(SNAPSHOT_PATH)}/dashboard", soft_wrap=True)
    return 0


def show_peers(config: Config) -> int:
    """`main.py peers`: ask the local node for its peer table and explain missing peers."""
    url = _node_url(config, PEERS_PATH)
    reply = ask_node(config, url)
    if reply is None:
        return 1
    if "data" not in reply.body:
        log.error("%s answered %s", url, reply.error)
        return 1
    out = plain_console()
    out.print(render_peers(reply.body["data"], title=f"peers seen by {reply.body.get('node_id')}"))
    joins = ask_node(config, url.replace(PEERS_PATH, JOINS_PATH))
    for line in join_lines(joins.body if joins is not None and joins.status == 200 else {}):
        out.print(line, soft_wrap=True)
    for hint in missing_peer_hints(reply.body["data"], reply.body.get("discovery", {})):
        out.print(f"- {hint}", soft_wrap=True)
    spans = ask_node(config, url.replace(PEERS_PATH, SPANS_PATH))
    if spans is not None and spans.status == 200:  # 404: the node runs without --spans
        from swarm.node.span_view import render_spans

        out.print(render_spans(spans.body))
    return 0


def setup_spans(config: Config) -> int:
    """`main.py setup-spans`: build the span runtime's venv and the model folder it reads."""
    import time

    from network.petals.environment import SpanEnvironment
    from network.petals.model import span_model_folder
    from swarm.models.store import resolve_model
    from swarm.node.terminal import console, progress_bar

    environment = SpanEnvironment.in_cache(config.cache_path)
    began = time.monotonic()
    if environment.ready:
        console.print(f"span runtime already built in {environment.root}")
    else:
        with progress_bar("building the span runtime") as report:
            environment.build(report)
        console.print(f"span runtime built in {time.monotonic() - began:.0f} s "
                      f"({environment.disk_bytes() / 2**20:.0f} MB): {environment.root}")
    with progress_bar("preparing the model for spans") as report:
        folder = span_model_folder(resolve_model(config.model.path or None), config.cache_path,
                                   report)
    console.print(f"model folder for spans: {folder}")
    return 0


def approve_peer(config: Config, node_id: str, approved: bool = True, code: str = "") -> int:
    """`main.py peers approve ID [--code C]` (or `revoke ID`): ask this machine's node, over
    127.0.0.1 (the node takes approvals from its own machine only), to let a machine that asks
    to join in (or refuse it), or to approve or revoke a peer."""
    if not is_identifier(node_id):
        log.error("%r is not a node id (1 to 64 letters, digits and ._:-); `python main.py peers` "
                  "lists them", node_id)
        return 1
    url = f"http://127.0.0.1:{config.api.port}{APPROVE_PATH}"
    payload: dict[str, Any] = {"node_id": node_id, "approved": approved}
    if code:
        payload["code"] = code
    reply = ask_node(config, url, payload)
    if reply is None:
        return 1
    if reply.status in (404, 405) and reply.error_code != "no_join_request":
        log.error("the node at %s has no approval route: is it running with --federation?", url)
        return 1
    if reply.status != 200:
        log.error("%s answered %d: %s", url, reply.status, reply.error)
        return 1
    out = plain_console()
    join = reply.body.get("join")
    if isinstance(join, dict):
        if join.get("state") == "approved":
            out.print(f"{join.get('name') or node_id} ({node_id}) may join: the swarm key is "
                      f"sealed to the machine showing code {join.get('code')}; it becomes a "
                      "member within a second.", soft_wrap=True)
        else:
            out.print(f"the join request of {node_id} is refused; it does not ask this swarm "
                      "again until it restarts.", soft_wrap=True)
        return 0
    state = reply.body.get("state")
    if state is None and not reply.body.get("approve_peers"):
        log.error("no machine %s asks to join here (an expired request cannot be approved: "
                  "that machine asks again, with a new code; `python main.py peers` lists the "
                  "requests)", node_id)
        return 1
    done = "approved" if approved else "no longer approved"
    where = (f"its state is now {state}" if state
             else "not seen yet: it is used once it answers" if approved else "not seen yet")
    out.print(f"{node_id} {done}; {where}.", soft_wrap=True)
    if not reply.body.get("approve_peers"):
        out.print("Note: this node runs without --approve-peers, so it uses every peer "
                  "holding the swarm key; the approval is kept for when you turn it on.",
                  soft_wrap=True)
    return 0
