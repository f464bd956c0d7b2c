"""Real mDNS and real TCP between node processes on a namespace LAN (never the host's network)."""
from __future__ import annotations

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from network.wire.txt import PeerAdvert
from tests.netns import NetnsLan, NodeOutput, netns_available

ROOT = Path(__file__).resolve().parent.parent
AVAILABLE, WHY = netns_available()
pytestmark = [pytest.mark.lan, pytest.mark.skipif(not AVAILABLE, reason=WHY)]
ADVERT = PeerAdvert(node_id="n1-3f9a2c", boot_id="boot-77e1", protocol=1, api_port=17615,
                    fingerprint="ab12cd34", model_id="scripted", instances=2,
                    hardware="cpu 2 / 4G", score=12.5, term=1)

REGISTRAR = """
import asyncio, json, socket, sys, time
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf
from network.wire import txt
async def main(addr, fields):
    advert = txt.PeerAdvert(**fields)
    azc = AsyncZeroconf(interfaces=[addr])
    info = AsyncServiceInfo(txt.SERVICE_TYPE, f"{advert.node_id}.{txt.SERVICE_TYPE}",
                            addresses=[socket.inet_aton(addr)], port=advert.api_port,
                            properties=txt.encode(advert), server=f"{advert.node_id}.local.")
    start = time.monotonic()
    await (await azc.async_register_service(info, cooperating_responders=True))
    print("REGISTERED", start, time.monotonic(), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await azc.async_unregister_service(info)
    await azc.async_close()

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
"""

BROWSER = """
import asyncio, dataclasses, json, sys, time
from zeroconf import ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf
from network.wire import txt
async def main(addr):
    azc = AsyncZeroconf(interfaces=[addr])
    added = asyncio.Queue()
    def on_change(zeroconf, service_type, name, state_change):
        if state_change is ServiceStateChange.Added:
            added.put_nowait((time.monotonic(), name))
    browser = AsyncServiceBrowser(azc.zeroconf, [txt.SERVICE_TYPE], handlers=[on_change])
    print("BROWSING", time.monotonic(), flush=True)
    try:
        async with asyncio.timeout(20):
            seen, name = await added.get()
            info = AsyncServiceInfo(txt.SERVICE_TYPE, name)
            if not await info.async_request(azc.zeroconf, 3000):
                raise SystemExit("FAILED to resolve " + name)
            found = {"added": seen, "resolved": time.monotonic(), "name": name,
                     "addresses": info.parsed_addresses(), "port": info.port,
                     "advert": dataclasses.asdict(txt.decode(info.properties))}
            print("FOUND", json.dumps(found), flush=True)
    finally:
        await browser.async_cancel()
        await azc.async_close()

asyncio.run(main(sys.argv[1]))
"""

SERVER = """
import asyncio, sys
from aiohttp import web

async def main(addr):
    app = web.Application()
    app.router.add_get("/health", lambda request: web.json_response({"ok": True}))
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, addr, 0).start()
    print("LISTENING", runner.addresses[0][1], flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await runner.cleanup()

asyncio.run(main(sys.argv[1]))
"""

CLIENT = """
import sys, time, urllib.request
for line in sys.stdin:
    url, timeout = line.split()
    start = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=float(timeout)) as response:
            print("OK", response.status, round(time.monotonic() - start, 4), flush=True)
    except OSError as exc:
        print("FAIL", type(exc).__name__, exc, flush=True)
"""


