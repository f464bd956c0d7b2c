"""Discovery adapters: real zeroconf only inside a private network namespace; manual peers files.

Every zeroconf scenario runs in a child process started with `unshare --net`, where only `lo`
exists; the child checks that before it opens a socket. Nothing here touches the host's network.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from network.discovery.events import (
    AddressAdded,
    AddressRemoved,
    DiscoveryEvent,
    DiscoveryUnavailable,
    Found,
    Gone,
)
from network.discovery.manual import StaticPeers
from network.discovery.mdns import MdnsDiscovery, instance_label
from network.wire.address import Address, parse_address
from network.wire.txt import PeerAdvert

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = ["127.0.0.1"]


def advert(node_id: str, boot_id: str = "boot-1", port: int = 17615) -> PeerAdvert:
    return PeerAdvert(node_id=node_id, boot_id=boot_id, protocol=1, api_port=port,
                      fingerprint="ab12cd34", model_id="scripted", instances=1, hardware="cpu")


class Recorder:
    """Collects events with their arrival time; tests wait on a predicate, never sleep."""

    def __init__(self) -> None:
        self.events: list[tuple[float, DiscoveryEvent]] = []
        self._changed = asyncio.Event()

    def __call__(self, event: DiscoveryEvent) -> None:
        self.events.append((time.monotonic(), event))
        self._changed.set()

    async def wait_for(self, predicate: Callable[[DiscoveryEvent], bool],
                       timeout_s: float) -> float:
        """Arrival time of the first event matching `predicate`, waiting up to `timeout_s`."""
        async with asyncio.timeout(timeout_s):
            while True:
                for at, event in self.events:
                    if predicate(event):
                        return at
                self._changed.clear()
                await self._changed.wait()


def found(node_id: str, boot_id: str | None = None) -> Callable[[DiscoveryEvent], bool]:
    return lambda e: (isinstance(e, Found) and e.advert.node_id == node_id
                      and (boot_id is None or e.advert.boot_id == boot_id))


# ---- scenarios run inside `unshare --net` (only lo) -----------------------------------------

async def _find_update_and_leave() -> dict[str, Any]:
    a_events, b_events = Recorder(), Recorder()
    a = MdnsDiscovery(advert("node-a", port=1111), LOOPBACK, LOOPBACK, a_events, name="alpha")
    b = MdnsDiscovery(advert("node-b", port=2222), LOOPBACK, LOOPBACK, b_events, name="beta")
    await a.start()
    started = time.monotonic()
    await b.start()
    ready_s = time.monotonic() - started
    a_found_b = await a_events.wait_for(found("node-b"), 1.0) - started
    b_found_a = await b_events.wait_for(found("node-a"), 1.0) - started
    hit = next(e for _, e in a_events.events if found("node-b")(e))
    assert isinstance(hit, Found)
    assert hit.advert == advert("node-b", port=2222) and hit.address == "127.0.0.1"
    assert hit.addresses == ("127.0.0.1",)
    assert a.name == "alpha-node-a._local-swarm._tcp.local."

    updated = time.monotonic()
    await b.update(advert("node-b", boot_id="boot-2", port=2222))
    update_s = await a_events.wait_for(found("node-b", "boot-2"), 1.0) - updated

    closing = time.monotonic()
    await b.close()
    close_s = time.monotonic() - closing
    gone_s = await a_events.wait_for(lambda e: e == Gone("node-b"), 1.0) - closing
    await a.close()
    own = [e for _, e in a_events.events if isinstance(e, Found) and e.advert.node_id == "node-a"]
    own += [e for _, e in b_events.events if isinstance(e, Found) and e.advert.node_id == "node-b"]
    assert not own, f"a node reported itself: {own}"
    return {"start_s": ready_s, "a_found_b_s": a_found_b, "b_found_a_s": b_found_a,
            "update_s": update_s, "close_s": close_s, "gone_s": gone_s}


async def _late_joiner() -> dict[str, Any]:
    """B starts after A's announcements are over, so B must find A by asking."""
    a = MdnsDiscovery(advert("node-a"), LOOPBACK, LOOPBACK, Recorder(), name="alpha")
    await a.start()
    await asyncio.sleep(1.0)  # let A's announcements finish: this scenario is about querying
    b_events = Recorder()
    b = MdnsDiscovery(advert("node-b"), LOOPBACK, LOOPBACK, b_events, name="beta")
    started = time.monotonic()
    await b.start()
    try:
        found_s = await b_events.wait_for(found("node-a"), 1.0) - started
    finally:
        await b.close()
        await a.close()
    return {"late_found_s": found_s}


