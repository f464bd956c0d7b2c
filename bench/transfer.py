"""Model transfer rate between namespace hosts, against raw TCP between the same hosts.

    python bench/transfer.py [--mb 256] [--cap-mbit 400] [--runs 2] [--streams N]

Three hosts on a namespace LAN (tests/netns.py): n1 and n3 serve a model file with the real
routes (`ModelRoutes` over a `ModelLibrary`, signed requests), n2 fetches it with the real
`ModelFetcher` into a fresh store each run (every piece hash-checked, the whole file too). Raw
TCP is one socket from n1 to n2 carrying the same number of bytes (sendfile, read and dropped).
Cases: no link cap (veth: the CPU is the limit), then every source's link capped with `tc tbf`
at --cap-mbit (a LAN-like link), with one source and with two. Prints each rate and the ratios
the issue sets goals for (transfer / raw >= 0.9; two sources / one >= 1.7 on capped links).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.netns import NetnsLan, NodeOutput  # noqa: E402

PORT, RAW_PORT = 17615, 17700
KEY = "lsk_" + "B" * 43


def serve(node_id: str, path: str) -> None:
    """Serve `path` as a model with the node's real model routes, until killed."""
    from aiohttp import web

    from network.federation.gate import FederationGate
    from network.federation.models.routes import ModelRoutes
    from network.trust.signing import Verifier
    from network.trust.swarm_key import KeyRing, SwarmKey
    from swarm.models.library import ModelLibrary
    from swarm.models.store import ModelSource

    library = ModelLibrary(Path(tempfile.mkdtemp()) / "store", 1 << 40)
    manifest = library.share(ModelSource(Path(path), "bench-model"))
    verifier = Verifier(KeyRing(SwarmKey.parse(KEY, "bench key")), audience=node_id)
    app = web.Application()
    ModelRoutes(library, FederationGate(verifier, 1 << 20), node_id).add_to(app)
    print("READY", json.dumps(manifest.to_wire()), flush=True)
    web.run_app(app, host="0.0.0.0", port=PORT, print=None, access_log=None)


def raw_serve(path: str) -> None:
    """Send the file to each connection (sendfile), until killed."""
    with socket.create_server(("0.0.0.0", RAW_PORT)) as server:
        print("READY", flush=True)
        while True:
            conn, _ = server.accept()
            with conn, open(path, "rb") as fh:
                conn.sendfile(fh)


def raw_fetch(host: str, nbytes: int) -> None:
    """Read `nbytes` from the raw server; print the rate."""
    start = time.perf_counter()
    got = 0
    buf = bytearray(1 << 20)
    with socket.create_connection((host, RAW_PORT)) as conn:
        while got < nbytes:
            n = conn.recv_into(buf)
            if not n:
                break
            got += n
    print(json.dumps({"bytes": got, "seconds": time.perf_counter() - start}), flush=True)


def fetch(manifest_json: str, holders_json: str, streams_arg: int) -> None:
    """Fetch the model from the holders into a fresh store; print the rate."""
    from network.federation.client import FederationClient
    from network.federation.models.download import Holder
    from network.federation.models.fetcher import STREAMS_PER_PEER, ModelFetcher
    from network.trust.swarm_key import KeyRing, SwarmKey
    from swarm.models.library import ModelLibrary
    from swarm.models.manifest import Manifest

    async def run() -> dict[str, float]:
        manifest = Manifest.from_wire(json.loads(manifest_json))
        holders = [Holder(n, a, PORT) for n, a in json.loads(holders_json)]
        streams = streams_arg or STREAMS_PER_PEER
        library = ModelLibrary(Path(tempfile.mkdtemp()) / "store", 1 << 40)
        client = FederationClient(keys=KeyRing(SwarmKey.parse(KEY, "bench key")))
        start = time.perf_counter()
        await ModelFetcher(library, client, streams=streams).fetch(manifest, holders)
        seconds = time.perf_counter() - start
        await client.close()
        return {"bytes": manifest.size, "seconds": seconds}

    print(json.dumps(asyncio.run(run())), flush=True)


def _json_line(lan: NetnsLan, i: int, argv: list[str]) -> dict[str, float]:
    out = subprocess.run(lan.command(i, [sys.executable, __file__, *argv]), capture_output=True,
                         text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    data: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def _start(lan: NetnsLan, i: int, argv: list[str]) -> str:
    proc = lan.spawn(i, [sys.executable, __file__, *argv], stdout=subprocess.PIPE, text=True,
                     env={**os.environ, "PYTHONPATH": str(ROOT)})
    return NodeOutput(proc).expect("READY", 120).removeprefix("READY").strip()


def cap(lan: NetnsLan, i: int, mbit: int | None) -> None:
    base = ["tc", "qdisc", "del", "dev", "eth0", "root"]
    subprocess.run(lan.command(i, base), capture_output=True, check=False)
    if mbit:
        subprocess.run(lan.command(i, ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate",
                                       f"{mbit}mbit", "burst", "256kb", "latency", "50ms"]),
                       check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256, help="model file size (MB)")
    parser.add_argument("--cap-mbit", type=int, default=400, help="each source link's cap")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--streams", type=int, default=0,
                        help="ranged requests in flight per source (default: the fetcher's)")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, NetnsLan(3) as lan:
        os.environ["TMPDIR"] = tmp  # the sources' and fetchers' stores go here, removed with it
        model = Path(tmp) / "bench-model.gguf"
        with model.open("wb") as fh:
            for _ in range(args.mb):
                fh.write(os.urandom(1 << 20))
        nbytes = model.stat().st_size
        manifest = _start(lan, 1, ["--serve", "n1", str(model)])
        _start(lan, 3, ["--serve", "n3", str(model)])
        _start(lan, 1, ["--raw-serve", str(model)])
        one = json.dumps([["n1", lan.addr(1)]])
        two = json.dumps([["n1", lan.addr(1)], ["n3", lan.addr(3)]])

        def rate(argv: list[str]) -> float:
            runs = [_json_line(lan, 2, argv) for _ in range(args.runs)]
            return statistics.median(r["bytes"] / r["seconds"] / 1e6 for r in runs)

        rows = []
        for mbit in (None, args.cap_mbit):
            cap(lan, 1, mbit)
            cap(lan, 3, mbit)
            raw = rate(["--raw-fetch", lan.addr(1), str(nbytes)])
            single = rate(["--fetch", manifest, one, str(args.streams)])
            double = rate(["--fetch", manifest, two, str(args.streams)])
            rows.append((f"{mbit} Mbit/s per source" if mbit else "no cap (veth)", raw, single,
                         double))
    print(f"model {nbytes / 1e6:.0f} MB, median of {args.runs} runs, load {load:.2f} "
          f"(1-min average at start), {os.cpu_count()} cores, streams per source: "
          f"{args.streams or 'default'}")
    print(f"{'links':<22} {'raw TCP':>9} {'1 source':>9} {'2 sources':>10} {'1 src/raw':>10} "
          f"{'2 src/1':>8}   (MB/s)")
    for name, raw, single, double in rows:
        print(f"{name:<22} {raw:>9.1f} {single:>9.1f} {double:>10.1f} {single / raw:>10.2f} "
              f"{double / single:>8.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 1 and sys.argv[1] == "--raw-serve":
        raw_serve(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--raw-fetch":
        raw_fetch(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--fetch":
        fetch(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