def _python(lan: NetnsLan, i: int, script: str, *args: str) -> tuple[subprocess.Popen[str],
                                                                      NodeOutput]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    proc = lan.spawn(i, [sys.executable, "-c", script, *args], cwd=ROOT, env=env, text=True,
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    return proc, NodeOutput(proc)


def _host_view() -> tuple[str, frozenset[str]]:
    """Root namespace netns names and link names (read-only look at the host)."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True,
                           check=True)
    return names.stdout, frozenset(line.split(":")[1].strip() for line in links.stdout.splitlines())


@pytest.fixture
def lan() -> Iterator[NetnsLan]:
    before = _host_view()
    with NetnsLan(2) as built:
        yield built
    assert _host_view() == before, "the namespace LAN leaked into the host"


@pytest.mark.parametrize("order", ["browser_first", "registrar_first"])
def test_a_node_discovers_another_over_real_mdns(lan: NetnsLan, order: str,
                                                 record_property: Callable[[str, object], None]
                                                 ) -> None:
    fields = json.dumps(dataclasses.asdict(ADVERT))
    if order == "registrar_first":
        _, registrar = _python(lan, 1, REGISTRAR, lan.addr(1), fields)
        registered = registrar.expect("REGISTERED", 20)
        _, browser = _python(lan, 2, BROWSER, lan.addr(2))
        start = float(browser.expect("BROWSING", 20).split()[1])
    else:
        _, browser = _python(lan, 2, BROWSER, lan.addr(2))
        browser.expect("BROWSING", 20)
        _, registrar = _python(lan, 1, REGISTRAR, lan.addr(1), fields)
        registered = registrar.expect("REGISTERED", 20)
        start = float(registered.split()[1])
    found = json.loads(browser.expect("FOUND", 10).split(" ", 1)[1])
    assert PeerAdvert(**found["advert"]) == ADVERT
    assert found["addresses"] == [lan.addr(1)] and found["port"] == ADVERT.api_port
    assert found["name"] == f"{ADVERT.node_id}._local-swarm._tcp.local."
    added_s, resolved_s = found["added"] - start, found["resolved"] - start
    record_property("discovery_added_s", round(added_s, 4))
    record_property("discovery_resolved_s", round(resolved_s, 4))
    register_s = float(registered.split()[2]) - float(registered.split()[1])
    print(f"\n{order}: register call {register_s:.4f} s; Added after {added_s:.4f} s, "
          f"advert resolved after {resolved_s:.4f} s")
    assert resolved_s < 3.0


def test_http_crosses_the_lan_and_a_cut_cable_stops_it(lan: NetnsLan) -> None:
    _, server = _python(lan, 1, SERVER, lan.addr(1))
    port = server.expect("LISTENING", 20).split()[1]
    client_proc, client = _python(lan, 2, CLIENT)
    url = f"http://{lan.addr(1)}:{port}/health"

    def get(timeout_s: float) -> str:
        assert client_proc.stdin is not None
        client_proc.stdin.write(f"{url} {timeout_s}\n")
        client_proc.stdin.flush()
        return client.expect("", timeout_s + 10)

    assert get(5).startswith("OK 200")
    lan.cut(1)
    assert get(0.5).startswith("FAIL")
    lan.heal(1)
    answers = [get(1.0) for _ in range(5)]
    assert any(a.startswith("OK 200") for a in answers), answers


def test_the_holder_cleans_up_when_its_owner_is_sigkilled() -> None:
    """pytest itself dying must not leave nodes running or namespaces behind."""
    before = _host_view()
    owner_script = (
        "import sys, subprocess; sys.path.insert(0, sys.argv[1])\n"
        "from tests.netns import NetnsLan\n"
        "lan = NetnsLan(2).__enter__()\n"
        "node = lan.spawn(2, ['sleep', '600'])\n"
        "print(lan.holder_pid, node.pid, flush=True)\n"
        "sys.stdin.read()\n")
    owner = subprocess.Popen([sys.executable, "-c", owner_script, str(ROOT)], cwd=ROOT,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        holder_pid, node_pid = map(int, NodeOutput(owner).expect("", 20).split())
        watches = {pid: os.pidfd_open(pid) for pid in (holder_pid, node_pid)}
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=5)
        for pid, fd in watches.items():
            ready, _, _ = select.select([fd], [], [], 10)
            os.close(fd)
            assert ready, f"pid {pid} outlived its SIGKILLed owner"
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
    assert _host_view() == before