async def _garbage_txt_is_ignored() -> dict[str, Any]:
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    warnings: list[str] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.WARNING and "bad TXT" in record.getMessage():
                warnings.append(record.getMessage())

    logging.getLogger("network.discovery.mdns").addHandler(Catch())
    rogue = AsyncZeroconf(interfaces=LOOPBACK)
    info = AsyncServiceInfo("_local-swarm._tcp.local.", "rogue._local-swarm._tcp.local.",
                            port=9, properties={b"id": b"no boot, no port"},
                            server="rogue.local.", parsed_addresses=LOOPBACK)
    await (await rogue.async_register_service(info, cooperating_responders=True))
    events = Recorder()
    a = MdnsDiscovery(advert("node-a"), LOOPBACK, LOOPBACK, events, name="alpha")
    b = MdnsDiscovery(advert("node-b"), LOOPBACK, LOOPBACK, Recorder(), name="beta")
    await a.start()
    await b.start()
    try:
        await events.wait_for(found("node-b"), 2.0)
        other = AsyncServiceInfo("_local-swarm._tcp.local.", info.name, port=9,
                                 properties={b"id": b"other garbage"}, server="rogue.local.",
                                 parsed_addresses=LOOPBACK)
        await (await rogue.async_update_service(other))  # Updated, still garbage: no new warning
        await b.update(advert("node-b", boot_id="boot-2"))
        await events.wait_for(found("node-b", "boot-2"), 2.0)
    finally:
        await b.close()
        await a.close()
        await rogue.async_close()
    return {"warnings": warnings, "events": [repr(e) for _, e in events.events]}


async def _no_interface() -> dict[str, Any]:
    """The zeroconf constructor fails (lo down, or port taken): one clear exception."""
    discovery = MdnsDiscovery(advert("node-a"), LOOPBACK, LOOPBACK, Recorder())
    try:
        await discovery.start()
    except DiscoveryUnavailable as exc:
        return {"error": str(exc), "reason": exc.reason}
    finally:
        await discovery.close()
    return {"error": None}


