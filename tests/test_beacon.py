"""Pushed heartbeats over real UDP on 127.0.0.1: a beating peer needs no HTTP probe; when its
beats stop it is probed again (out of routing within about a second if it crashed, kept if it
only stopped beating); forged, replayed and stale datagrams are dropped, and logged once."""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator

import pytest

from network.discovery.events import Found
from network.federation.client import FederationClient
from network.membership import beacon as beacon_module
from network.membership.beacon import Beacon
from network.membership.monitor import PeerMonitor
from network.membership.table import ChangeKind, Membership, PeerState
from network.trust.signing import beat_mac
from network.trust.swarm_key import SwarmKey
from network.wire import codec
from network.wire.address import Address
from network.wire.beat import Beat
from network.wire.messages import Heartbeat
from swarm.engine.pool import InstancePool
from tests.federation_fixtures import until
from tests.swarm_keys import OTHER_KEY, RING
from tests.swarm_nodes import make_swarm, running
from tests.test_peer_monitor import ME, Changes, FakePeer, monitor_for
from tests.test_pool import ASK, GateBackend, drain


class Node:
    """Our side: the monitor and its beacon, listening on 127.0.0.1 (UDP, any port)."""

    def __init__(self, monitor: PeerMonitor, membership: Membership, changes: Changes,
                 beacon: Beacon, beaten: asyncio.Event) -> None:
        self.monitor, self.membership, self.changes, self.beacon = (monitor, membership,
                                                                    changes, beacon)
        self.beaten = beaten

    async def taken(self, count: int, timeout_s: float) -> None:
        """Wait until the beacon has taken `count` verified beats in all."""
        async with asyncio.timeout(timeout_s):
            while self.beacon.taken < count:
                self.beaten.clear()
                await self.beaten.wait()

    async def out_of_routing(self, node_id: str, since: float, timeout_s: float) -> float:
        """When `node_id` was first suspected or left after `since`."""
        async with asyncio.timeout(timeout_s):
            while True:
                for at, change in self.changes.seen:
                    if at >= since and change.node_id == node_id and change.kind in (
                            ChangeKind.SUSPECTED, ChangeKind.LEFT):
                        return at
                self.changes._new.clear()
                await self.changes._new.wait()

    @property
    def address(self) -> Address:
        assert self.beacon.address is not None
        return Address(*self.beacon.address)


def peer_beacon(peer: FakePeer, to: Address, interval_s: float = 0.5) -> Beacon:
    """The peer's side: beats `peer`'s heartbeat to us, as its node would."""
    def heartbeat() -> Heartbeat:
        return Heartbeat(node_id=peer.node_id, boot_id=peer.boot_id, protocol=ME.protocol,
                         api_port=peer.port, swarm=RING.fingerprint, load=0.25)
    return Beacon(peer.node_id, RING, interval_s, heartbeat=heartbeat, targets=lambda e: [to],
                  on_beat=lambda beat, heartbeat, source: None)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    client = FederationClient(keys=RING)
    changes = Changes()
    monitor, membership = monitor_for(changes, client)
    beaten = asyncio.Event()

    def on_beat(beat: Beat, heartbeat: Heartbeat, source: str) -> None:
        monitor.on_beat(beat, heartbeat, source)
        beaten.set()

    beacon = Beacon(ME.node_id, RING, membership.timings.interval_s,
                    heartbeat=lambda: Heartbeat(node_id=ME.node_id, boot_id=ME.boot_id,
                                                protocol=ME.protocol, api_port=1,
                                                swarm=RING.fingerprint),
                    targets=monitor.beat_targets, on_beat=on_beat)
    await monitor.start()
    assert await beacon.start(["127.0.0.1"], 0)
    yield Node(monitor, membership, changes, beacon, beaten)
    await beacon.close()
    await monitor.close()
    await client.close()


