"""Joining by approval, timed: two fresh machines on a namespace LAN (real mDNS, real HTTP,
scripted engines, empty cache folders), one approval, and how long until each lists the other
alive. Repeated `--rounds` times, each with new machines; prints p50 / p95 / max and the load.

    sudo .venv/bin/python bench/pairing.py --rounds 5

Needs root (or user namespaces), like tests/netns.py; never touches the host's network. Every
client (the approval included, which the node takes from its own machine only) runs inside a
node's namespace through tests/lan_client.py.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns_nodes import PercentileTable  # noqa: E402
from tests.netns import NetnsLan, netns_available  # noqa: E402

CLIENT = str(ROOT / "tests" / "lan_client.py")
LOCAL = "http://127.0.0.1:17615"


def client(lan: NetnsLan, i: int, *args: str) -> dict:
    out = subprocess.run(lan.command(i, [sys.executable, CLIENT, *args]), capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def start_node(lan: NetnsLan, i: int, cache: Path) -> tuple[subprocess.Popen[str], threading.Event]:
    ready = threading.Event()
    proc = lan.spawn(i, [sys.executable, str(ROOT / "bench" / "scripted_node.py"), "--federation",
                         "--node-id", f"n{i}", "--instances", "1", "--cache-dir", str(cache)],
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                     env={**os.environ, "COLUMNS": "200"})

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            if "listening on http://" in line:
                ready.set()
    threading.Thread(target=read, daemon=True).start()
    return proc, ready


def one_round(tmp: Path) -> tuple[float, float, float, float]:
    """(request seen after start, approval answered, n1 sees n2 alive, n2 sees n1 alive), in s;
    the last two from the moment the approval was sent."""
    with NetnsLan(2) as lan:
        started = time.monotonic()
        nodes = [start_node(lan, i, tmp / f"m{i}") for i in (1, 2)]
        for _proc, ready in nodes:
            if not ready.wait(60):
                raise SystemExit("a node did not start")
        end = time.monotonic() + 30
        code = None
        while code is None and time.monotonic() < end:
            requests = client(lan, 1, "get", LOCAL, "/v1/federation/joins")["body"]["requests"]
            code = next((r["code"] for r in requests
                         if r["node_id"] == "n2" and r["state"] == "pending"), None)
        if code is None:
            raise SystemExit("n2 never asked n1")
        asked = time.monotonic() - started
        watchers = [subprocess.Popen(lan.command(i, [sys.executable, CLIENT, "until",
                                                     f"http://{lan.addr(i)}:17615", other,
                                                     "alive", "10"]),
                                     stdout=subprocess.PIPE, text=True)
                    for i, other in ((1, "n2"), (2, "n1"))]
        for watcher in watchers:
            assert watcher.stdout is not None
            json.loads(watcher.stdout.readline())
        approved = client(lan, 1, "post", LOCAL, "/v1/federation/approve",
                          json.dumps({"node_id": "n2", "code": code}))
        seen = [json.loads(w.communicate(timeout=30)[0].strip().splitlines()[-1])
                for w in watchers]
        if not all(s["ok"] for s in seen):
            raise SystemExit(f"not joined: {seen}")
        return (asked, approved["answered_at"] - approved["sent_at"],
                seen[0]["at"] - approved["sent_at"], seen[1]["at"] - approved["sent_at"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ok, why = netns_available()
    if not ok:
        raise SystemExit(why)
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f} (1, 5, 15 min) on {os.cpu_count()} cores")
    rows: list[tuple[float, float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            rows.append(one_round(Path(tmp) / f"round{r}"))
    table = PercentileTable(40)
    table.header()
    for k, name in enumerate(("start to request shown on n1", "approval answered",
                              "approval to n1 listing n2 alive", "approval to n2 listing n1 alive")):
        table.row(name, [row[k] for row in rows])
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min)")


if __name__ == "__main__":
    main()
