"""The heartbeat adapter over real HTTP on 127.0.0.1: joins, crashes, returns, busy peers, manual peers."""
from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

import pytest
from aiohttp import web

from network.discovery.events import AddressAdded, AddressRemoved, Found, Gone
from network.federation.client import FederationClient
from network.membership.monitor import PeerMonitor
from network.membership.table import Change, ChangeKind, Membership, PeerState, Timings
from network.trust.identity import NodeIdentity
from network.trust.signing import KEY_ID_HEADER, sign_reply
from network.trust.swarm_key import KeyRing, SwarmKey
from network.wire import codec
from network.wire.address import Address
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert
from tests.swarm_keys import KEY, OTHER_KEY, RING

FP = RING.fingerprint
ME = NodeIdentity(node_id="me-000000", boot_id="boot-me", name="test", fingerprint=FP)


class FakePeer:
    """A tiny /v1/federation/health server; `crash()` closes it like a killed process would.

    It signs its heartbeat with `keys` like a real node (the key the prober names, else its
    current one); `keys=None` answers unsigned, `claim` overrides the key id it sends.
    """

    def __init__(self, node_id: str, boot_id: str = "boot-1", *, content_type: str = codec.JSON,
                 busy_s: float = 0.0, echo_nonce: bool = True, keys: KeyRing | None = RING,
                 claim: str | None = None) -> None:
        self.node_id, self.boot_id = node_id, boot_id
        self.content_type, self.busy_s, self.echo_nonce = content_type, busy_s, echo_nonce
        self.keys, self.claim = keys, claim
        self.clock_offset_s = 0.0
        self.port = 0
        self.answered = 0
        self._answer = asyncio.Event()
        self._runner: web.AppRunner | None = None

    async def start(self, also: tuple[str, ...] = ()) -> FakePeer:
        """Serve on 127.0.0.1 (any port), and on the same port of each loopback host in `also`."""
        app = web.Application()
        app.router.add_get("/v1/federation/health", self._health)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        for host in also:
            await web.TCPSite(self._runner, host, self.port).start()
        return self

    async def crash(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def advert(self) -> PeerAdvert:
        return PeerAdvert(node_id=self.node_id, boot_id=self.boot_id, protocol=ME.protocol,
                          api_port=self.port, fingerprint=FP, hardware="cpu 2")

    async def answers(self, count: int, timeout_s: float) -> None:
        """Wait until this server has answered `count` probes in all."""
        async with asyncio.timeout(timeout_s):
            while self.answered < count:
                self._answer.clear()
                await self._answer.wait()

    async def _health(self, request: web.Request) -> web.Response:
        if self.busy_s:
            await asyncio.sleep(self.busy_s)  # simulated work: every core is generating
        asked = request.query["nonce"]
        nonce = asked if self.echo_nonce else "not-yours"
        key = None
        if self.keys is not None:
            key = self.keys.get(request.headers.get(KEY_ID_HEADER)) or self.keys.current
        heartbeat = Heartbeat(node_id=self.node_id, boot_id=self.boot_id, protocol=ME.protocol,
                              api_port=self.port, swarm=key.fingerprint if key else FP, load=0.5,
                              nonce=nonce)
        self.answered += 1
        self._answer.set()
        body = codec.encode(heartbeat, self.content_type)
        headers = sign_reply(key, asked, body) if key else {}
        if self.claim is not None:
            headers[KEY_ID_HEADER] = self.claim
        if self.clock_offset_s:
            headers["Date"] = formatdate(time.time() + self.clock_offset_s, usegmt=True)
        return web.Response(body=body, content_type=self.content_type, headers=headers)


class Changes:
    """Every change the monitor reports, with its arrival time; tests wait on predicates."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, Change]] = []
        self._new = asyncio.Event()

    def __call__(self, change: Change) -> None:
        self.seen.append((time.monotonic(), change))
        self._new.set()

    async def wait_for(self, kind: ChangeKind, node_id: str, timeout_s: float,
                       since: float = 0.0) -> Change:
        """The first `kind` change for `node_id` that arrived after `since`."""
        async with asyncio.timeout(timeout_s):
            while True:
                for at, change in self.seen:
                    if at >= since and change.kind is kind and change.node_id == node_id:
                        return change
                self._new.clear()
                await self._new.wait()

    def at(self, change: Change) -> float:
        return next(t for t, c in self.seen if c is change)


@pytest.fixture
async def client() -> AsyncIterator[FederationClient]:
    """The node's peer client: it owns the one session the monitor probes through."""
    peers = FederationClient(keys=RING)
    yield peers
    await peers.close()


def monitor_for(changes: Changes, client: FederationClient,
                timings: Timings | None = None) -> tuple[PeerMonitor, Membership]:
    timings = timings or Timings()
    membership = Membership(ME.node_id, ME.protocol, FP, self_boot_id=ME.boot_id, timings=timings)
    monitor = PeerMonitor(membership, ME, timings, keys=RING, on_change=changes,
                          rng=random.Random(7), session=client.session)
    return monitor, membership


@pytest.fixture
async def running(client) -> AsyncIterator[tuple[PeerMonitor, Membership, Changes]]:
    changes = Changes()
    monitor, membership = monitor_for(changes, client)
    await monitor.start()
    yield monitor, membership, changes
    await monitor.close()


async def test_join_crash_and_return(running, record_property: Callable[[str, object], None]
                                     ) -> None:
    monitor, membership, changes = running
    peer = await FakePeer("peer-a").start()
    found = time.monotonic()
    monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
    joined = await changes.wait_for(ChangeKind.JOINED, "peer-a", 1.0)
    join_s = changes.at(joined) - found
    assert [p.node_id for p in membership.routable()] == ["peer-a"]
    assert monitor.snapshot()[0].address == Address("127.0.0.1", peer.port)
    assert monitor.snapshot()[0].heartbeat.load == 0.5

    crashed = time.monotonic()
    await peer.crash()
    left = await changes.wait_for(ChangeKind.LEFT, "peer-a", 1.5)
    leave_s = changes.at(left) - crashed
    out_s = min(t for t, c in changes.seen if t >= crashed) - crashed  # suspect or left
    assert membership.routable() == () and left.peer.state is PeerState.DEAD

    restarted = time.monotonic()
    await peer.start()  # same port, same boot: the link came back
    back = await changes.wait_for(ChangeKind.RECOVERED, "peer-a", 1.5, since=restarted)
    back_s = changes.at(back) - restarted
    await peer.crash()

    peer.boot_id = "boot-2"
    await peer.start()  # a real restart: a new boot id in the heartbeat
    reborn = time.monotonic()
    await changes.wait_for(ChangeKind.RESTARTED, "peer-a", 2.5, since=reborn - 1.0)
    await changes.wait_for(ChangeKind.JOINED, "peer-a", 2.5, since=reborn - 1.0)
    assert membership.get("peer-a").advert.boot_id == "boot-2"
    await peer.crash()
    for name, value in (("join_s", join_s), ("crash_to_unroutable_s", out_s),
                        ("crash_to_left_s", leave_s), ("recover_s", back_s)):
        record_property(name, round(value, 4))
    print(f"\nfound->joined {join_s * 1000:.1f} ms, crash->out of routing {out_s * 1000:.0f} ms, "
          f"crash->left {leave_s * 1000:.0f} ms, answering->recovered {back_s * 1000:.0f} ms")
    assert leave_s < 1.5


async def test_a_busy_peer_is_never_declared_dead(running) -> None:
    monitor, membership, changes = running
    peer = await FakePeer("busy-b", content_type=codec.MSGPACK).start()
    monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
    await changes.wait_for(ChangeKind.JOINED, "busy-b", 1.0)
    timings = membership.timings
    peer.busy_s = 1.5 * timings.suspect_after_s  # slower than every silence limit but one
    assert timings.dead_after_s < peer.busy_s < timings.request_timeout_s
    busy_from = peer.answered
    await peer.answers(busy_from + 3, timeout_s=10.0)
    kinds = [c.kind for _, c in changes.seen if c.node_id == "busy-b"]
    assert ChangeKind.LEFT not in kinds and ChangeKind.UNREACHABLE not in kinds, kinds
    assert membership.get("busy-b").state is not PeerState.DEAD
    await peer.crash()


async def test_a_peer_slower_than_the_request_timeout_is_suspect_never_dead(client) -> None:
    """Its host accepts every probe, the answers come after the client gave up: busy, so
    SUSPECT (out of routing) however long that lasts (up to `hung_s`), never LEFT; routable
    again on its first answer in time."""
    timings = Timings(interval_s=0.1, connect_timeout_s=0.1, request_timeout_s=0.3,
                      suspect_after_s=0.2)
    changes = Changes()
    monitor, membership = monitor_for(changes, client, timings)
    await monitor.start()
    try:
        peer = await FakePeer("slow-f").start()
        monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
        await changes.wait_for(ChangeKind.JOINED, "slow-f", 2.0)
        peer.busy_s = 4 * timings.give_up_s  # every probe times out after its TCP accept
        busy_from = peer.answered
        await changes.wait_for(ChangeKind.SUSPECTED, "slow-f", 2.0)
        await peer.answers(busy_from + 3, timeout_s=20.0)  # three answers of 2 s: 6 s busy
        record = membership.get("slow-f")
        assert record is not None and record.state is PeerState.SUSPECT and record.busy, record
        assert "busy" in record.reason
        kinds = [c.kind for _, c in changes.seen if c.node_id == "slow-f"]
        assert ChangeKind.LEFT not in kinds and ChangeKind.UNREACHABLE not in kinds, kinds
        peer.busy_s = 0.0
        back = await changes.wait_for(ChangeKind.RECOVERED, "slow-f", 5.0)
        assert back.peer is not None and back.peer.routable
        await peer.crash()
    finally:
        await monitor.close()


async def test_a_manual_address_is_learned_from_its_heartbeat(running) -> None:
    monitor, membership, changes = running
    peer = await FakePeer("static-c", content_type=codec.MSGPACK).start()
    monitor.on_discovery(AddressAdded(Address("127.0.0.1", peer.port)))
    joined = await changes.wait_for(ChangeKind.JOINED, "static-c", 1.0)
    assert joined.peer.address == Address("127.0.0.1", peer.port)
    assert joined.peer.advert == PeerAdvert.from_heartbeat(joined.peer.heartbeat)
    await peer.crash()
    await changes.wait_for(ChangeKind.LEFT, "static-c", 1.5)
    await peer.start()
    await changes.wait_for(ChangeKind.RECOVERED, "static-c", 1.5)
    monitor.on_discovery(AddressRemoved(Address("127.0.0.1", peer.port)))
    assert membership.get("static-c") is None
    assert changes.seen[-1][1].kind is ChangeKind.LEFT
    await peer.crash()


async def test_an_unanswered_manual_address_is_reported(running) -> None:
    monitor, membership, _ = running
    peer = await FakePeer("gone-d").start()
    await peer.crash()  # a port that refuses connections
    reported = asyncio.Event()
    handler = logging.Handler()
    handler.emit = lambda record: reported.set()  # type: ignore[method-assign]
    logger = logging.getLogger("network.membership.target")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        monitor.add_address("127.0.0.1", peer.port)
        async with asyncio.timeout(2.0):
            await reported.wait()  # "manual peer ...: connect failed"
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    assert "connect failed" in monitor.unanswered()[f"127.0.0.1:{peer.port}"]
    assert len(membership) == 0


async def test_listing_this_node_as_a_manual_peer_is_harmless(running) -> None:
    monitor, membership, changes = running
    me = await FakePeer(ME.node_id, ME.boot_id).start()
    monitor.add_address("127.0.0.1", me.port)
    await me.answers(1, 2.0)
    assert len(membership) == 0 and changes.seen == []
    await me.crash()


async def test_a_wrong_nonce_never_counts(running) -> None:
    monitor, membership, changes = running
    liar = await FakePeer("liar-e", echo_nonce=False).start()
    monitor.on_discovery(Found(liar.advert(), "127.0.0.1"))
    gave_up = await changes.wait_for(ChangeKind.UNREACHABLE, "liar-e", 2.0)
    assert "nonce" in gave_up.reason and membership.routable() == ()
    await liar.crash()


async def test_goodbye_forgets_and_discovery_before_start_is_kept(client) -> None:
    changes = Changes()
    monitor, membership = monitor_for(changes, client)
    peer = await FakePeer("early-f").start()
    monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))  # before start(): must not be lost
    await monitor.start()
    try:
        await changes.wait_for(ChangeKind.JOINED, "early-f", 1.0)
        monitor.on_discovery(Gone("early-f"))
        assert membership.get("early-f") is None
        assert changes.seen[-1][1].kind is ChangeKind.LEFT
    finally:
        await monitor.close()
        await peer.crash()


