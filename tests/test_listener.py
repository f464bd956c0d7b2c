"""The API follows its machine to a new LAN address: `ApiListener.move` on real sockets, in a
private network namespace (its own addresses and ports; nothing reaches the host's network)."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
PORT = 17615  # free for sure: the namespace has its own ports


async def _answers(url: str) -> str:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            async with session.get(url + "/health") as response:
                return await response.text()
    except aiohttp.ClientError as exc:
        return type(exc).__name__


async def _scenario() -> dict[str, object]:
    from network.api.listener import ApiListener

    app = web.Application()
    app.router.add_get("/health", lambda _request: web.Response(text="ok"))
    runner = web.AppRunner(app)
    await runner.setup()
    listener = ApiListener(runner, "10.9.0.1", PORT)
    await listener.start()
    seen: dict[str, object] = {"first": [await _answers(f"http://{h}:{PORT}")
                                         for h in ("10.9.0.1", "127.0.0.1")]}
    await asyncio.to_thread(subprocess.run, ["ip", "addr", "add", "10.9.0.2/24", "dev", "v0"],
                            check=True)
    await listener.move("10.9.0.2")
    seen["moved"] = [listener.url] + [await _answers(f"http://{h}:{PORT}")
                                      for h in ("10.9.0.2", "10.9.0.1", "127.0.0.1")]
    try:
        await listener.move("10.9.0.99")  # not an address of this machine
        seen["absent"] = "moved?"
    except OSError as exc:
        seen["absent"] = [type(exc).__name__, listener.host,
                          await _answers(f"http://10.9.0.2:{PORT}")]
    await runner.cleanup()
    return seen


def _child_main() -> None:
    print("RESULT", json.dumps(asyncio.run(_scenario())), flush=True)


def test_the_api_moves_to_a_new_address_and_keeps_loopback() -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare or ip not installed: cannot make a private network namespace")
    flags = [] if os.geteuid() == 0 else ["--map-root-user"]
    setup = ("ip link set lo up && ip link add v0 type veth peer name v1 "
             "&& ip addr add 10.9.0.1/24 dev v0 && ip link set v0 up && ip link set v1 up "
             '&& exec "$0" -c "$1"')
    code = "from tests.test_listener import _child_main; _child_main()"
    done = subprocess.run(["unshare", *flags, "--net", "--", "sh", "-c", setup, sys.executable,
                           code], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0 and "unshare" in done.stderr and "Operation not permitted" in done.stderr:
        pytest.skip(f"`unshare --net` failed here: {done.stderr.strip()}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr
    seen = json.loads(lines[-1].split(" ", 1)[1])
    assert seen["first"] == ["ok", "ok"]
    assert seen["moved"] == [f"http://10.9.0.2:{PORT}", "ok", "ClientConnectorError", "ok"]
    assert seen["absent"] == ["OSError", "10.9.0.2", "ok"]
