"""The beacon: pushes this node's heartbeat to its peers over UDP, and takes theirs.

One small signed datagram (network/wire/beat.py), sent to and received on the API's port number,
replaces the HTTP probe of a peer that keeps beating: the monitor probes over HTTP only peers it
has not met yet, dead ones, and ones whose beats stopped. Each interval a node beats the
`WATCHERS` members after it in node-id order (they notice its crash within about a second and
name it among their heartbeat's suspects, which makes every other member check it at once);
every other member gets its beat every `SLOW_ROUNDS` intervals, or with the next round when it
changed (load, term, suspects; `poke` brings that round forward), so the cost per node hardly
grows with the swarm when nothing changes.
The heartbeat is encoded and signed once per round for all peers, and a peer's unchanged
heartbeat bytes are not decoded again. A datagram that does not decode or verify is dropped and
logged once per source address.
"""
from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from network.membership.records import SLOW_ROUNDS
from network.tasks import stop_tasks
from network.trust.signing import beat_mac, check_beat
from network.trust.swarm_key import KeyRing
from network.wire import codec
from network.wire.address import Address
from network.wire.beat import BEAT_HEAD_BYTES, Beat, unpack
from network.wire.fields import MAX_BEAT_BYTES
from network.wire.messages import Heartbeat

log = logging.getLogger(__name__)

JITTER = 0.1  # rounds come 0.9 to 1 interval apart, so nodes do not send in lockstep
MAX_WARNED = 256  # source addresses remembered as already warned about
MAX_CACHED = 1024  # senders whose last heartbeat bytes are kept decoded
POKE_GAP = 0.2  # an extra round (`poke`) comes at least this fraction of an interval after the last