async def test_a_foreign_peer_is_never_probed(running) -> None:
    monitor, membership, changes = running
    peer = await FakePeer("other-g").start()
    foreign = PeerAdvert(node_id="other-g", boot_id="boot-1", protocol=ME.protocol,
                         api_port=peer.port, fingerprint="ffff0000")
    monitor.on_discovery(Found(foreign, "127.0.0.1"))
    assert changes.seen[-1][1].kind is ChangeKind.FOREIGN
    monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))  # it joined our swarm after all
    await changes.wait_for(ChangeKind.JOINED, "other-g", 1.0)
    assert peer.answered >= 1 and membership.get("other-g").state is PeerState.ALIVE
    await peer.crash()


async def test_a_multi_homed_peer_is_kept_where_it_answers(running) -> None:
    monitor, membership, changes = running
    # It listens on 127.0.0.1 only: its first address, ::1, refuses (or does not exist here);
    # any machine has both loopbacks' names, where macOS has no 127.0.0.2.
    peer = await FakePeer("multi-h").start()
    monitor.on_discovery(Found(peer.advert(), "::1", ("::1", "127.0.0.1")))
    joined = await changes.wait_for(ChangeKind.JOINED, "multi-h", 1.0)
    assert joined.peer.address == Address("127.0.0.1", peer.port)
    monitor.on_discovery(Found(peer.advert(), "::1", ("::1", "127.0.0.1")))
    assert membership.get("multi-h").address == Address("127.0.0.1", peer.port)  # no flapping back
    await peer.crash()


