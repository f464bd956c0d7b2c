"""A tiny HTTP client run inside a node's namespace by the LAN tests (the root namespace cannot
reach the namespace LAN). Prints one JSON line. Usage:
  lan_client.py chat URL BODY_JSON
  lan_client.py until URL NODE_ID STATE[,STATE] DEADLINE_S   (prints {"watching": true} after its
      first look, then waits and prints the wall time the state held, or the last row seen)
  lan_client.py get URL PATH   (prints {"status": ..., "body": ...})
  lan_client.py agree SPEC_JSON   (polls every node's /v1/federation/peers; prints
      {"watching": true} after its first look, then the wall time all agreed on one coordinator;
      see `agree` for the spec)
  lan_client.py chat_loop URL BODY_JSON MAX_S   (one chat request after another until a line or
      EOF on stdin, or MAX_S; prints {"looping": true} after the first answer, then the tally)
  lan_client.py post URL PATH BODY_JSON   (prints {"sent_at", "answered_at": wall times,
      "status", "body"})
  lan_client.py join_flood URL SWARM N   (N join hellos from this address, each with a fresh
      commitment; prints {"statuses": [...]})
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx


def rows(url: str) -> dict[str, dict[str, Any]]:
    """Every row of the node's peer table, by node id."""
    data = httpx.get(url + "/v1/federation/peers", timeout=2).json()["data"]
    return {r["node_id"]: r for r in data}


def until(url: str, node_id: str, wanted: set[str], deadline_s: float) -> dict[str, object]:
    end = time.monotonic() + deadline_s
    seen = None
    row: dict[str, Any] = {}
    announced = False
    while time.monotonic() < end:
        try:
            row = rows(url).get(node_id, {})
            seen = row.get("state", "absent")
        except httpx.HTTPError as exc:
            seen = f"error: {exc}"
        if not announced:  # the caller may now trigger what it wants measured
            print(json.dumps({"watching": True}), flush=True)
            announced = True
        if seen in wanted:
            return {"ok": True, "at": time.time(), "state": seen}
        threading.Event().wait(0.02)  # a measurement probe's cadence, bounded by the deadline
    return {"ok": False, "at": time.time(), "state": seen, "row": row}  # the row says why


def election_view(body: dict[str, Any]) -> dict[str, Any]:
    """The election fields of one /v1/federation/peers answer, plus who its rows say leads."""
    return {"coordinator": body.get("coordinator"), "role": body.get("role"),
            "term": body.get("term"), "solo": body.get("solo"),
            "rows_leading": sorted(r["node_id"] for r in body.get("data", ())
                                   if r.get("coordinator") is True and r.get("state") == "alive")}


def health_view(body: dict[str, Any]) -> dict[str, Any]:
    """The same fields from one /v1/federation/health answer (the node's heartbeat: who it
    follows, or itself when it leads), a much lighter look than the peer table; no rows."""
    me, lead = body.get("node_id"), body.get("coordinator")
    role = "coordinator" if lead is not None and lead == me else "follower" if lead else None
    return {"coordinator": lead, "role": role, "term": body.get("term"),
            "solo": body.get("solo"), "rows_leading": []}


def agreed_leader(views: dict[str, dict[str, Any] | None], spec: dict[str, Any]) -> str | None:
    """The node every watched node follows, when the spec holds for `views` (one per node id):
    all answered, all name the same watched node, it says "coordinator" and the rest "follower",
    it is not in spec["not"] (and is spec["want"] if given), its term is above spec["above_term"]
    (and equals spec["term"] if given); with spec["rows"], every node's alive rows also mark
    only that node as leading (heartbeats carry the news). Else None."""
    if not views or any(v is None for v in views.values()):
        return None
    leaders = {v["coordinator"] for v in views.values() if v is not None}
    if len(leaders) != 1:
        return None
    (leader,) = leaders
    if leader not in views or leader in spec.get("not", ()):
        return None
    if spec.get("want") is not None and leader != spec["want"]:
        return None
    for node_id, view in views.items():
        if view is None or view["role"] != ("coordinator" if node_id == leader else "follower"):
            return None
    term = views[leader]["term"]  # type: ignore[index]
    if not isinstance(term, int) or term <= spec.get("above_term", -1):
        return None
    if spec.get("term") is not None and term != spec["term"]:
        return None
    if spec.get("rows") and any(v["rows_leading"] != [leader] for v in views.values() if v):
        return None
    return leader


