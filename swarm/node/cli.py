"""The command line: flags map one-to-one onto configuration keys (see config.example.toml)."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.candidates import STRATEGIES
from swarm.node.config import Config, load_config
from swarm.node.config_values import BACKENDS, DEVICES, DTYPES, LOG_LEVELS, QUANTS

COMMANDS = ("serve", "benchmark", "status", "peers", "swarm-key", "models", "setup-spans")
_KEY_ACTIONS = ("--rotate", "--set", "--forget-previous")
PEER_ACTIONS = ("approve", "revoke")

# flag -> (dotted config key, argparse keyword arguments)
_FLAGS: dict[str, tuple[str, dict[str, Any]]] = {
    "--host": ("api.host", {"metavar": "ADDR", "help": "address to bind (default 127.0.0.1; with "
                                               "--federation, the LAN address, followed as it "
                                               "changes)"}),
    "--port": ("api.port", {"type": int, "help": "API port (default 17615; 0 picks a free one)"}),
    "--api-key": ("api.keys", {"action": "append", "metavar": "KEY",
                               "help": "require this Bearer key on /v1/* (repeatable); `peers` "
                                       "sends the first"}),
    "--model": ("model.path", {"metavar": "PATH|NAME",
                               "help": "HF model folder or .gguf file (default: embedded "
                                       "SmolLM2-135M-Instruct); or the name a peer serves it "
                                       "under: with --federation it is fetched from the peers "
                                       "that hold it; `swarm`: the model most peers hold"}),
    "--backend": ("model.backend", {"choices": BACKENDS,
                                    "help": "inference engine (auto: llama.cpp for GGUF when "
                                            "installed)"}),
    "--device": ("model.device", {"choices": DEVICES,
                                  "help": "torch device for the transformers backend; for "
                                          "llama.cpp, cuda or mps offloads every layer to the "
                                          "GPU (Metal on a Mac)"}),
    "--dtype": ("model.dtype", {"choices": DTYPES,
                                "help": "weights dtype for the transformers backend"}),
    "--quant": ("model.quant", {"choices": QUANTS,
                                "help": "llama.cpp weights: f16/f32 compute a dequantized copy of "
                                        "the GGUF (made once; exact), file keeps its own "
                                        "quantization (the embedded Q4_1: faster, smaller, "
                                        "inexact); auto: f16 for the embedded model, file for "
                                        "yours"}),
    "--instances": ("model.instances", {"type": int, "metavar": "N",
                                        "help": "local model instances (default 1)"}),
    "--threads": ("model.threads", {"type": int, "metavar": "N",
                                    "help": "threads per instance (0: cores / instances; "
                                                    "performance cores on Apple Silicon)"}),
    "--queue-depth": ("model.queue_depth", {"type": int, "metavar": "N",
                                            "help": "requests waiting per instance before 429"}),
    "--cache-dir": ("model.cache_dir", {"metavar": "DIR",
                                        "help": "converted models and benchmark results"}),
    "--store-limit-gb": ("model.store_limit_gb", {
        "type": float, "metavar": "GB",
        "help": "room for models fetched from peers (least recently used evicted first)"}),
    "--fetch-limit-mb-s": ("federation.fetch_limit_mb_s", {
        "type": float, "metavar": "MB_S",
        "help": "cap on fetching a model from peers, MB/s (default 0: no cap)"}),
    "--fetch-wait-s": ("federation.fetch_wait_s", {
        "type": float, "metavar": "S",
        "help": "how long to look for peers holding a --model NAME this machine lacks"}),
    "--strategy": ("consensus.strategy", {
        "choices": STRATEGIES,
        "help": "default answer strategy when a request does not choose one"}),
    "--n": ("consensus.n", {"type": int, "metavar": "N",
                            "help": "default number of candidates for consensus strategies"}),
    "--federation": ("federation.enabled", {
        "action": "store_true", "default": None,
        "help": "join the swarm on the LAN: mDNS discovery, heartbeats, cross-machine consensus"}),
    "--no-mdns": ("federation.mdns", {"action": "store_const", "const": False,
                                      "help": "no mDNS; use --peer / --peers-file only"}),
    "--peer": ("federation.peers", {"action": "append", "metavar": "HOST:PORT",
                                    "help": "a manual peer's API address (repeatable)"}),
    "--peers-file": ("federation.peers_file", {"metavar": "FILE",
                                               "help": "HOST:PORT per line, re-read on change"}),
    "--node-id": ("federation.node_id", {"metavar": "ID",
                                         "help": "this node's id (default: generated once)"}),
    "--approve-peers": ("federation.approve_peers", {
        "action": "store_true", "default": None,
        "help": "a peer holding the swarm key stays pending (never used) until approved here "
                "with `peers approve ID`"}),
    "--coordinator-priority": ("federation.coordinator_priority", {
        "type": int, "metavar": "N",
        "help": "-1000..1000, default 0: higher wins the coordinator election; ties go to the "
                "faster benchmark, then the smaller node id"}),
    "--no-coordinator": ("federation.coordinator", {
        "action": "store_const", "const": False,
        "help": "never take the coordinator role (still votes and follows)"}),
    "--no-pairing": ("federation.pairing", {
        "action": "store_const", "const": False,
        "help": "no joining by approval: a new node does not ask to join a swarm in sight, and "
                "a member takes no join requests"}),
    "--swarm-key": ("federation.swarm_key", {
        "metavar": "KEY", "help": "the swarm's shared key (default: cache_dir/swarm.key, generated "
                                  "once; see the swarm-key command). Visible to other local "
                                  "users in the process list: prefer the key file or "
                                  "LOCAL_SWARM_FEDERATION_SWARM_KEY"}),
    "--spans": ("spans.enabled", {
        "action": "store_true", "default": None,
        "help": "serve a model split across the swarm as Petals layer spans (with --federation; "
                "builds the span runtime once, see setup-spans)"}),
    "--max-memory-gb": ("spans.max_memory_gb", {
        "type": float, "metavar": "GB",
        "help": "memory this node may give its span of blocks (default 0: half its RAM)"}),
    "--log-level": ("log_level", {"choices": LOG_LEVELS}),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for `python main.py` / `local-swarm`."""
    parser = argparse.ArgumentParser(
        prog="local-swarm",
        description="Serve a local LLM over an OpenAI-compatible API "
                    "(http://127.0.0.1:17615/v1 by default).",
        epilog="Every flag has a config key (config.example.toml) and an environment variable "
               "LOCAL_SWARM_<SECTION>_<KEY>; precedence: flag > environment > file > default.",
    )
    parser.add_argument("command", nargs="?", choices=COMMANDS, default="serve",
                        help="serve (default): run the node; benchmark: re-run the first-run "
                             "benchmark and print the plan --auto would choose; status: print "
                             "what the running node sees of the swarm (nodes, coordinator, spans, "
                             "last requests, usage: what its /dashboard shows) and exit; peers: "
                             "show the peers the running node sees and why an expected one is "
                             "missing; "
                             "swarm-key: print this swarm's key (creating it once), or change "
                             "it; models: the models the swarm holds and which nodes hold them; "
                             "setup-spans: build the span runtime (Petals in its own venv in the "
                             "cache folder, about a minute, 0.6 GB) and the model folder "
                             "it reads")
    parser.add_argument("peer_args", nargs="*", metavar="ACTION ID",
                        help="with peers: `approve ID` lets a machine that asks to join in "
                             "(check that it shows the same code), or a pending peer "
                             "(--approve-peers); `revoke ID` refuses or withdraws that")
    parser.add_argument("--code", metavar="NNNN-NNNN",
                        help="with peers approve: the code the joining machine shows (needed "
                             "only when two requests claim one node id)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML config file (default: $LOCAL_SWARM_CONFIG if set)")
    parser.add_argument("--auto", action="store_true", default=None,
                        help="probe hardware, benchmark once (cached) and choose backend, "
                             "dtype, threads and instances")
    for flag, (_key, kwargs) in _FLAGS.items():
        parser.add_argument(flag, dest=flag[2:].replace("-", "_"), **kwargs)
    keys = parser.add_argument_group("swarm-key command")
    keys.add_argument("--rotate", action="store_true",
                      help="make a new key; the old one stays accepted until --forget-previous")
    keys.add_argument("--set", dest="set_key", metavar="KEY",
                      help="store this swarm's key here ('-' reads it from stdin); the old one "
                           "stays accepted until --forget-previous")
    keys.add_argument("--forget-previous", action="store_true",
                      help="stop accepting the keys a rotation replaced")
    return parser