@pytest.mark.parametrize(("keys", "claim", "reason"), [
    (None, None, "no swarm key (its answer is not signed)"),
    (KeyRing(OTHER_KEY), None, f"another swarm key (fingerprint {OTHER_KEY.fingerprint})"),
    (KeyRing(OTHER_KEY), FP,  # claims our key id without having our key
     f"another swarm key (fingerprint {FP} claimed, signature does not verify)"),
])
async def test_a_peer_without_our_key_is_foreign_and_never_routed(running, keys, claim,
                                                                 reason) -> None:
    monitor, membership, changes = running
    stranger = await FakePeer("stranger-i", keys=keys, claim=claim).start()
    monitor.on_discovery(Found(stranger.advert(), "127.0.0.1"))  # its TXT claims our fingerprint
    refused = await changes.wait_for(ChangeKind.FOREIGN, "stranger-i", 2.0)
    assert refused.reason == reason and membership.routable() == ()
    assert membership.get("stranger-i").state is PeerState.FOREIGN
    answered = stranger.answered
    monitor.on_discovery(Found(stranger.advert(), "127.0.0.1"))  # an mDNS re-announcement
    assert membership.get("stranger-i").state is PeerState.FOREIGN  # no flapping back to joining
    assert [c.kind for _, c in changes.seen].count(ChangeKind.JOINED) == 0
    assert stranger.answered == answered  # a refused peer is not probed again
    await stranger.crash()


