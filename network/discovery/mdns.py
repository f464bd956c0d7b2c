"""Finding peers over mDNS: the zeroconf adapter that advertises this node and browses for the others."""
from __future__ import annotations

import asyncio
import errno
import functools
import logging
import re
import socket
from collections.abc import Awaitable, Callable

from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf import Error as ZeroconfError
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from network.discovery.events import DiscoveryEvent, DiscoveryUnavailable, Found, Gone
from network.tasks import stop_tasks
from network.wire import txt
from network.wire.txt import SERVICE_TYPE, PeerAdvert

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT_MS = 3000
# Bounds on what any device on the LAN can make us keep, by advertising names (see THREAT_MODEL.md)
MAX_NAMES = 1024  # service names remembered (for their goodbye) and bad names noted (logged once)
MAX_RESOLVING = 64  # names being resolved at once; more wait for their next announcement
MAX_PENDING = 4096  # browser events not yet dispatched; more are dropped (heartbeats still decide)
_LABEL_BYTES = 63
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+", re.ASCII)


def instance_label(name: str, node_id: str) -> str:
    """"<name>-<node_id>" as one DNS label (letters, digits, '-'), at most 63 bytes."""
    node = _UNSAFE.sub("-", node_id).strip("-")[:_LABEL_BYTES] or "node"
    room = _LABEL_BYTES - len(node) - 1
    host = _UNSAFE.sub("-", name).strip("-")[:room].strip("-") if room > 0 else ""
    return f"{host}-{node}" if host else node


