"""A tiny HTTP client run inside a node's namespace by the LAN tests (the root namespace cannot
reach the namespace LAN). Prints one JSON line. Usage:
  lan_client.py chat URL BODY_JSON
  lan_client.py until URL NODE_ID STATE[,STATE] DEADLINE_S   (prints {"watching": true} after its
      first look, then waits and prints the wall time the state held)
"""
from __future__ import annotations

import json
import sys
import threading
import time

import httpx


def states(url: str) -> dict[str, str]:
    rows = httpx.get(url + "/v1/federation/peers", timeout=2).json()["data"]
    return {r["node_id"]: r["state"] for r in rows}


def until(url: str, node_id: str, wanted: set[str], deadline_s: float) -> dict[str, object]:
    end = time.monotonic() + deadline_s
    seen = None
    announced = False
    while time.monotonic() < end:
        try:
            seen = states(url).get(node_id, "absent")
        except httpx.HTTPError as exc:
            seen = f"error: {exc}"
        if not announced:  # the caller may now trigger what it wants measured
            print(json.dumps({"watching": True}), flush=True)
            announced = True
        if seen in wanted:
            return {"ok": True, "at": time.time(), "state": seen}
        threading.Event().wait(0.02)  # a measurement probe's cadence, bounded by the deadline
    return {"ok": False, "at": time.time(), "state": seen}


def main() -> None:
    op, url = sys.argv[1], sys.argv[2]
    if op == "chat":
        response = httpx.post(url + "/v1/chat/completions", json=json.loads(sys.argv[3]),
                              timeout=120)
        print(json.dumps({"status": response.status_code, "body": response.json()}))
    elif op == "until":
        print(json.dumps(until(url, sys.argv[3], set(sys.argv[4].split(",")),
                               float(sys.argv[5]))))
    else:
        raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    main()