async def _port_taken() -> dict[str, Any]:
    """Another responder holds UDP 5353 without SO_REUSEPORT: one clear exception."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("0.0.0.0", 5353))
        return await _no_interface()


SCENARIOS = {f.__name__: f for f in (_find_update_and_leave, _late_joiner,
                                      _garbage_txt_is_ignored, _no_interface, _port_taken)}


def _child_main(name: str) -> None:
    """Entry point inside the namespace: refuse to run anywhere but a lo-only namespace."""
    import psutil

    interfaces = sorted(psutil.net_if_addrs())
    if interfaces != ["lo"]:
        raise SystemExit(f"refusing to run zeroconf: not a private namespace ({interfaces})")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    print("RESULT", json.dumps(asyncio.run(SCENARIOS[name]())), flush=True)


def _unshare_flags() -> list[str]:
    return [] if os.geteuid() == 0 else ["--map-root-user"]


@functools.cache
def _namespaces() -> tuple[bool, str]:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False, "unshare or ip not installed: cannot make a private network namespace"
    probe = subprocess.run(["unshare", *_unshare_flags(), "--net", "--", "ip", "link", "set",
                            "lo", "up"], capture_output=True, text=True, timeout=10, check=False)
    if probe.returncode != 0:
        return False, f"`unshare --net` failed here: {probe.stderr.strip() or probe.returncode}"
    return True, ""


def in_private_netns(scenario: str, *, lo_up: bool = True) -> dict[str, Any]:
    """Run one scenario in a fresh `unshare --net` child and return its RESULT."""
    ok, why = _namespaces()
    if not ok:
        pytest.skip(why)
    code = f"from tests.test_discovery import _child_main; _child_main({scenario!r})"
    script = ('ip link set lo up && ' if lo_up else '') + 'exec "$0" -c "$1"'
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["unshare", *_unshare_flags(), "--net", "--", "sh", "-c", script,
                           sys.executable, code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"scenario failed ({done.returncode}):\n{done.stderr}"
    return json.loads(lines[-1].split(" ", 1)[1])


def test_two_nodes_find_each_other_see_a_restart_and_a_goodbye() -> None:
    result = in_private_netns("_find_update_and_leave")
    print("\nmdns on lo: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result.items()))
    assert result["start_s"] < 0.2, "start() must not wait for the announcements"
    assert result["a_found_b_s"] < 1.0 and result["b_found_a_s"] < 1.0
    assert result["update_s"] < 1.0 and result["gone_s"] < 1.0


def test_a_late_joiner_finds_a_node_already_up() -> None:
    result = in_private_netns("_late_joiner")
    print(f"\nlate joiner found the running node in {result['late_found_s'] * 1000:.1f} ms")
    assert result["late_found_s"] < 1.0


def test_garbage_txt_is_logged_once_and_ignored() -> None:
    result = in_private_netns("_garbage_txt_is_ignored")
    assert len(result["warnings"]) == 2, result["warnings"]  # one from each node, once
    assert all("rogue" in warning for warning in result["warnings"])
    assert not any("rogue" in event for event in result["events"]), result["events"]


def test_no_multicast_interface_is_one_clear_error() -> None:
    result = in_private_netns("_no_interface", lo_up=False)
    assert result["error"] and "--peer" in result["error"]
    assert "interface" in result["reason"]


def test_a_taken_mdns_port_is_one_clear_error() -> None:
    result = in_private_netns("_port_taken")
    assert result["error"] and "--peer" in result["error"]
    assert "5353" in result["reason"], result["reason"]


def test_bad_adverts_and_empty_address_lists_fail_at_construction() -> None:
    with pytest.raises(ValueError):
        MdnsDiscovery(advert("node-a"), [], LOOPBACK, Recorder())
    with pytest.raises(ValueError):
        MdnsDiscovery(advert("bad id!"), LOOPBACK, LOOPBACK, Recorder())


def test_instance_labels_are_one_dns_label() -> None:
    assert instance_label("Ana's MacBook.local", "3f9a2c1b0d4e") == "Ana-s-MacBook-local-3f9a2c1b0d4e"
    assert instance_label("", "n1") == "n1"
    long = instance_label("h" * 80, "x" * 60)
    assert len(long) <= 63 and long.endswith("x" * 60)
    assert instance_label("host", "a.b:c") == "host-a-b-c"


# ---- manual peers -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.5:17615", Address("10.0.0.5", 17615)), (" desk.local:80 ", Address("desk.local", 80)),
    ("[fe80::1]:17615", Address("fe80::1", 17615))])
def test_parse_address(text: str, expected: Address) -> None:
    assert parse_address(text) == expected
    assert parse_address(str(expected)) == expected


@pytest.mark.parametrize("text", ["10.0.0.5", "10.0.0.5:0", "10.0.0.5:70000", ":80", "a b:1",
                                  "fe80::1:80", "host:port"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="peer"):
        parse_address(text)


class Queue:
    """Discovery events as an asyncio queue, read under a deadline."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[DiscoveryEvent] = asyncio.Queue()

    def __call__(self, event: DiscoveryEvent) -> None:
        self.queue.put_nowait(event)

    async def take(self, count: int, timeout_s: float = 5.0) -> set[DiscoveryEvent]:
        async with asyncio.timeout(timeout_s):
            return {await self.queue.get() for _ in range(count)}


