"""The client commands: `main.py status` (the swarm as the running node's dashboard shows it),
`main.py peers` (what the running node sees, and why an expected peer is missing), `main.py peers
approve|revoke ID`, and `main.py swarm-key` (print, set, rotate or forget the join secret). The
node commands ask this machine's node over plain blocking HTTP (urllib): a command asks once and
exits, so it needs no event loop."""
from __future__ import annotations

import getpass
import json
import logging
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from network.api.dashboard.routes import SNAPSHOT_PATH
from network.discovery.lan import bind_addresses
from network.trust.swarm_key import (
    KEY_FILE,
    LoadedKeys,
    SwarmKey,
    end_solo,
    forget_previous,
    key_path,
    load_keys,
    store_new_current,
)
from network.wire.fields import is_identifier
from network.wire.paths import APPROVE_PATH, JOINS_PATH, PEERS_PATH
from swarm.node.config import Config
from swarm.node.peer_view import join_lines, missing_peer_hints, render_peers
from swarm.node.swarm_view import render_swarm
from swarm.node.terminal import plain_console

log = logging.getLogger("local_swarm")

TIMEOUT_S = 5.0


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


_CONFIGURED = "--swarm-key, LOCAL_SWARM_FEDERATION_SWARM_KEY or [federation] swarm_key"


def swarm_key(config: Config, action: str = "", new_key: str = "") -> int:
    """`main.py swarm-key`, for the swarm key of `config` (stdout and stdin)."""
    fed = config.federation
    return run_command(fed.swarm_key, fed.previous_swarm_keys, config.cache_path, action,
                       new_key, out=sys.stdout, stdin=sys.stdin)


def run_command(swarm_key: str, previous: tuple[str, ...], cache_dir: Path, action: str = "",
                new_key: str = "", *, out: TextIO, stdin: TextIO) -> int:
    """`main.py swarm-key [--rotate | --set KEY | --forget-previous]`; prints to `out`."""
    path = key_path(cache_dir)
    if action == "set":
        text = new_key
        if new_key == "-":  # a terminal hides what is pasted; a pipe is read as is
            text = getpass.getpass("swarm key (input hidden): ") if stdin.isatty() \
                else stdin.readline()
        key = SwarmKey.parse(text, "the key given to --set")
        kept = store_new_current(path, key)
        print(f"stored swarm key {key.fingerprint} in {path} (mode 0600)", file=out)
        if kept[1:]:
            print("still accepted until `swarm-key --forget-previous`: "
                  + ", ".join(k.fingerprint for k in kept[1:]), file=out)
        if swarm_key:
            print(f"warning: a key set by {_CONFIGURED} takes precedence over this file; "
                  "remove it there or this key is not used", file=out)
        print("Restart the node (python main.py --federation) to use it.", file=out)
        return 0
    if action == "forget-previous":
        dropped = forget_previous(path) if path.exists() else []
        print(("no longer accepted: " + ", ".join(k.fingerprint for k in dropped)) if dropped
              else f"{path} holds no previous key", file=out)
        if previous:
            print("also remove [federation] previous_swarm_keys (or "
                  "LOCAL_SWARM_FEDERATION_PREVIOUS_SWARM_KEYS), which still lists "
                  f"{len(previous)} key(s)", file=out)
        print("Restart the node for this to take effect.", file=out)
        return 0
    loaded = load_keys(swarm_key, previous, cache_dir)
    if action == "rotate":
        return _rotate(loaded, out)
    ring = loaded.ring
    where = (f"{loaded.path} (mode 0600" + (", just generated)" if loaded.generated else ")")
             if loaded.source == "file" else f"set by {_CONFIGURED}")
    if loaded.source == "file" and end_solo(loaded.path):
        print("(this node now counts its key as shared: it no longer asks to join other swarms)",
              file=out)
    print(f"swarm key    {ring.current.text}", file=out)
    print(f"fingerprint  {ring.fingerprint}", file=out)
    print(f"from         {where}", file=out)
    if ring.previous:
        print("also accepts " + ", ".join(k.fingerprint for k in ring.previous)
              + " (previous keys)", file=out)
    print("Give every machine of this swarm the same key, then start it with --federation:\n"
          f"  python main.py swarm-key --set -     (paste the key; stored in its {KEY_FILE}, "
          "mode 0600)\n"
          f"  or {_CONFIGURED}\nKeep it secret: whoever has it can join, vote and read prompts.",
          file=out)
    return 0


def _rotate(loaded: LoadedKeys, out: TextIO) -> int:
    old = loaded.ring.current
    new = SwarmKey.generate()
    if loaded.source == "file":
        store_new_current(loaded.path, new)
        print(f"new swarm key  {new.text}\nfingerprint    {new.fingerprint} (stored in "
              f"{loaded.path}); the old key {old.fingerprint} stays accepted.", file=out)
        steps = ("  1. restart this node: it signs with the new key and still accepts machines "
                 "that have only the old one;\n"
                 "  2. on every other machine: python main.py swarm-key --set - (paste the new "
                 "key), then restart it; until then it does not use this node (it sees another "
                 "swarm key), while this node keeps using it;\n"
                 "  3. once every machine has the new key: python main.py swarm-key "
                 "--forget-previous on each, and restart them one at a time.")
    else:
        print(f"new swarm key  {new.text}\nfingerprint    {new.fingerprint}\nThe current key "
              f"({old.fingerprint}) is set by {_CONFIGURED}: nothing was stored.", file=out)
        steps = (f"  1. here and on every other machine, one at a time: set swarm_key to the "
                 f"new key and add the old one ({old.text}) to [federation] "
                 "previous_swarm_keys (or the matching LOCAL_SWARM_FEDERATION_* variables), "
                 "then restart;\n"
                 "  2. once every machine has the new key: remove previous_swarm_keys "
                 "everywhere and restart them one at a time.")
    print("Next, so the swarm keeps serving throughout:\n" + steps, file=out)
    return 0
