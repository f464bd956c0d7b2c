"""The swarm-key command: `main.py swarm-key` prints the join secret with where it comes from and
how to give it to another machine; `--set KEY` stores one, `--rotate` makes a new one (keeping the
old one accepted) and prints the steps that keep the swarm serving, `--forget-previous` stops
accepting old keys. Runs on this machine's key file alone: no node needs to be running."""
from __future__ import annotations

import getpass
import sys
from pathlib import Path
from typing import TextIO

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
from swarm.node.config import Config

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