async def test_peers_file_is_reread_when_it_changes(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "peers.txt"
    path.write_text("# the office\n10.0.0.2:17615\n\n10.0.0.3:17615  # desk\nnot-a-peer\n")
    events = Queue()
    peers = StaticPeers(["10.0.0.1:17615"], path, events, poll_s=0.01)
    await peers.start()
    try:
        assert await events.take(3) == {AddressAdded(Address(f"10.0.0.{i}", 17615))
                                        for i in (1, 2, 3)}
        bad = [r for r in caplog.records if "line 5" in r.getMessage()]
        assert len(bad) == 1 and "not-a-peer" in bad[0].getMessage()

        path.write_text("10.0.0.3:17615\n10.0.0.4:17615\nnot-a-peer\n")
        assert await events.take(2) == {AddressRemoved(Address("10.0.0.2", 17615)),
                                         AddressAdded(Address("10.0.0.4", 17615))}
        path.unlink()
        assert await events.take(2) == {AddressRemoved(Address(f"10.0.0.{i}", 17615))
                                         for i in (3, 4)}
        assert peers.addresses() == (Address("10.0.0.1", 17615),)
        path.write_text("10.0.0.9:1\n")
        assert await events.take(1) == {AddressAdded(Address("10.0.0.9", 1))}
    finally:
        await peers.close()
    assert events.queue.empty()


async def test_a_missing_peers_file_is_watched_for(tmp_path: Path) -> None:
    events = Queue()
    peers = StaticPeers([], tmp_path / "later.txt", events, poll_s=0.01)
    await peers.start()
    try:
        (tmp_path / "later.txt").write_text("192.168.1.7:17615\n")
        assert await events.take(1) == {AddressAdded(Address("192.168.1.7", 17615))}
    finally:
        await peers.close()


def test_a_bad_command_line_peer_is_an_error() -> None:
    with pytest.raises(ValueError, match="nope"):
        StaticPeers(["nope"], None, Queue())


def test_what_lan_devices_can_make_a_node_keep_is_bounded(caplog) -> None:
    """Names flooded over mDNS: events pending, names remembered for their goodbye and names
    noted as ignored all stop at their bounds, and a name is warned about once (no zeroconf runs:
    the bounded parts are driven directly)."""
    from zeroconf import ServiceStateChange

    from network.discovery import mdns

    discovery = MdnsDiscovery(advert("node-a"), LOOPBACK, LOOPBACK, Recorder())
    caplog.set_level(logging.DEBUG, logger="network.discovery.mdns")
    for k in range(mdns.MAX_PENDING + 50):
        discovery._on_state_change(None, "", f"x{k}._local-swarm._tcp.local.",  # type: ignore[arg-type]
                                   ServiceStateChange.Added)
    assert discovery._queue.qsize() == mdns.MAX_PENDING
    for k in range(mdns.MAX_NAMES + 500):
        discovery._remember(f"n{k}._local-swarm._tcp.local.", f"node-{k}")
        discovery._ignore(f"bad{k}._local-swarm._tcp.local.", "bad TXT record")
    discovery._ignore("bad0._local-swarm._tcp.local.", "bad TXT record")
    assert len(discovery._known) == mdns.MAX_NAMES and f"n{mdns.MAX_NAMES + 499}" in next(
        reversed(discovery._known))  # the newest kept, the oldest forgotten
    assert len(discovery._noted) == mdns.MAX_NAMES
    warned = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == mdns.MAX_NAMES  # each noted name (dropped events too) warned once
