"""The interface watcher: pure snapshot/changed, the adapter over a fake reader and a stepped clock,
its place in `Federation`, and (lan) a veth going down and up between two real mDNS nodes."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.discovery.events import DiscoveryUnavailable
from network.discovery.interfaces import (
    CONFIRM_READS,
    LINK_LOCAL_CONFIRM_READS,
    Entry,
    Follow,
    InterfaceWatcher,
    changed,
    follow,
    read_psutil,
    snapshot,
)
from network.discovery.lan import lan_address, lan_rank

ROOT = Path(__file__).resolve().parent.parent
Addr = namedtuple("Addr", "family address netmask broadcast ptp")
Stat = namedtuple("Stat", "isup")


def v4(address: str) -> Addr:
    return Addr(socket.AF_INET, address, "255.255.255.0", None, None)


def v6(address: str) -> Addr:
    return Addr(socket.AF_INET6, address, None, None, None)


WIFI = "192.168.1.5"


# ---- pure: snapshot and changed ---------------------------------------------------------------

def test_snapshot_keeps_the_watched_ipv4_addresses_and_their_interface_state() -> None:
    addrs = {"lo": [v4("127.0.0.1")], "wlan0": [v4(WIFI), v6("fe80::1")],
             "eth0": [v4("10.0.0.7")], "usb0": [v4("10.0.0.9")]}
    stats = {"lo": Stat(True), "wlan0": Stat(True), "eth0": Stat(False)}  # usb0: no stats
    assert snapshot(addrs, stats, [WIFI, "10.0.0.7", "10.0.0.9", "fe80::1"]) == {
        Entry("wlan0", WIFI, True), Entry("eth0", "10.0.0.7", False),
        Entry("usb0", "10.0.0.9", True)}
    assert snapshot(addrs, stats, []) == frozenset()


@pytest.mark.parametrize(("before", "after", "reason"), [
    ({Entry("wlan0", WIFI, True)}, set(), f"{WIFI} left wlan0"),
    (set(), {Entry("wlan0", WIFI, True)}, f"{WIFI} appeared on wlan0"),
    (set(), {Entry("wlan0", WIFI, False)}, f"{WIFI} appeared on wlan0, down"),
    ({Entry("eth0", WIFI, True)}, {Entry("eth0", WIFI, False)}, f"eth0 went down ({WIFI})"),
    ({Entry("eth0", WIFI, False)}, {Entry("eth0", WIFI, True)}, f"eth0 came up ({WIFI})"),
    ({Entry("eth0", WIFI, True)}, {Entry("wlan0", WIFI, True)},
     f"{WIFI} left eth0; {WIFI} appeared on wlan0"),
])
def test_changed_says_what_changed(before: set[Entry], after: set[Entry], reason: str) -> None:
    assert changed(frozenset(before), frozenset(after)) == reason
    assert changed(frozenset(after), frozenset(after)) is None


def test_the_address_leaving_and_returning_are_two_changes() -> None:
    """The case that matters: the second change (the address is back) must be reported too."""
    on = {"wlan0": [v4(WIFI)]}
    reads: list[tuple[dict[str, list[Addr]], dict[str, Stat]]] = [
             (on, {"wlan0": Stat(True)}), ({"wlan0": []}, {"wlan0": Stat(False)}),
             ({"wlan0": []}, {"wlan0": Stat(True)}), (on, {"wlan0": Stat(True)})]
    shots = [snapshot(addrs, stats, [WIFI]) for addrs, stats in reads]
    reasons = [changed(a, b) for a, b in zip(shots, shots[1:], strict=False)]
    assert reasons == [f"{WIFI} left wlan0", None, f"{WIFI} appeared on wlan0"]


NAMES = ["eth0", "wlan0", "lo", "en1", "docker0"]
ADDRESSES = ["10.0.0.1", "10.0.0.2", WIFI, "127.0.0.1", "fe80::1"]
addr_entries = st.lists(st.builds(lambda family, a: Addr(family, a, None, None, None),
                                  st.sampled_from([socket.AF_INET, socket.AF_INET6]),
                                  st.sampled_from(ADDRESSES)), max_size=4)
if_addrs = st.dictionaries(st.sampled_from(NAMES), addr_entries, max_size=4)
if_stats = st.dictionaries(st.sampled_from(NAMES), st.builds(Stat, st.booleans()), max_size=5)
watched_lists = st.lists(st.sampled_from(ADDRESSES), max_size=3)


@given(if_addrs, if_stats, watched_lists)
def test_snapshot_is_order_free_and_only_holds_watched_ipv4(addrs: dict[str, list[Addr]],
                                                           stats: dict[str, Stat],
                                                           wanted: list[str]) -> None:
    shot = snapshot(addrs, stats, wanted)
    shuffled = {name: list(reversed(entries)) for name, entries in reversed(addrs.items())}
    assert snapshot(shuffled, dict(reversed(stats.items())), reversed(wanted)) == shot
    assert all(e.address in wanted and e.interface in addrs for e in shot)
    assert all(any(a.family == socket.AF_INET and a.address == e.address for a in addrs[e.interface])
               for e in shot)
    assert all(e.up == (stats[e.interface].isup if e.interface in stats else True) for e in shot)


@given(if_addrs, if_stats, if_addrs, if_stats, watched_lists)
def test_changed_is_none_exactly_when_the_snapshots_are_equal(
        addrs_a: dict[str, list[Addr]], stats_a: dict[str, Stat], addrs_b: dict[str, list[Addr]],
        stats_b: dict[str, Stat], wanted: list[str]) -> None:
    a, b = snapshot(addrs_a, stats_a, wanted), snapshot(addrs_b, stats_b, wanted)
    reason = changed(a, b)
    assert (reason is None) == (a == b)
    assert changed(a, a) is None and changed(b, b) is None
    if reason is not None:
        assert reason
        for entry in a ^ b:  # every differing entry is named
            assert entry.address in reason and entry.interface in reason


@given(if_addrs, if_stats, st.sampled_from(NAMES), st.booleans())
def test_unwatched_interfaces_never_matter(addrs: dict[str, list[Addr]], stats: dict[str, Stat],
                                           name: str, up: bool) -> None:
    wanted = [WIFI]
    other = {**{n: e for n, e in addrs.items() if n != name}, name: [v4("10.0.0.99")]}
    flipped = {**stats, name: Stat(up)}
    before = snapshot(other, stats, wanted)
    assert changed(before, snapshot(other, flipped, wanted)) is None


def test_the_psutil_reader_returns_what_snapshot_takes() -> None:
    """Read-only: the real interfaces of wherever the tests run (nothing is sent)."""
    addrs, stats = read_psutil()
    loopback = [a for entries in addrs.values() for a in entries if a.address == "127.0.0.1"]
    assert loopback or not addrs  # Linux names it lo, macOS lo0
    ipv4 = [a.address for entries in addrs.values() for a in entries if a.family == socket.AF_INET]
    assert {e.address for e in snapshot(addrs, stats, ipv4)} == set(ipv4)


# ---- the adapter: a fake reader and a stepped clock --------------------------------------------

class FakeNet:
    """psutil-shaped interfaces the test edits; `reads` counts reads."""

    def __init__(self) -> None:
        self.addrs: dict[str, list[Addr]] = {"lo": [v4("127.0.0.1")], "wlan0": [v4(WIFI)]}
        self.stats: dict[str, Stat] = {"lo": Stat(True), "wlan0": Stat(True)}
        self.error: OSError | None = None
        self.reads = 0

    def read(self) -> tuple[dict[str, list[Addr]], dict[str, Stat]]:
        self.reads += 1
        if self.error is not None:
            raise self.error
        return ({k: list(v) for k, v in self.addrs.items()}, dict(self.stats))

    def drop_wifi(self) -> None:
        self.addrs["wlan0"], self.stats["wlan0"] = [], Stat(False)

    def wifi_back(self) -> None:
        self.addrs["wlan0"], self.stats["wlan0"] = [v4(WIFI)], Stat(True)


class Ticker:
    """The watcher's `wait`: each `tick()` lets one interval pass and returns once the watcher has
    read the interfaces and is waiting again (so the test never sleeps)."""

    def __init__(self) -> None:
        self.waits = 0
        self.released = 0
        self._release: asyncio.Queue[None] = asyncio.Queue()
        self._waiting = asyncio.Event()

    async def wait(self, interval_s: float) -> None:
        assert interval_s > 0
        self.waits += 1
        self._waiting.set()
        await self._release.get()

    async def tick(self, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            await self._until(self.released + 1)
            self.released += 1
            self._release.put_nowait(None)
            await self._until(self.released + 1)

    async def _until(self, waits: int) -> None:
        while self.waits < waits:
            self._waiting.clear()
            await self._waiting.wait()


class Callback:
    """Records reasons; raises `fail` (when set) instead of succeeding."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.fail: BaseException | None = None
        self.block: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.entered.set()
        if self.block is not None:
            await self.block.wait()
        if self.fail is not None:
            raise self.fail


