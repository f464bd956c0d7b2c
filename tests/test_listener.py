"""The API follows its machine to a new LAN address: `ApiListener.move` on real sockets, in a
private network namespace (its own addresses and ports; nothing reaches the host's network)."""
from __future__ import annotations

import asyncio
import json
import subprocess

import aiohttp
from aiohttp import web

from tests.netns import in_private_network

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

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    listener = ApiListener("10.9.0.1", PORT)
    await listener.move("10.9.0.3")  # before start: nothing to move
    await listener.start(runner)
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
    seen = in_private_network(
        "ip link set lo up && ip link add v0 type veth peer name v1 "
        "&& ip addr add 10.9.0.1/24 dev v0 && ip link set v0 up && ip link set v1 up",
        "from tests.test_listener import _child_main; _child_main()")
    assert seen["first"] == ["ok", "ok"]
    assert seen["moved"] == [f"http://10.9.0.2:{PORT}", "ok", "ClientConnectorError", "ok"]
    assert seen["absent"] == ["OSError", "10.9.0.2", "ok"]
