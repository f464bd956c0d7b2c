"""The heartbeat adapter: probes every known peer's /v1/federation/health and feeds `Membership`.

Every probe carries a fresh nonce and our key id; the answer must be signed over that nonce with
a key this node accepts. A peer whose answer is unsigned or signed with another key becomes
FOREIGN (never a member, never a candidate) with the reason shown by `main.py peers`.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import platform
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime

import aiohttp

from network.discovery.events import AddressAdded, AddressRemoved, DiscoveryEvent, Found, Gone
from network.discovery.privacy import local_network_hint
from network.membership.table import Change, ChangeKind, Membership, Peer, PeerState, Timings
from network.trust.identity import NodeIdentity
from network.trust.signing import KEY_ID_HEADER, MAX_SKEW_S, check_reply
from network.trust.swarm_key import KeyRing
from network.wire import codec
from network.wire.address import Address
from network.wire.messages import Heartbeat
from network.wire.paths import HEALTH_PATH
from network.wire.txt import PeerAdvert
from swarm.errors import PeerError

log = logging.getLogger(__name__)

MAX_HEARTBEAT_BYTES = 64 * 1024
JITTER = 0.1  # probe intervals vary by +-10 % so peers do not probe in lockstep
CONFIRM = 0.25  # after a miss that left a peer suspect, probe again this fraction of the interval
_ACCEPT = f"{codec.MSGPACK}, {codec.JSON};q=0.5"
MAX_ADDRESSES = 8  # addresses probed per peer (an mDNS record may list any number)
# Our own side has no network: no route (Wi-Fi off, cable out), the interface or address gone.
LOCAL_ERRNOS = frozenset({errno.ENETUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL})


class ProbeFailed(PeerError):
    """One probe got no valid heartbeat; the message is the reason shown in the peer table."""


class NetworkUnreachable(ProbeFailed):
    """This node's own network is down (no route, no interface, no address): not the peer's fault."""


class ProbeRefused(ProbeFailed):
    """The answer is not signed by a key we accept: the peer belongs to another swarm."""

    def __init__(self, reason: str, heartbeat: Heartbeat | None) -> None:
        super().__init__(reason)
        self.heartbeat = heartbeat  # as the peer claims it (unauthenticated), if it decoded


@dataclass
class _Target:
    """One address we probe; a static target learns its node id from the first answer."""

    address: Address
    node_id: str | None
    static: bool = False
    mdns: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    failure: str = ""  # last failure while the node id is still unknown
    unreachable: bool = False  # the last probe found this node's own network down


class PeerMonitor:
    """Keeps `membership` current by probing each known address every `timings.interval_s`.

    Successes and failures count against a peer only on the address the table holds for it; a
    peer that is not alive there moves to any other known address of it that answers. Dead peers
    keep being probed, so a restart or a healed link is seen on the next probe.
    """

    def __init__(self, membership: Membership, identity: NodeIdentity, timings: Timings, *,
                 keys: KeyRing, on_change: Callable[[Change], None],
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None,
                 session: Callable[[], aiohttp.ClientSession],
                 on_network_down: Callable[[], None] | None = None) -> None:
        if timings != membership.timings:
            raise ValueError("PeerMonitor and its Membership must use the same Timings")
        self._membership = membership
        self._identity = identity
        self._keys = keys
        self._wall_clock = wall_clock
        self._skewed: set[Address] = set()  # addresses already warned about their clock
        self._privacy_warned = False  # macOS Local Network privacy: warned once
        self._timings = timings
        self._on_change = on_change
        self._on_network_down = on_network_down  # every member's last probe: network unreachable
        self._clock = clock
        self._rng = rng or random.Random()
        self._targets: dict[Address, _Target] = {}
        self._shared_session = session  # the node's one peer session (FederationClient.session)
        self._session: aiohttp.ClientSession | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._retired: set[asyncio.Task[None]] = set()  # cancelled probers not yet finished

    def snapshot(self) -> tuple[Peer, ...]:
        """Every tracked peer, sorted by node id."""
        return self._membership.peers()

    def reconsider(self, node_id: str) -> Peer | None:
        """Apply a changed approval of `node_id` now (changes reported as usual); its record."""
        self._emit(self._membership.reconsider(node_id, self._clock()))
        return self._membership.get(node_id)

    def rekey(self, keys: KeyRing) -> None:
        """Probe with `keys` from now on (this node joined a swarm): every foreign peer is
        probed again at once, members of the new swarm become members within a probe."""
        self._keys = keys
        self._emit(self._membership.rekey(keys.fingerprint, keys.accepted, self._clock()))
        for target in self._targets.values():
            target.wake.set()

    def unanswered(self) -> dict[str, str]:
        """Manual addresses that never answered, with the last reason (for `main.py peers`)."""
        return {str(t.address): t.failure for t in self._targets.values()
                if t.static and t.node_id is None and t.failure}

    async def start(self) -> None:
        """Take the node's peer session and start probing every address known so far. Its
        connections are not kept alive: each probe connects afresh, so a vanished peer fails at
        connect, never on a stale kept-alive socket."""
        if self._session is not None:
            raise RuntimeError("PeerMonitor already started")
        self._session = self._shared_session()
        self._ticker = asyncio.create_task(self._tick(), name="membership-tick")
        for target in self._targets.values():
            self._spawn(target)

    async def close(self) -> None:
        """Stop every prober."""
        tasks = [t.task for t in self._targets.values() if t.task]
        tasks += [t for t in (self._ticker, *self._retired) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for target in self._targets.values():
            target.task = None
        self._ticker = None
        self._session = None  # the session is its owner's (the peer client) to close

    def on_discovery(self, event: DiscoveryEvent) -> None:
        """Apply one discovery event (mDNS or manual); a new or updated peer is probed at once."""
        now = self._clock()
        if isinstance(event, Found):
            self._found(event, now)
        elif isinstance(event, Gone):
            self._emit(self._membership.removed(event.node_id))
            for target in list(self._targets.values()):
                if target.mdns and target.node_id == event.node_id:
                    target.mdns = False
                    self._drop_if_unused(target)
        elif isinstance(event, AddressAdded):
            self.add_address(event.address.host, event.address.port)
        elif isinstance(event, AddressRemoved):
            self.remove_address(event.address.host, event.address.port)

    def _found(self, event: Found, now: float) -> None:
        """Track the peer at the address it answers on (else its first) and probe all of them."""
        node_id, port = event.advert.node_id, event.advert.api_port
        hosts = (event.addresses or (event.address,))[:MAX_ADDRESSES]
        addresses = [Address(host, port) for host in hosts]
        peer = self._membership.get(node_id)
        keep = next((a for a in addresses if peer is not None and a == peer.address),
                    addresses[0])
        self._emit(self._membership.discovered(event.advert, keep, now))
        for other in list(self._targets.values()):
            if other.mdns and other.node_id == node_id and other.address not in addresses:
                other.mdns = False
                self._drop_if_unused(other)
        if self._membership.get(node_id) is None:
            return  # ignored: our own id, or the table is full
        for address in addresses:
            target = self._target(address, node_id)
            target.mdns, target.node_id = True, node_id
            target.wake.set()

    def add_address(self, host: str, port: int) -> None:
        """Probe a manual peer address; its first heartbeat tells us who it is."""
        target = self._target(Address(host, port), None)
        target.static = True
        target.wake.set()

    def remove_address(self, host: str, port: int) -> None:
        """Stop probing a manual address; a peer known only through it is forgotten."""
        target = self._targets.get(Address(host, port))
        if target is None or not target.static:
            return
        target.static = False
        peer = self._membership.get(target.node_id) if target.node_id else None
        elsewhere = any(t is not target and t.node_id == target.node_id
                        for t in self._targets.values())
        if peer is not None and peer.address == target.address and not target.mdns \
                and not elsewhere:
            self._emit(self._membership.removed(peer.node_id))
        self._drop_if_unused(target)

    def _target(self, address: Address, node_id: str | None) -> _Target:
        target = self._targets.get(address)
        if target is None:
            target = self._targets[address] = _Target(address, node_id)
            if self._session is not None:
                self._spawn(target)
        return target

    def _spawn(self, target: _Target) -> None:
        target.task = asyncio.create_task(self._probe_loop(target), name=f"probe {target.address}")

    def _drop_if_unused(self, target: _Target) -> None:
        if target.static or target.mdns:
            return
        del self._targets[target.address]
        task, target.task = target.task, None
        if task is not None and not task.done():
            task.cancel()
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)

    async def _probe_loop(self, target: _Target) -> None:
        interval = self._timings.interval_s
        loop = asyncio.get_running_loop()
        while True:
            target.wake.clear()
            started = loop.time()
            confirm = await self._probe_once(target)
            if target.node_id == self._identity.node_id:
                log.info("manual peer %s is this node; not probing it", target.address)
                return
            delay = interval * (CONFIRM if confirm else 1) * self._rng.uniform(1 - JITTER, 1 + JITTER)
            try:
                async with asyncio.timeout_at(started + delay):
                    await target.wake.wait()
            except TimeoutError:
                pass

    async def _probe_once(self, target: _Target) -> bool:
        """Probe once; True when a miss left the peer suspect (confirm soon, not a full interval)."""
        peer = self._membership.get(target.node_id) if target.node_id else None
        if peer is not None and peer.state is PeerState.FOREIGN and not target.static:
            return False  # foreign peers are never probed; a new advert (Found) can change that
        try:
            heartbeat = await self.probe(target.address)
        except ProbeRefused as exc:
            self._refused(target, exc)
            return False
        except ProbeFailed as exc:
            target.unreachable = isinstance(exc, NetworkUnreachable)
            self._failed(target, str(exc))
            if target.unreachable:
                self._check_network()
            peer = self._membership.get(target.node_id) if target.node_id else None
            return peer is not None and peer.state in (PeerState.SUSPECT, PeerState.JOINING)
        target.unreachable = False
        self._answered(target, heartbeat)
        return False

    def _check_network(self) -> None:
        """Tell the owner when every known peer's last probe found our own network down."""
        known = [t for t in self._targets.values() if t.node_id is not None]
        if self._on_network_down is not None and known and all(t.unreachable for t in known):
            self._on_network_down()

    async def probe(self, address: Address) -> Heartbeat:
        """One GET of the heartbeat at `address`, signed over a fresh nonce; every way it can go
        wrong raises `ProbeFailed` (`ProbeRefused`: signed with a key this node does not accept)."""
        if self._session is None:
            raise ProbeFailed("monitor closed")
        nonce = secrets.token_urlsafe(12)
        url = f"http://{address}{HEALTH_PATH}"
        t = self._timings
        timeout = aiohttp.ClientTimeout(total=t.request_timeout_s, sock_connect=t.connect_timeout_s)
        headers = {"Accept": _ACCEPT, "User-Agent": f"local-swarm/{self._identity.node_id}",
                   KEY_ID_HEADER: self._keys.fingerprint}
        try:
            async with self._session.get(url, params={"nonce": nonce}, headers=headers,
                                         timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise ProbeFailed(f"HTTP {response.status}")
                body = bytearray()
                async for chunk in response.content.iter_any():
                    body += chunk
                    if len(body) > MAX_HEARTBEAT_BYTES:
                        raise ProbeFailed(f"heartbeat over {MAX_HEARTBEAT_BYTES} bytes")
                kind = response.headers.get("Content-Type")
                self._check_clock(address, response.headers.get("Date"))
                wrong_key = check_reply(self._keys, nonce, bytes(body), response.headers)
                if wrong_key is not None:
                    raise ProbeRefused(wrong_key, _claimed(bytes(body), kind))
                heartbeat = codec.decode(bytes(body), kind, Heartbeat,
                                         max_bytes=MAX_HEARTBEAT_BYTES)
        except aiohttp.ClientConnectorError as exc:
            if exc.os_error.errno in LOCAL_ERRNOS:
                raise NetworkUnreachable(f"connect failed ({exc.os_error.strerror})") from exc
            raise ProbeFailed(self._connect_failed(exc.os_error, address)) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ProbeFailed(f"no TCP accept in {self._timings.connect_timeout_s} s") from exc
        except TimeoutError as exc:
            raise ProbeFailed(f"no answer in {self._timings.request_timeout_s} s") from exc
        except aiohttp.ClientError as exc:
            raise ProbeFailed(f"{type(exc).__name__}: {exc}") from exc
        except codec.WireDecodeError as exc:
            raise ProbeFailed(f"bad heartbeat: {exc}") from exc
        except ValueError as exc:  # a host name yarl or IDNA refuses
            raise ProbeFailed(f"bad address {address}: {exc}") from exc
        if heartbeat.nonce != nonce:
            raise ProbeFailed("heartbeat does not echo our nonce")
        return heartbeat

    def _connect_failed(self, error: OSError, address: Address) -> str:
        """The reason a connect failed; on macOS, with what to allow (logged once as a warning)."""
        reason = f"connect failed ({error.strerror or error})"
        hint = local_network_hint(platform.system(), error.errno, address.host)
        if hint is None:
            return reason
        if not self._privacy_warned:
            self._privacy_warned = True
            log.warning("cannot reach the peer at %s (No route to host): macOS keeps this app off "
                        "the local network; %s", address, hint)
        return f"{reason}: {hint}"

    def _check_clock(self, address: Address, date: str | None) -> None:
        """Warn once per address when a peer's clock (its HTTP Date) is far enough off ours that
        the signed requests between us will be refused as stale."""
        skew = _clock_skew(date, self._wall_clock())
        if skew is None or abs(skew) < MAX_SKEW_S - 5 or address in self._skewed:
            return
        if len(self._skewed) < 1024:
            self._skewed.add(address)
            log.warning("the clock of the peer at %s is %+.0f s off ours: the votes and requests "
                        "signed between us will be refused as stale (limit %.0f s); enable NTP "
                        "on both machines", address, skew, MAX_SKEW_S)

    def _answered(self, target: _Target, heartbeat: Heartbeat) -> None:
        now = self._clock()
        m = self._membership
        node_id = heartbeat.node_id
        if target.node_id != node_id:
            if not target.static:  # an mDNS address now answers as someone else
                if target.node_id is not None:
                    self._emit(m.heartbeat_failed(target.node_id, now, f"answered as {node_id!r}"))
                return
            if target.node_id is not None:
                self._failed(target, f"address now answers as {node_id!r}")
            log.info("%s answers as node %s", target.address, node_id)
            target.node_id, target.failure = node_id, ""
        if node_id == self._identity.node_id:
            return
        peer = m.get(node_id)
        if peer is None and not target.static:
            return
        address = target.address
        if peer is None or (peer.address != address and peer.state is not PeerState.ALIVE) or (
                target.static and peer.address == address and _advert_stale(peer, heartbeat)):
            hardware = peer.advert.hardware if peer else ""
            self._emit(m.discovered(PeerAdvert.from_heartbeat(heartbeat, hardware), address, now))
            peer = m.get(node_id)
        if peer is not None and peer.address == address:
            self._emit(m.heartbeat_ok(node_id, heartbeat, now))

    def _refused(self, target: _Target, refused: ProbeRefused) -> None:
        """Mark the peer at this address foreign, unless the unauthenticated answer claims a
        member that answers elsewhere (then it is only a failed probe of this address)."""
        claimed = refused.heartbeat
        node_id = target.node_id or (claimed.node_id if claimed else None)
        reason = str(refused)
        peer = self._membership.get(node_id) if node_id else None
        address = target.address
        if node_id is None or node_id == self._identity.node_id or (
                peer is not None and peer.address != address) or (peer is None and claimed is None):
            self._failed(target, reason)
            return
        if target.node_id is None:
            log.info("%s answers as node %s, %s", target.address, node_id, reason)
            target.node_id, target.failure = node_id, ""
        if peer is not None:
            advert = peer.advert if claimed is None else replace(peer.advert,
                                                                  pairing=claimed.pairing)
        else:
            advert = replace(PeerAdvert.from_heartbeat(claimed),  # type: ignore[arg-type]
                             node_id=node_id)
        self._emit(self._membership.refused(advert, address, self._clock(), reason))

    def _failed(self, target: _Target, reason: str) -> None:
        peer = self._membership.get(target.node_id) if target.node_id else None
        if peer is not None and peer.address == target.address:
            self._emit(self._membership.heartbeat_failed(peer.node_id, self._clock(), reason))
        elif target.static and target.node_id is None and reason != target.failure:
            log.info("manual peer %s: %s", target.address, reason)
            target.failure = reason

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self._timings.interval_s / 2)
            self._emit(self._membership.tick(self._clock()))

    def _emit(self, changes: list[Change]) -> None:
        for change in changes:
            if change.kind is ChangeKind.FORGOTTEN:  # evicted or gone: stop probing it (mDNS)
                for target in [t for t in self._targets.values() if t.node_id == change.node_id]:
                    target.mdns = False
                    self._drop_if_unused(target)
            try:
                self._on_change(change)
            except Exception:
                log.exception("peer change handler failed on %s", change)


def _clock_skew(date: str | None, now: float) -> float | None:
    """Seconds the HTTP Date header is ahead of `now` (None when absent or unreadable)."""
    try:
        return parsedate_to_datetime(date).timestamp() - now if date else None
    except (TypeError, ValueError, IndexError):
        return None


def _claimed(body: bytes, content_type: str | None) -> Heartbeat | None:
    """The heartbeat an unauthenticated answer claims to be (to name the peer), if it decodes."""
    try:
        return codec.decode(body, content_type, Heartbeat, max_bytes=MAX_HEARTBEAT_BYTES)
    except codec.WireDecodeError:
        return None


def _advert_stale(peer: Peer, heartbeat: Heartbeat) -> bool:
    """True when a manual peer's heartbeat shows a new boot, protocol or swarm (re-discover it)."""
    a = peer.advert
    return (a.boot_id, a.protocol, a.fingerprint) != (heartbeat.boot_id, heartbeat.protocol,
                                                      heartbeat.swarm)