async def agree(spec: dict[str, Any], on_watching: Callable[[], None]) -> dict[str, Any]:
    """Poll every node of spec["nodes"] ([[url, node_id], ...]) every spec["every_s"] (0.02 s;
    looks overlap, each bounded by spec["look_timeout_s"], 0.5 s, so one unreachable node does not
    slow the others; with spec["light"] and no spec["rows"], its heartbeat, else its peer
    table) until `agreed_leader` holds or spec["deadline_s"] passes; then keep looking for
    spec["hold_s"] (0; with spec["hold_until_stdin"], until a line on stdin) and count every
    time the agreement broke ("flaps"). Calls `on_watching` after the first look at every node
    (the caller may then trigger its event).
    "at" is the wall time of the answer that completed the agreement; "changes" lists every
    change of a node's election view (seconds since the first look), "returns" every node that
    answered again after looks that got no answer ([seconds, node id])."""
    nodes: list[tuple[str, str]] = [(u, i) for u, i in spec["nodes"]]
    every_s = float(spec.get("every_s", 0.02))
    look_timeout_s = float(spec.get("look_timeout_s", 0.5))
    hold_s = float(spec.get("hold_s", 0.0))
    light = bool(spec.get("light")) and not spec.get("rows")  # heartbeats, not peer tables
    stopped = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.readline()
        stopped.set()

    if spec.get("hold_until_stdin"):  # hold (up to hold_s) until a line or EOF on stdin
        threading.Thread(target=wait_stdin, daemon=True).start()
    views: dict[str, dict[str, Any] | None] = {i: None for _u, i in nodes}
    sent: dict[str, float] = {i: -1.0 for _u, i in nodes}
    changes: list[list[Any]] = []
    result: dict[str, Any] = {"ok": False, "at": None, "coordinator": None, "term": None,
                              "flaps": 0, "broken": [], "holding": None, "returns": []}
    missing: set[str] = set()  # nodes whose last look got no answer
    t0 = [time.time()]
    hold_until = [float("inf")]

    def seen(node_id: str, at_sent: float, view: dict[str, Any] | None) -> None:
        if at_sent <= sent[node_id]:
            return  # an older look answered late
        sent[node_id] = at_sent
        now = time.time()
        if view != views[node_id] and len(changes) < 400:
            changes.append([round(now - t0[0], 3), node_id, view])
        views[node_id] = view
        leader = agreed_leader(views, spec)
        if result["at"] is None:
            if leader is not None:
                result.update(ok=True, at=now, coordinator=leader, holding=leader,
                              term=views[leader]["term"])  # type: ignore[index]
                hold_until[0] = time.monotonic() + hold_s
        elif leader != result["holding"]:
            if result["holding"] is not None:  # the agreement broke (or moved): a flap
                result["flaps"] += 1
                if len(result["broken"]) < 5:
                    result["broken"].append([round(now - t0[0], 3), dict(views)])
            result["holding"] = leader

    async def look(client: httpx.AsyncClient, url: str, node_id: str) -> None:
        at_sent = time.time()
        try:
            if light:
                response = await client.get(url + "/v1/federation/health", timeout=look_timeout_s)
                view = health_view(response.json())
            else:
                response = await client.get(url + "/v1/federation/peers", timeout=look_timeout_s)
                view = election_view(response.json())
        except (httpx.HTTPError, ValueError, KeyError):
            missing.add(node_id)
            return  # unreachable or not answering yet: keep the last view
        if node_id in missing and len(result["returns"]) < 400:  # answering again
            missing.discard(node_id)
            result["returns"].append([round(time.time() - t0[0], 3), node_id])
        seen(node_id, at_sent, view)

    limits = httpx.Limits(max_connections=400, max_keepalive_connections=len(nodes) * 4)
    looks: set[asyncio.Task[None]] = set()
    async with httpx.AsyncClient(limits=limits) as client:
        try:
            await asyncio.gather(*(look(client, u, i) for u, i in nodes))
            t0[0] = time.time()
            on_watching()
            end = time.monotonic() + float(spec["deadline_s"])
            while time.monotonic() < min(end, hold_until[0]) and not stopped.is_set():
                for u, i in nodes:
                    task = asyncio.create_task(look(client, u, i))
                    looks.add(task)
                    task.add_done_callback(looks.discard)
                await asyncio.sleep(every_s)
        finally:
            for task in list(looks):
                task.cancel()
            await asyncio.gather(*looks, return_exceptions=True)
    result["held"] = result["at"] is not None and agreed_leader(views, spec) is not None
    del result["holding"]
    return {**result, "t0": t0[0], "views": views, "changes": changes}