async def test_a_manual_peer_without_our_key_is_listed_foreign_under_its_claimed_id(running
                                                                                    ) -> None:
    monitor, membership, changes = running
    stranger = await FakePeer("manual-j", keys=KeyRing(OTHER_KEY)).start()
    monitor.add_address("127.0.0.1", stranger.port)
    refused = await changes.wait_for(ChangeKind.FOREIGN, "manual-j", 2.0)
    assert refused.reason == f"another swarm key (fingerprint {OTHER_KEY.fingerprint})"
    assert refused.peer.address == Address("127.0.0.1", stranger.port) and membership.routable() == ()
    await stranger.crash()
    stranger.keys, stranger.boot_id = RING, "boot-2"  # restarted with our key
    await stranger.start()
    await changes.wait_for(ChangeKind.JOINED, "manual-j", 2.0)
    assert [p.node_id for p in membership.routable()] == ["manual-j"]
    await stranger.crash()


async def test_an_unsigned_answer_cannot_take_over_a_members_address(client) -> None:
    changes = Changes()
    monitor, membership = monitor_for(changes, client)
    await monitor.start()
    member = await FakePeer("member-k").start()
    impostor = await FakePeer("member-k", keys=None).start()  # claims the member's id
    try:
        monitor.on_discovery(Found(member.advert(), "127.0.0.1"))
        await changes.wait_for(ChangeKind.JOINED, "member-k", 1.0)
        monitor.add_address("127.0.0.1", impostor.port)
        await impostor.answers(2, 2.0)
        peer = membership.get("member-k")
        assert peer is not None and peer.state is PeerState.ALIVE
        assert peer.address == Address("127.0.0.1", member.port)
        assert "not signed" in monitor.unanswered()[f"127.0.0.1:{impostor.port}"]
    finally:
        await monitor.close()
        await member.crash()
        await impostor.crash()