@dataclass(frozen=True)
class Invocation:
    """What the command line asks for: the command, the merged config, and a key action."""

    command: str
    config: Config
    key_action: str = ""  # "", "rotate", "set" or "forget-previous" (swarm-key command)
    new_key: str = ""  # the --set argument ('-': read stdin)
    peer_action: str = ""  # "", "approve" or "revoke" (peers command)
    peer_id: str = ""  # the node id to approve or revoke
    code: str = ""  # the join code given to `peers approve ID --code NNNN-NNNN`


def parse(argv: list[str] | None = None) -> tuple[str, Config]:
    """Parse argv and merge it with env and file into a `Config`; errors exit with a message."""
    invocation = parse_invocation(argv)
    return invocation.command, invocation.config


def parse_invocation(argv: list[str] | None = None) -> Invocation:
    """`parse`, plus the swarm-key command's action; errors exit with a message."""
    from swarm.node.config import ConfigError

    parser = build_parser()
    args = parser.parse_intermixed_args(argv)
    peer_action, peer_id = _peer_action(parser, args.command, args.peer_args)
    actions = [name for name, on in (("rotate", args.rotate), ("set", args.set_key is not None),
                                     ("forget-previous", args.forget_previous)) if on]
    if actions and args.command != "swarm-key":
        parser.error(f"{', '.join(_KEY_ACTIONS)} go with the swarm-key command")
    if len(actions) > 1:
        parser.error(f"choose one of {', '.join(_KEY_ACTIONS)}")
    if args.code is not None and peer_action != "approve":
        parser.error("--code goes with `peers approve ID`")
    cli: dict[str, Any] = {key: getattr(args, flag[2:].replace("-", "_"))
                           for flag, (key, _kw) in _FLAGS.items()}
    cli["auto"] = args.auto
    path = args.config or (Path(os.environ["LOCAL_SWARM_CONFIG"])
                           if os.environ.get("LOCAL_SWARM_CONFIG") else None)
    try:
        config = load_config(path, cli=cli)
    except ConfigError as exc:
        parser.exit(2, f"local-swarm: configuration error: {exc}\n")
    return Invocation(args.command, config, actions[0] if actions else "", args.set_key or "",
                      peer_action, peer_id, args.code or "")


def _peer_action(parser: argparse.ArgumentParser, command: str,
                 words: list[str]) -> tuple[str, str]:
    """(action, node id) of `peers approve ID` / `peers revoke ID`; ("", "") for plain commands."""
    if not words:
        return "", ""
    if command != "peers":
        parser.error(f"unexpected argument {words[0]!r} (only `peers approve|revoke ID` takes one)")
    if len(words) != 2 or words[0] not in PEER_ACTIONS:
        parser.error("use `peers`, `peers approve ID` or `peers revoke ID`")
    return words[0], words[1]