def chat_loop(url: str, body: dict[str, Any], max_s: float) -> dict[str, Any]:
    """Chat requests back to back until stdin gives a line (or closes) or `max_s` passes."""
    stop = threading.Event()

    def wait_stdin() -> None:
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    end = time.monotonic() + max_s
    statuses: dict[str, int] = {}
    errors: list[str] = []
    sources: dict[str, int] = {}
    slowest = 0.0
    announced = False
    with httpx.Client(timeout=60) as client:
        while not stop.is_set() and time.monotonic() < end:
            started = time.monotonic()
            try:
                response = client.post(url + "/v1/chat/completions", json=body)
                status = str(response.status_code)
                reply = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                status, reply = type(exc).__name__, {}
            slowest = max(slowest, time.monotonic() - started)
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                for candidate in (reply.get("swarm") or {}).get("candidates", ()):
                    key = str(candidate.get("source"))
                    sources[key] = sources.get(key, 0) + 1
            elif len(errors) < 5:
                errors.append(f"{time.time():.3f} {status}: {json.dumps(reply)[:300]}")
            if not announced:
                print(json.dumps({"looping": True}), flush=True)
                announced = True
    answered = sum(statuses.values())
    return {"ok": answered > 0 and statuses.get("200", 0) == answered, "answered": answered,
            "statuses": statuses, "errors": errors, "sources": sources,
            "slowest_s": round(slowest, 3)}


def main() -> None:
    op, url = sys.argv[1], sys.argv[2]
    if op == "chat":
        response = httpx.post(url + "/v1/chat/completions", json=json.loads(sys.argv[3]),
                              timeout=120)
        print(json.dumps({"status": response.status_code, "body": response.json()}))
    elif op == "until":
        print(json.dumps(until(url, sys.argv[3], set(sys.argv[4].split(",")),
                               float(sys.argv[5]))))
    elif op == "get":
        response = httpx.get(url + sys.argv[3], timeout=10)
        print(json.dumps({"status": response.status_code, "body": response.json()}))
    elif op == "agree":
        result = asyncio.run(agree(json.loads(sys.argv[2]),
                                   lambda: print(json.dumps({"watching": True}), flush=True)))
        print(json.dumps(result))
    elif op == "post":
        with httpx.Client(timeout=30) as http:
            sent_at = time.time()
            response = http.post(url + sys.argv[3], json=json.loads(sys.argv[4]))
            answered_at = time.time()
        print(json.dumps({"sent_at": sent_at, "answered_at": answered_at,
                          "status": response.status_code, "body": response.json()}))
    elif op == "join_flood":
        statuses = []
        with httpx.Client(timeout=10) as http:
            for i in range(int(sys.argv[4])):
                commitment = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
                hello = {"v": 1, "node_id": f"flood{i}", "name": "flood", "swarm": sys.argv[3],
                         "commitment": commitment}
                statuses.append(http.post(url + "/v1/federation/join", json=hello).status_code)
        print(json.dumps({"statuses": statuses}))
    elif op == "chat_loop":
        print(json.dumps(chat_loop(url, json.loads(sys.argv[3]), float(sys.argv[4]))))
    else:
        raise SystemExit(f"unknown op {op}")


if __name__ == "__main__":
    main()