async def test_a_beating_peer_is_not_probed_and_its_crash_is_seen_within_a_second(node) -> None:
    peer = await FakePeer("beat-a").start()
    node.monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
    await node.changes.wait_for(ChangeKind.JOINED, "beat-a", 2.0)  # met over HTTP first
    theirs = peer_beacon(peer, node.address)
    assert await theirs.start(["127.0.0.1"], 0)
    await node.taken(2, 3.0)
    probed = peer.answered
    await node.taken(node.beacon.taken + 4, 4.0)  # two seconds of beats
    assert peer.answered <= probed + 1  # no HTTP probe while the beats keep coming
    record = node.membership.get("beat-a")
    assert record.state is PeerState.ALIVE and record.heartbeat.load == 0.25  # from the beats

    crashed = time.monotonic()
    await theirs.close()
    await peer.crash()
    out_s = await node.out_of_routing("beat-a", crashed, 2.0) - crashed
    await node.changes.wait_for(ChangeKind.LEFT, "beat-a", 2.0, since=crashed)
    print(f"\nbeats stopped + crash -> out of routing {out_s * 1000:.0f} ms")
    assert out_s < 1.2


async def test_a_peer_whose_beats_stop_but_still_answers_stays_alive(node) -> None:
    peer = await FakePeer("mute-b").start()
    node.monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
    await node.changes.wait_for(ChangeKind.JOINED, "mute-b", 2.0)
    theirs = peer_beacon(peer, node.address)
    await theirs.start(["127.0.0.1"], 0)
    await node.taken(3, 3.0)
    await theirs.close()  # a firewall drops its datagrams from now on
    probed = peer.answered
    await peer.answers(probed + 4, timeout_s=5.0)  # probed over HTTP again, every interval
    kinds = [c.kind for _, c in node.changes.seen if c.node_id == "mute-b"]
    assert ChangeKind.LEFT not in kinds
    assert node.membership.get("mute-b").state is PeerState.ALIVE
    await peer.crash()


async def test_our_beats_reach_every_tracked_peer(node) -> None:
    peer = await FakePeer("hears-c").start()
    got: list[Heartbeat] = []
    two = asyncio.Event()

    def hear(beat: Beat, heartbeat: Heartbeat, source: str) -> None:
        got.append(heartbeat)
        if len(got) >= 2:
            two.set()

    theirs = Beacon("hears-c", RING, 10.0, heartbeat=lambda: None,  # type: ignore[arg-type,return-value]
                    targets=lambda everyone: [], on_beat=hear)
    # the peer listens for beats on its API's port number, as a node does
    await theirs.start(["127.0.0.1"], peer.port)
    node.monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
    async with asyncio.timeout(3.0):
        await two.wait()
    assert got[0].node_id == ME.node_id and got[0].nonce is None
    await theirs.close()
    await peer.crash()


async def test_a_peer_beating_from_another_of_its_addresses_is_used_there(node) -> None:
    """A moved machine (a new lease): mDNS still lists its old address with the new one, and its
    beats, which keep it alive, come from the new one. It is used at the new address: before,
    the beats kept it alive at the old one, which nothing probed, and requests went there."""
    peer = await FakePeer("roam-g").start(also=("127.0.0.2",))
    node.monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
    await node.changes.wait_for(ChangeKind.JOINED, "roam-g", 2.0)
    node.monitor.on_discovery(Found(peer.advert(), "127.0.0.1", ("127.0.0.1", "127.0.0.2")))
    assert node.membership.get("roam-g").address.host == "127.0.0.1"  # the one it answers on
    theirs = peer_beacon(peer, node.address)
    assert await theirs.start(["127.0.0.2"], 0)
    try:
        await until(lambda: node.membership.get("roam-g").address.host == "127.0.0.2", 3.0,
                    "the move to the address its beats come from")
        await node.taken(node.beacon.taken + 2, 3.0)
        record = node.membership.get("roam-g")
        assert record.state is PeerState.ALIVE and record.address == Address("127.0.0.2", peer.port)
        assert not [c for _, c in node.changes.seen if c.node_id == "roam-g"
                    and c.kind in (ChangeKind.SUSPECTED, ChangeKind.LEFT)]
    finally:
        await theirs.close()
        await peer.crash()


def datagram(sender: str, seq: int, heartbeat: Heartbeat, *, key: SwarmKey | None = None,
             sent_at: int | None = None) -> bytes:
    key = key or RING.current
    sent_at = int(time.time()) if sent_at is None else sent_at
    beat = Beat(sender, seq, sent_at, codec.encode(heartbeat))
    return beat.pack(key.fingerprint, beat_mac(key, beat.signed))