class Beacon(asyncio.DatagramProtocol):
    """Sends `heartbeat()` every `interval_s` to `targets(False)` (the peers watching this node),
    and to `targets(True)` (every peer) when it changed or every `SLOW_ROUNDS` rounds; hands
    each verified beat to `on_beat(beat, heartbeat, source_host)` (the monitor checks it
    against the table)."""

    def __init__(self, node_id: str, keys: KeyRing, interval_s: float, *,
                 heartbeat: Callable[[], Heartbeat],
                 targets: Callable[[bool], Iterable[Address]],
                 on_beat: Callable[[Beat, Heartbeat, str], None],
                 wall_clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.node_id = node_id
        self.keys = keys  # the swarm key ring (the node replaces it when it joins a swarm)
        self._interval_s = interval_s
        self._heartbeat = heartbeat
        self._targets = targets
        self._on_beat = on_beat
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self._seq = 0
        self._everyone_with = b""  # the heartbeat last sent to every peer
        self._transports: list[asyncio.DatagramTransport] = []
        self._hosts: tuple[str, ...] = ()
        self._port = 0
        self._sender: asyncio.Task[None] | None = None
        self._poked = asyncio.Event()
        self._decoded: dict[str, tuple[bytes, Heartbeat]] = {}
        self._warned: set[Any] = set()
        self.sent = self.taken = 0  # counters, for views and benches

    async def start(self, hosts: Iterable[str], port: int) -> bool:
        """Listen on `port` (UDP) on each of `hosts` and start sending; False (logged) when the
        port cannot be had: the monitor then probes every peer over HTTP, as before beats."""
        loop = asyncio.get_running_loop()
        self._hosts, self._port = tuple(dict.fromkeys(hosts)), port
        for host in self._hosts:
            try:
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: self, local_addr=(host, port), family=socket.AF_INET)
            except OSError as exc:
                log.warning("heartbeat datagrams unavailable on %s:%d/udp (%s); peers are "
                            "probed over HTTP instead", host, port, exc.strerror or exc)
                continue
            self._transports.append(transport)
        if self._transports:
            self._sender = asyncio.create_task(self._send_rounds(), name="beacon")
        return bool(self._transports)

    async def started(self, hosts: Iterable[str], port: int) -> Beacon | None:
        """`start`, then this beacon, or None when no port could be had."""
        return self if await self.start(hosts, port) else None

    async def move(self, old: str, new: str) -> None:
        """Listen on `new` instead of `old` (the API moved to a new LAN address)."""
        hosts = tuple(new if host == old else host for host in self._hosts)
        await self.close()
        await self.start(hosts, self._port)

    @property
    def address(self) -> tuple[str, int] | None:
        """Where the first socket listens (None before `start` or when it failed)."""
        if not self._transports:
            return None
        host, port = self._transports[0].get_extra_info("sockname")[:2]
        return host, port

    async def close(self) -> None:
        """Stop sending and close the sockets."""
        await stop_tasks(self._sender)
        self._sender = None
        for transport in self._transports:
            transport.close()
        self._transports.clear()

    def poke(self) -> None:
        """Send a round now (at most every `POKE_GAP` of an interval), not at the next one: this
        node's suspicions changed (the peers that do not watch the suspect should hear of them
        at once), or its load did (an instance turned busy or idle: the coordinator's plan
        leaves a saturated member out of consensus, and routing goes to the least busy)."""
        self._poked.set()

    async def _send_rounds(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            self._poked.clear()
            self.send_round()
            sent = loop.time()
            # On a fixed cadence (the time a round takes does not stretch the gaps), never more
            # than an interval apart: a watcher's `Timings.quiet_s` is 1.1 intervals.
            due = max(due + self._interval_s * self._rng.uniform(1 - JITTER, 1), sent)
            try:
                async with asyncio.timeout_at(due):
                    await self._poked.wait()
            except TimeoutError:
                continue
            await asyncio.sleep(max(0.0, sent + POKE_GAP * self._interval_s - loop.time()))

    def send_round(self) -> None:
        """Encode and sign this node's heartbeat once, and send it to every target."""
        if not self._transports:
            return
        key = self.keys.current
        self._seq += 1
        body = self._body(self._heartbeat())
        if body is None:
            return
        everyone = body != self._everyone_with or self._seq % SLOW_ROUNDS == 1
        if everyone:
            self._everyone_with = body
        beat = Beat(self.node_id, self._seq, int(self._wall_clock()), body)
        try:
            datagram = beat.pack(key.fingerprint, beat_mac(key, beat.signed))
        except ValueError as exc:
            self._warn_once("size", "heartbeat not sent: %s", exc)
            return
        transport = self._transports[0]
        for address in self._targets(everyone):
            transport.sendto(datagram, (address.host, address.port))
            self.sent += 1

    def _body(self, heartbeat: Heartbeat) -> bytes | None:
        """The heartbeat's bytes, within one datagram: when long node ids make it too big, it names
        fewer suspects (the first ones still travel; the rest are named by other members too)."""
        room = MAX_BEAT_BYTES - BEAT_HEAD_BYTES - len(self.node_id.encode("utf-8"))
        while True:
            try:
                return codec.encode(heartbeat, max_bytes=room)
            except ValueError as exc:
                if not heartbeat.suspects:
                    self._warn_once("size", "heartbeat not sent: %s", exc)
                    return None
                heartbeat = replace(heartbeat, suspects=heartbeat.suspects[:len(heartbeat.suspects) // 2])

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Decode, verify and hand over one beat; anything else is dropped (logged once)."""
        try:
            datagram = unpack(data)
        except codec.WireDecodeError as exc:
            self._warn_once(addr[0], "dropped a datagram from %s: %s", addr[0], exc)
            return
        beat = datagram.beat
        if beat.sender == self.node_id:
            return
        wrong = check_beat(self.keys, datagram.key_id, datagram.mac, datagram.signed)
        if wrong is not None:
            self._warn_once(addr[0], "dropped a heartbeat datagram from %s (claims %s): %s",
                            addr[0], beat.sender, wrong)
            return
        cached = self._decoded.get(beat.sender)
        if cached is not None and cached[0] == beat.heartbeat:
            heartbeat = cached[1]
        else:
            try:
                heartbeat = codec.decode(beat.heartbeat, codec.MSGPACK, Heartbeat,
                                         max_bytes=MAX_BEAT_BYTES)
            except codec.WireDecodeError as exc:
                self._warn_once(addr[0], "dropped a heartbeat datagram from %s: %s", addr[0], exc)
                return
            if heartbeat.node_id != beat.sender:
                self._warn_once(addr[0], "dropped a heartbeat datagram from %s: sent by %s "
                                "for %s", addr[0], beat.sender, heartbeat.node_id)
                return
            if len(self._decoded) >= MAX_CACHED:
                self._decoded.clear()
            self._decoded[beat.sender] = (beat.heartbeat, heartbeat)
        self.taken += 1
        self._on_beat(beat, heartbeat, addr[0])

    def error_received(self, exc: Exception) -> None:
        """An ICMP error for an earlier send (a peer's port closed, a host unreachable): the
        monitor's own probes decide what it means."""
        log.debug("heartbeat datagram error: %s", exc)

    def _warn_once(self, about: Any, message: str, *args: Any) -> None:
        if about in self._warned:
            log.debug(message, *args)
            return
        if len(self._warned) < MAX_WARNED:
            self._warned.add(about)
        log.warning(message, *args)