@pytest.fixture
async def watched() -> Any:
    net, ticker, callback = FakeNet(), Ticker(), Callback()
    watcher = InterfaceWatcher([WIFI], callback, read=net.read, wait=ticker.wait)
    await watcher.start()
    try:
        yield net, ticker, callback, watcher
    finally:
        await watcher.close()


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "network.discovery.interfaces" and r.levelno == level]


async def test_no_change_never_calls_back(watched: Any) -> None:
    net, ticker, callback, watcher = watched
    for _ in range(5):
        await ticker.tick()
    assert callback.reasons == [] and net.reads == 6  # the baseline and five intervals
    assert watcher.last == {Entry("wlan0", WIFI, True)}


async def test_a_drop_and_a_return_each_call_back_once(watched: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    net, ticker, callback, _watcher = watched
    caplog.set_level(logging.INFO, "network.discovery.interfaces")
    net.drop_wifi()
    await ticker.tick()
    await ticker.tick()
    assert callback.reasons == [f"{WIFI} left wlan0"]
    net.wifi_back()
    await ticker.tick()
    await ticker.tick()
    assert callback.reasons == [f"{WIFI} left wlan0", f"{WIFI} appeared on wlan0"]
    assert _records(caplog, logging.INFO) == [
        f"network interfaces changed ({WIFI} left wlan0); re-announcing on mDNS",
        f"network interfaces changed ({WIFI} appeared on wlan0); re-announcing on mDNS"]


async def test_changes_of_other_interfaces_are_ignored(watched: Any) -> None:
    net, ticker, callback, _watcher = watched
    net.addrs["eth1"], net.stats["lo"] = [v4("10.9.9.9")], Stat(False)
    await ticker.tick()
    assert callback.reasons == []


async def test_a_failing_callback_is_logged_once_and_retried(
        watched: Any, caplog: pytest.LogCaptureFixture) -> None:
    net, ticker, callback, watcher = watched
    callback.fail = DiscoveryUnavailable("zeroconf is closed")
    net.drop_wifi()
    for _ in range(3):
        await ticker.tick()
    assert callback.reasons == [f"{WIFI} left wlan0"] * 3  # not forgotten: retried each read
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "zeroconf is closed" in warnings[0], warnings
    assert watcher._task is not None and not watcher._task.done()

    callback.fail = None
    net.wifi_back()  # back where the last good snapshot was: nothing left to announce
    await ticker.tick()
    net.drop_wifi()
    await ticker.tick()
    assert callback.reasons[-1] == f"{WIFI} left wlan0" and len(callback.reasons) == 4
    await ticker.tick()
    assert len(callback.reasons) == 4


async def test_a_callback_failing_while_the_address_is_gone_still_refreshes_when_it_returns(
        watched: Any) -> None:
    net, ticker, callback, _watcher = watched
    callback.fail = RuntimeError("No interfaces to listen on")
    net.drop_wifi()
    await ticker.tick()
    callback.fail = None
    net.addrs["wlan0"], net.stats["wlan0"] = [v4(WIFI)], Stat(False)  # back, link still down
    await ticker.tick()
    net.wifi_back()
    await ticker.tick()
    assert callback.reasons == [f"{WIFI} left wlan0", f"wlan0 went down ({WIFI})",
                                f"wlan0 came up ({WIFI})"]


async def test_an_unreadable_interface_list_is_logged_once(
        watched: Any, caplog: pytest.LogCaptureFixture) -> None:
    net, ticker, callback, _watcher = watched
    net.error = PermissionError("netlink says no")
    await ticker.tick()
    await ticker.tick()
    assert len(_records(caplog, logging.WARNING)) == 1
    net.error = None
    net.drop_wifi()
    await ticker.tick()
    assert callback.reasons == [f"{WIFI} left wlan0"]


async def test_close_cancels_a_callback_in_progress() -> None:
    net, ticker, callback = FakeNet(), Ticker(), Callback()
    callback.block = asyncio.Event()
    watcher = InterfaceWatcher([WIFI], callback, read=net.read, wait=ticker.wait)
    await watcher.start()
    with pytest.raises(RuntimeError, match="already started"):
        await watcher.start()
    net.drop_wifi()
    await ticker._until(1)
    ticker._release.put_nowait(None)
    async with asyncio.timeout(5):
        await callback.entered.wait()
    task = watcher._task
    await watcher.close()
    assert task is not None and task.cancelled()
    await watcher.close()  # twice is fine


async def test_the_real_sleep_drives_it_too() -> None:
    """Default `wait` (asyncio.sleep) with a tiny interval; the test waits on the callback."""
    net, callback = FakeNet(), Callback()
    watcher = InterfaceWatcher([WIFI], callback, interval_s=0.01, read=net.read)
    await watcher.start()
    try:
        net.drop_wifi()
        async with asyncio.timeout(5):
            await callback.entered.wait()
        assert callback.reasons == [f"{WIFI} left wlan0"]
    finally:
        await watcher.close()


def test_a_bad_interval_is_refused() -> None:
    with pytest.raises(ValueError):
        InterfaceWatcher([WIFI], Callback(), interval_s=0)


# ---- following the machine to a new LAN address ----------------------------------------------

NEW = "192.168.1.77"


@given(st.lists(st.none() | st.sampled_from([WIFI, NEW, "10.0.0.9", "169.254.3.3"]),
                max_size=40))
def test_follow_moves_only_after_enough_reads_in_a_row_of_one_new_address(reads) -> None:
    state, bound = Follow(WIFI), WIFI
    run: list[str | None] = []
    for located in reads:
        run = run + [located] if run and run[-1] == located else [located]
        state, target = follow(state, located)
        if target is None:
            continue
        needed = CONFIRM_READS if lan_rank(target) == 0 else LINK_LOCAL_CONFIRM_READS
        assert target == located != bound and len(run) >= needed
        state, bound, run = Follow(target), target, []  # the move succeeded
    assert state.bound == bound


def test_a_failed_move_is_tried_again_at_the_next_read() -> None:
    state, target = follow(Follow(WIFI, NEW, CONFIRM_READS), NEW)
    assert target == NEW and state.bound == WIFI  # still bound where it was
    assert follow(state, NEW)[1] == NEW
    assert follow(state, None) == (Follow(WIFI), None)  # gone again: start over


class Moves:
    """Records the addresses `on_moved` was called with; raises `fail` when set."""

    def __init__(self) -> None:
        self.to: list[str] = []
        self.fail: BaseException | None = None

    async def __call__(self, address: str) -> None:
        self.to.append(address)
        if self.fail is not None:
            raise self.fail


@pytest.fixture
async def following() -> Any:
    net, ticker, callback, moves = FakeNet(), Ticker(), Callback(), Moves()
    watcher = InterfaceWatcher([WIFI], callback, on_moved=moves, read=net.read,
                               locate=lambda addrs, stats: lan_address(addrs, stats, None),
                               wait=ticker.wait)
    await watcher.start()
    try:
        yield net, ticker, callback, moves, watcher
    finally:
        await watcher.close()


async def test_a_new_dhcp_address_is_followed_after_two_reads(
        following: Any, caplog: pytest.LogCaptureFixture) -> None:
    net, ticker, callback, moves, watcher = following
    caplog.set_level(logging.INFO, "network.discovery.interfaces")
    net.addrs["wlan0"] = [v4(NEW)]
    await ticker.tick()
    assert moves.to == [] and callback.reasons == [f"{WIFI} left wlan0"]
    await ticker.tick()
    assert moves.to == [NEW] and watcher.watched == (NEW,)
    assert watcher.last == {Entry("wlan0", NEW, True)}
    for _ in range(3):
        await ticker.tick()
    assert moves.to == [NEW] and callback.reasons == [f"{WIFI} left wlan0"]
    assert f"this machine's LAN address moved from {WIFI} to {NEW}; listening and announcing " \
           "there now" in _records(caplog, logging.INFO)
    net.drop_wifi()  # after the move, the new address is the one watched
    await ticker.tick()
    assert callback.reasons[-1] == f"{NEW} left wlan0"


async def test_asleep_and_back_on_the_same_address_never_moves(following: Any) -> None:
    net, ticker, callback, moves, _watcher = following
    net.drop_wifi()
    for _ in range(5):
        await ticker.tick()
    net.wifi_back()
    await ticker.tick()
    assert moves.to == [] and callback.reasons == [f"{WIFI} left wlan0",
                                                   f"{WIFI} appeared on wlan0"]


async def test_a_self_assigned_address_waits_for_dhcp_before_moving(following: Any) -> None:
    net, ticker, _callback, moves, _watcher = following
    net.addrs["wlan0"] = [v4("169.254.3.3")]
    for _ in range(LINK_LOCAL_CONFIRM_READS - 1):
        await ticker.tick()
    net.addrs["wlan0"] = [v4(NEW)]  # the lease arrives: move there, never to 169.254
    await ticker.tick()
    await ticker.tick()
    assert moves.to == [NEW]


async def test_a_move_that_fails_is_logged_once_and_retried(
        following: Any, caplog: pytest.LogCaptureFixture) -> None:
    net, ticker, _callback, moves, watcher = following
    moves.fail = OSError(49, "Can't assign requested address")
    net.addrs["wlan0"] = [v4(NEW)]
    for _ in range(4):
        await ticker.tick()
    assert moves.to == [NEW, NEW, NEW] and watcher.watched == (WIFI,)
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "Can't assign requested address" in warnings[0]
    moves.fail = None
    await ticker.tick()
    assert moves.to == [NEW] * 4 and watcher.watched == (NEW,)


def test_following_needs_the_bound_address() -> None:
    with pytest.raises(ValueError, match="bound address"):
        InterfaceWatcher([], Callback(), on_moved=Moves())


# ---- owned by Federation -----------------------------------------------------------------------

async def _federation(tmp: Path, mdns: bool) -> Any:
    import main
    from network.trust.swarm_key import SwarmKey
    from swarm.engine.scripted import ScriptedBackend
    from swarm.node.config import load_config
    from swarm.node.loading import Engine

    config = load_config(env={}, cli={
        "federation.enabled": True, "federation.mdns": mdns, "federation.node_id": "watch-a",
        "federation.swarm_key": SwarmKey.generate().text, "model.cache_dir": str(tmp),
        "api.host": "127.0.0.1", "api.port": 17999, "model.queue_depth": 1})
    services = await main.build_services(config, Engine.given([ScriptedBackend(["hi"])],
                                                                   1.0))
    assert services.swarm is not None and services.lan_addresses == ["127.0.0.1"]
    return services.swarm.federation, services.pool


async def test_without_mdns_there_is_no_watcher(tmp_path: Path) -> None:
    federation, pool = await _federation(tmp_path, mdns=False)
    try:
        await federation.start(17999)
        assert federation.mdns is None and federation.interface_watch is None
    finally:
        await federation.close()
        pool.close()


async def _federation_owns_the_watcher() -> dict[str, Any]:
    import tempfile

    order: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        federation, pool = await _federation(Path(tmp), mdns=True)
        await federation.start(17999)
        watcher, mdns = federation.interface_watch, federation.mdns
        assert watcher is not None and mdns is not None and watcher.watched == ("127.0.0.1",)
        assert watcher.last == {Entry("lo", "127.0.0.1", True)}
        task = watcher._task
        refreshed = await watcher.check()  # nothing changed: no refresh
        await federation._refresh_mdns("test")  # the callback itself works on a live node
        for name, obj in (("watch", watcher), ("mdns", mdns)):
            close = obj.close

            async def closing(close: Any = close, name: str = name) -> None:
                order.append(name)
                await close()
            obj.close = closing
        await federation.close()
        pool.close()
    return {"order": order, "cancelled": task is not None and task.cancelled(),
            "refreshed": refreshed, "after": federation.interface_watch is None}


def _child_main(name: str) -> None:
    """Entry point inside `unshare --net`: refuse to run zeroconf anywhere but a lo-only namespace."""
    import psutil

    if sorted(psutil.net_if_addrs()) != ["lo"]:
        raise SystemExit(f"refusing to run zeroconf: not a private namespace ({psutil.net_if_addrs()})")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    print("RESULT", json.dumps(asyncio.run({"owns": _federation_owns_the_watcher}[name]())),
          flush=True)


def test_federation_starts_the_watcher_with_mdns_and_closes_it_first() -> None:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("unshare or ip not installed: cannot make a private network namespace")
    flags = [] if os.geteuid() == 0 else ["--map-root-user"]
    code = "from tests.test_interface_watch import _child_main; _child_main('owns')"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(["unshare", *flags, "--net", "--", "sh", "-c",
                           'ip link set lo up && exec "$0" -c "$1"', sys.executable, code],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0 and "unshare" in done.stderr and "Operation not permitted" in done.stderr:
        pytest.skip(f"`unshare --net` failed here: {done.stderr.strip()}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"scenario failed ({done.returncode}):\n{done.stderr}"
    result = json.loads(lines[-1].split(" ", 1)[1])
    assert result == {"order": ["watch", "mdns"], "cancelled": True, "refreshed": None,
                      "after": True}


# ---- lan: a veth goes down and up between two real mDNS nodes ---------------------------------

NODE = """
import asyncio, socket, sys, time
from zeroconf import DNSIncoming
from network.discovery.events import Found
from network.discovery.mdns import MdnsDiscovery
from network.discovery.interfaces import InterfaceWatcher
from network.wire.txt import SERVICE_TYPE, PeerAdvert

class OwnQueries(asyncio.DatagramProtocol):
    # Our own browser's multicast questions, looped back: the test's cue that a query went out.
    def __init__(self, addr):
        self.addr = addr
    def datagram_received(self, data, src):
        message = DNSIncoming(data)
        if (src[0] == self.addr and message.is_query()
                and any(q.name == SERVICE_TYPE for q in message.questions)):
            print("QUERY", time.monotonic(), flush=True)

async def main(addr, node_id):
    advert = PeerAdvert(node_id=node_id, boot_id="boot-1", protocol=1, api_port=17615,
                        fingerprint="ab12cd34", model_id="scripted", instances=1, hardware="cpu")
    def on_event(event):
        if isinstance(event, Found):
            print("FOUND", event.advert.node_id, time.monotonic(), flush=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("224.0.0.251", 5353))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                    socket.inet_aton("224.0.0.251") + socket.inet_aton(addr))
    sniffer, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: OwnQueries(addr), sock=sock)
    mdns = MdnsDiscovery(advert, [addr], [addr], on_event, name=node_id)
    await mdns.start()
    async def refresh(reason):
        await mdns.refresh_interfaces()
        print("REFRESHED", time.monotonic(), reason, flush=True)
    watcher = InterfaceWatcher([addr], refresh, interval_s=0.05)
    await watcher.start()
    print("READY", time.monotonic(), flush=True)
    await asyncio.to_thread(sys.stdin.read)
    await watcher.close()
    await mdns.close()
    sniffer.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
def lan() -> Iterator[Any]:
    from tests.netns import NetnsLan, netns_available

    available, why = netns_available()
    if not available:
        pytest.skip(why)
    with NetnsLan(2) as built:
        yield built


@pytest.mark.lan
@pytest.mark.slow
def test_a_node_whose_link_went_down_and_up_is_found_again(lan: Any) -> None:
    """B starts while A's eth0 is down, so neither hears the other. zeroconf's browser asks 4 times
    (about 0.1, 1.1, 5.1 and 14.1 s after start), then never again while its cache is empty. A's
    link comes back right after B's second question: without A's re-announce B would find A at its
    third question, about 4 s later (measured: 3.6 s with the watcher off); with it, at once."""
    from tests.netns import NodeOutput

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}

    def node(i: int, node_id: str) -> NodeOutput:
        proc = lan.spawn(i, [sys.executable, "-c", NODE, lan.addr(i), node_id], cwd=ROOT,
                         env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return NodeOutput(proc)

    def link(state: str) -> None:
        subprocess.run(lan.command(1, ["ip", "link", "set", "eth0", state]), check=True,
                       capture_output=True, timeout=10)

    a = node(1, "node-a")
    a.expect("READY", 20)
    link("down")
    assert "eth0 went down" in a.expect("REFRESHED", 10)
    b = node(2, "node-b")
    b.expect("QUERY", 20)
    second = float(b.expect("QUERY", 5).split()[1])  # the next one is about 4 s away
    healed = time.monotonic()
    link("up")
    assert "eth0 came up" in a.expect("REFRESHED", 10)
    found_at = float(b.expect("FOUND node-a", 10).split()[2])
    print(f"\nB found A {found_at - healed:.3f} s after A's link came back "
          f"({healed - second:.3f} s after B's second question)")
    assert not any(line.startswith("FOUND") for line in b.lines[:-1])
    assert found_at > healed and found_at - healed < 1.5