async def test_forged_replayed_stale_and_garbage_datagrams_are_dropped(node, caplog) -> None:
    peer = await FakePeer("spoof-d").start()
    node.monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
    await node.changes.wait_for(ChangeKind.JOINED, "spoof-d", 2.0)
    hb = Heartbeat(node_id="spoof-d", boot_id=peer.boot_id, protocol=ME.protocol,
                   api_port=peer.port, swarm=RING.fingerprint, load=0.75)
    good = datagram("spoof-d", 5, hb)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caplog.set_level(logging.DEBUG, logger="network.membership")
    last = asyncio.Event()

    class Last(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "seq 3 not above 5" in record.getMessage():
                last.set()

    handler = Last()
    logging.getLogger("network.membership.monitor").addHandler(handler)
    try:
        for data in (b"\xc1garbage", b"\x81" * 3000, datagram("spoof-d", 1, hb, key=OTHER_KEY),
                     datagram("spoof-d", 9, hb, key=OTHER_KEY),
                     datagram("spoof-d", 2, hb, sent_at=int(time.time()) - 3600), good, good,
                     datagram("spoof-d", 3, hb)):
            sock.sendto(data, tuple(node.address))
        async with asyncio.timeout(3.0):
            await last.wait()
    finally:
        sock.close()
        logging.getLogger("network.membership.monitor").removeHandler(handler)
    messages = [r.message for r in caplog.records]
    assert node.beacon.taken == 4  # the good one twice (a replay), the stale one, seq 3
    assert any("seq 5 not above 5" in m for m in messages)
    assert any("off our clock" in m for m in messages)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # one warning per source address, the rest at debug
    assert node.membership.get("spoof-d").heartbeat.load == 0.75  # the good one was taken
    await peer.crash()


async def test_a_suspect_named_by_another_peer_is_checked_at_once(node) -> None:
    quiet = await FakePeer("quiet-e").start()
    gossip = await FakePeer("gossip-f").start()
    for peer in (quiet, gossip):
        node.monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
        await node.changes.wait_for(ChangeKind.JOINED, peer.node_id, 2.0)
    beacons = [peer_beacon(quiet, node.address)]
    await beacons[0].start(["127.0.0.1"], 0)
    await node.taken(2, 3.0)  # quiet-e beats: it rests, no HTTP probe of it
    probed = quiet.answered
    hb = Heartbeat(node_id="gossip-f", boot_id=gossip.boot_id, protocol=ME.protocol,
                   api_port=gossip.port, swarm=RING.fingerprint, suspects=("quiet-e",))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sent = time.monotonic()
        sock.sendto(datagram("gossip-f", 1, hb), tuple(node.address))
        await quiet.answers(probed + 1, timeout_s=1.0)  # probed at once, not in 3 s
        checked_s = time.monotonic() - sent
    finally:
        sock.close()
        for beacon in beacons:
            await beacon.close()
    assert checked_s < 0.4
    assert node.membership.get("quiet-e").state is PeerState.ALIVE  # it answered: still alive
    await quiet.crash()
    await gossip.crash()


async def test_a_heartbeat_naming_many_long_suspects_still_fits_one_datagram() -> None:
    """Sixteen suspects with 64-character ids would not fit 1,200 bytes: the beat still goes out,
    verified by the receiver, naming the first suspects only (the node is never silenced)."""
    long_ids = tuple(f"{k:02d}-" + "x" * 61 for k in range(16))
    got: list[Heartbeat] = []
    heard = asyncio.Event()

    def hear(beat: Beat, heartbeat: Heartbeat, source: str) -> None:
        got.append(heartbeat)
        heard.set()

    receiver = Beacon("hears-d", RING, 10.0, heartbeat=lambda: None,  # type: ignore[arg-type,return-value]
                      targets=lambda everyone: [], on_beat=hear)
    assert await receiver.start(["127.0.0.1"], 0)
    to = Address(*receiver.address)  # type: ignore[misc]
    sender = Beacon(ME.node_id, RING, 10.0,
                    heartbeat=lambda: Heartbeat(node_id=ME.node_id, boot_id=ME.boot_id,
                                                protocol=ME.protocol, api_port=1,
                                                swarm=RING.fingerprint, suspects=long_ids),
                    targets=lambda everyone: [to], on_beat=lambda beat, heartbeat, source: None)
    assert await sender.start(["127.0.0.1"], 0)
    try:
        sender.send_round()
        async with asyncio.timeout(3.0):
            await heard.wait()
    finally:
        await sender.close()
        await receiver.close()
    named = got[0].suspects
    assert 0 < len(named) < len(long_ids) and named == long_ids[:len(named)]


async def test_an_instance_turning_busy_or_idle_is_beaten_at_once_not_an_interval_later(
        monkeypatch) -> None:
    """A busy node's load reaches its peers when it changes, not up to an interval later: the
    coordinator leaves a saturated member out of consensus, so a stale "busy" keeps an idle
    machine out of the next vote. With a 30 s interval, only the pokes can bring these beats
    (pokes 0.3 s apart at least here: 1 % of the interval instead of 20 %)."""
    monkeypatch.setattr(beacon_module, "POKE_GAP", 0.01)
    backend = GateBackend()
    pool = InstancePool([backend], queue_depth=1)  # type: ignore[list-item]
    loads: list[float] = []
    receiver = Beacon("hears-e", RING, 30.0,
                      heartbeat=lambda: Heartbeat(node_id="hears-e", boot_id="b", protocol=1,
                                                  api_port=1, swarm=RING.fingerprint),
                      targets=lambda everyone: [],
                      on_beat=lambda beat, heartbeat, source: loads.append(heartbeat.load))
    assert await receiver.start(["127.0.0.1"], 0)
    to = Address(*receiver.address)  # type: ignore[misc]
    sender = Beacon(ME.node_id, RING, 30.0,
                    heartbeat=lambda: Heartbeat(node_id=ME.node_id, boot_id=ME.boot_id,
                                                protocol=ME.protocol, api_port=1,
                                                swarm=RING.fingerprint, load=pool.load()),
                    targets=lambda everyone: [to], on_beat=lambda beat, heartbeat, source: None)
    pool.watch(sender.poke)  # as Federation.start does
    assert await sender.start(["127.0.0.1"], 0)
    try:
        await until(lambda: loads == [0.0], 3.0, "the first round")
        task = asyncio.create_task(drain(pool))
        await until(lambda: loads[-1:] == [1.0], 3.0, "the busy beat")
        backend.step(ASK.params.max_tokens)
        await task
        await until(lambda: loads[-1:] == [0.0], 3.0, "the idle beat")
        assert loads == [0.0, 1.0, 0.0]  # one beat per change, none in between
    finally:
        await sender.close()
        await receiver.close()
        pool.close()


async def test_a_node_tells_its_peers_of_its_load_when_it_changes(tmp_path, monkeypatch) -> None:
    """Two nodes built as main.py builds them, beating every 10 s (the slowest allowed; pokes at
    least 0.1 s apart here): a's table shows b busy while b generates and idle once it is done,
    each within 2 s."""
    monkeypatch.setattr(beacon_module, "POKE_GAP", 0.01)
    slow = {"federation.heartbeat_interval_s": 10.0}
    nodes = make_swarm(tmp_path, ["a", "b"], SwarmKey.generate(), extra={"a": slow, "b": slow})
    for node in nodes.values():
        node.beats = True
    async with running(nodes):
        a, b = nodes["a"], nodes["b"]
        await until(lambda: a.state_of("b") is PeerState.ALIVE, 5.0, "a to meet b")
        instance = b.pool.instances[0]
        assert instance.on_idle_change == b.federation.beacon.poke  # type: ignore[union-attr]

        def load_of_b() -> float | None:
            peer = a.federation.membership.get("b")
            return peer.heartbeat.load if peer and peer.heartbeat else None

        await until(lambda: load_of_b() == 0.0, 5.0, "b idle in a's table")
        backend = GateBackend()
        instance.backend = backend  # type: ignore[assignment]  # held token by token
        task = asyncio.create_task(drain(b.pool))
        await until(lambda: load_of_b() == 1.0, 2.0, "b busy in a's table")
        backend.step(ASK.params.max_tokens)
        await task
        await until(lambda: load_of_b() == 0.0, 2.0, "b idle again in a's table")