async def test_during_a_rotation_a_peer_with_only_the_previous_key_stays_a_member(client) -> None:
    new = SwarmKey(bytes(range(200, 232)))
    rotated = KeyRing(new, (KEY,))
    me = NodeIdentity(node_id="me-000000", boot_id="boot-me", name="test",
                      fingerprint=new.fingerprint)
    changes = Changes()
    timings = Timings()
    membership = Membership(me.node_id, me.protocol, new.fingerprint, self_boot_id=me.boot_id,
                            timings=timings, also_accepted=rotated.accepted)
    monitor = PeerMonitor(membership, me, timings, keys=rotated, on_change=changes,
                          session=client.session)
    await monitor.start()
    old = await FakePeer("old-l").start()  # signs with KEY only; advertises KEY's fingerprint
    try:
        monitor.on_discovery(Found(old.advert(), "127.0.0.1"))
        joined = await changes.wait_for(ChangeKind.JOINED, "old-l", 1.0)
        assert joined.peer is not None and joined.peer.heartbeat is not None
        assert joined.peer.heartbeat.swarm == KEY.fingerprint
    finally:
        await monitor.close()
        await old.crash()


async def test_a_peer_whose_clock_is_far_off_is_reported_once(running, caplog) -> None:
    monitor, _membership, changes = running
    peer = await FakePeer("skewed-m").start()
    peer.clock_offset_s = 90.0  # its signed votes would be refused as stale
    with caplog.at_level(logging.WARNING, logger="network.membership.monitor"):
        monitor.on_discovery(Found(peer.advert(), "127.0.0.1"))
        await changes.wait_for(ChangeKind.JOINED, "skewed-m", 1.0)
        await peer.answers(3, 3.0)
    warnings = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
    assert len(warnings) == 1 and "NTP" in warnings[0]
    assert re.search(r"is \+(89|90|91) s off ours", warnings[0]), warnings[0]  # Date: 1 s steps
    await peer.crash()


async def test_probed_addresses_stay_bounded_however_many_a_lan_device_advertises(client) -> None:
    """A device floods mDNS with node ids, each listing many addresses: at most MAX_ADDRESSES
    are probed per peer, and an evicted peer's addresses are no longer probed."""
    from network.membership.monitor import MAX_ADDRESSES

    timings = Timings(interval_s=0.05, suspect_after_s=0.1)
    changes = Changes()
    membership = Membership(ME.node_id, ME.protocol, FP, self_boot_id=ME.boot_id,
                            timings=timings, max_peers=2)
    monitor = PeerMonitor(membership, ME, timings, keys=RING, on_change=changes,
                          session=client.session)
    await monitor.start()
    hosts = tuple(f"127.0.0.{k}" for k in range(2, 40))  # nothing listens on port 9 there
    try:
        for n in range(8):
            node = f"flood-{n}"
            advert = PeerAdvert(node_id=node, boot_id="b", protocol=ME.protocol, api_port=9,
                                fingerprint=FP)
            monitor.on_discovery(Found(advert, hosts[0], hosts))
            if membership.get(node) is not None:  # tracked: it dies (refused), making room
                await changes.wait_for(ChangeKind.UNREACHABLE, node, 5.0)
            assert len(monitor._targets) <= membership.max_peers * MAX_ADDRESSES
        assert len({t.node_id for t in monitor._targets.values()}) <= membership.max_peers
    finally:
        await monitor.close()