def _explain(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return ("UDP port 5353 is taken by another mDNS responder "
                "(for avahi, set disallow-other-stacks=no)")
    if (isinstance(exc, OSError) and exc.errno == errno.ENODEV) or "No interfaces" in str(exc):
        return f"no multicast-capable interface to listen on ({exc})"
    return f"{type(exc).__name__}: {exc}"


class MdnsDiscovery:
    """Advertises `advert` on `interfaces` (unless `advertise` is False) and reports peers found
    or gone to `on_event`."""

    def __init__(self, advert: PeerAdvert, addresses: list[str], interfaces: list[str],
                 on_event: Callable[[DiscoveryEvent], None], *, name: str | None = None,
                 advertise: bool = True) -> None:
        if not addresses:
            raise ValueError("MdnsDiscovery needs at least one address to advertise")
        txt.encode(advert)  # a bad advert fails here, not inside zeroconf
        self._advert = advert
        self._addresses = list(addresses)
        self._interfaces = list(interfaces)
        self._on_event = on_event
        self._label = instance_label(name or socket.gethostname().split(".")[0], advert.node_id)
        self._zc: AsyncZeroconf | None = None
        self._info = self._service_info(f"{self._label}.{SERVICE_TYPE}", advert)
        self._browser: AsyncServiceBrowser | None = None
        self._queue: asyncio.Queue[tuple[str, ServiceStateChange]] = asyncio.Queue(MAX_PENDING)
        self._dispatcher: asyncio.Task[None] | None = None
        self._announcing: asyncio.Task[None] | None = None
        self._resolving: dict[str, asyncio.Task[None]] = {}  # the latest resolve per name
        self._resolvers: set[asyncio.Task[None]] = set()  # every resolve not yet finished
        self._registered = False
        self._advertise = advertise  # False: browse only (a node looking for a model to fetch)
        self._known: dict[str, str] = {}  # service name -> node id, for Gone (oldest dropped)
        self._noted: set[str] = set()  # names already logged as ignored (not past MAX_NAMES)

    @property
    def name(self) -> str:
        """Our service instance name (zeroconf may have renamed it on a conflict)."""
        return self._info.name

    async def start(self) -> None:
        """Browse, then register without probing (the node id makes the name unique).

        Returns before the announcements finish; raises `DiscoveryUnavailable` when mDNS cannot
        run here. `close()` is safe after a failed or cancelled start.
        """
        if self._zc is not None:
            raise RuntimeError("MdnsDiscovery already started")
        if not self._interfaces:
            raise DiscoveryUnavailable("no LAN interface to listen on")
        try:
            self._zc = AsyncZeroconf(interfaces=self._interfaces)
        except (OSError, RuntimeError, ZeroconfError) as exc:
            raise DiscoveryUnavailable(_explain(exc)) from exc
        self._dispatcher = asyncio.create_task(self._dispatch(self._zc.zeroconf),
                                               name="mdns-dispatch")
        # QM (multicast) questions: a unicast answer to port 5353 lands on a random socket when
        # another responder (avahi, a second node on this host) shares the port, and is lost.
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, [SERVICE_TYPE],
                                            handlers=[self._on_state_change],
                                            question_type=DNSQuestionType.QM)
        if not self._advertise:
            return
        try:
            announced = await self._zc.async_register_service(
                self._info, allow_name_change=True, cooperating_responders=True)
        except (OSError, RuntimeError, ZeroconfError) as exc:
            await self.close()
            raise DiscoveryUnavailable(_explain(exc)) from exc
        self._registered = True
        self._announce(announced)
        log.info("advertising %s on %s (addresses %s)", self._info.name,
                 ", ".join(self._interfaces), ", ".join(self._addresses))

    async def update(self, advert: PeerAdvert) -> None:
        """Re-announce with a new advert (same node id); also how peers re-find us after a cut."""
        if advert.node_id != self._advert.node_id:
            raise ValueError("update() cannot change the node id")
        txt.encode(advert)
        self._advert = advert
        self._info = self._service_info(self._info.name, advert)
        if self._zc is None or not self._registered:
            return
        try:
            self._announce(await self._zc.async_update_service(self._info))
        except (OSError, RuntimeError, ZeroconfError) as exc:
            raise DiscoveryUnavailable(_explain(exc)) from exc

    async def refresh_interfaces(self) -> None:
        """Rescan the pinned interfaces (sockets for ones that came back) and re-announce."""
        if self._zc is None:
            return
        try:
            await self._zc.async_update_interfaces()
        except (OSError, RuntimeError, ZeroconfError) as exc:
            raise DiscoveryUnavailable(_explain(exc)) from exc
        await self.update(self._advert)

    async def close(self) -> None:
        """Stop browsing, say goodbye (peers see Removed at once) and close zeroconf."""
        zc, self._zc = self._zc, None
        if zc is None:
            return
        if self._browser is not None:
            await self._browser.async_cancel()
            self._browser = None
        await stop_tasks(self._dispatcher, self._announcing, *self._resolvers)
        self._dispatcher = self._announcing = None
        self._resolving.clear()
        try:
            if self._registered:
                self._registered = False
                await (await zc.async_unregister_service(self._info))
        except (OSError, RuntimeError, ZeroconfError) as exc:
            log.warning("mDNS goodbye for %s failed: %s", self._info.name, exc)
        await zc.async_close()

    def _service_info(self, name: str, advert: PeerAdvert) -> AsyncServiceInfo:
        return AsyncServiceInfo(SERVICE_TYPE, name, port=advert.api_port,
                                properties=txt.encode(advert), server=f"{self._label}.local.",
                                parsed_addresses=self._addresses)

    def _announce(self, announced: Awaitable[object]) -> None:
        """Own the wait for zeroconf's announcement broadcasts (a newer one supersedes it)."""
        if self._announcing is not None:
            self._announcing.cancel()
        self._announcing = asyncio.create_task(self._finish(announced), name="mdns-announce")

    async def _finish(self, announced: Awaitable[object]) -> None:
        try:
            await announced
        except (OSError, RuntimeError, ZeroconfError) as exc:
            log.warning("mDNS announcement of %s failed: %s", self._info.name, exc)

    def _on_state_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                         state_change: ServiceStateChange) -> None:
        """zeroconf's synchronous browser callback: only enqueue (a flood beyond the bound is
        dropped: mDNS only says a peer exists, heartbeats decide)."""
        try:
            self._queue.put_nowait((name, state_change))
        except asyncio.QueueFull:
            self._ignore(name, f"more than {MAX_PENDING} mDNS events pending")

    async def _dispatch(self, zc: Zeroconf) -> None:
        while True:
            name, change = await self._queue.get()
            if name == self._info.name:
                continue
            previous = self._resolving.pop(name, None)
            if previous is not None:
                previous.cancel()  # a newer state of this name supersedes the pending resolve
            if change is ServiceStateChange.Removed:
                node_id = self._known.pop(name, None)
                if node_id is not None:
                    self._emit(Gone(node_id))
                continue
            if len(self._resolving) >= MAX_RESOLVING:
                self._ignore(name, f"{MAX_RESOLVING} names already being resolved")
                continue
            task = asyncio.create_task(self._resolve(zc, name), name=f"mdns-resolve {name}")
            self._resolving[name] = task
            self._resolvers.add(task)
            task.add_done_callback(functools.partial(self._resolved, name))

    def _resolved(self, name: str, task: asyncio.Task[None]) -> None:
        self._resolvers.discard(task)
        if self._resolving.get(name) is task:
            del self._resolving[name]
        if not task.cancelled() and task.exception() is not None:
            log.error("resolving %s failed", name, exc_info=task.exception())

    async def _resolve(self, zc: Zeroconf, name: str) -> None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        if not await info.async_request(zc, RESOLVE_TIMEOUT_MS, DNSQuestionType.QM):
            self._ignore(name, f"no answer resolving it within {RESOLVE_TIMEOUT_MS} ms", logging.INFO)
            return
        try:
            advert = txt.decode(dict[bytes | str, bytes | str | None](info.properties.items()))
        except txt.TxtError as exc:
            self._ignore(name, f"bad TXT record ({exc})")
            return
        if advert.node_id == self._advert.node_id:
            if advert.boot_id == self._advert.boot_id:
                return  # ourselves under another name
            log.warning("%s claims our node id %s (boot %s)", name, advert.node_id, advert.boot_id)
        addresses = tuple(info.parsed_addresses(IPVersion.V4Only))
        if not addresses:
            self._ignore(name, "no IPv4 address advertised", logging.INFO)
            return
        self._remember(name, advert.node_id)
        self._emit(Found(advert, addresses[0], addresses))

    def _remember(self, name: str, node_id: str) -> None:
        """Keep a name's node id for its goodbye; past MAX_NAMES the oldest is forgotten (its
        goodbye is then missed: heartbeats still tell that it left)."""
        self._known.pop(name, None)
        self._known[name] = node_id
        while len(self._known) > MAX_NAMES:
            del self._known[next(iter(self._known))]

    def _ignore(self, name: str, why: str, level: int = logging.WARNING) -> None:
        """Log an ignored name once (at `level`; at debug again, and once MAX_NAMES are noted)."""
        if name in self._noted or len(self._noted) >= MAX_NAMES:
            log.debug("ignoring %s: %s", name, why)
            return
        self._noted.add(name)
        log.log(level, "ignoring %s: %s (further ones logged at debug)", name, why)

    def _emit(self, event: DiscoveryEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("discovery event handler failed on %s", event)
