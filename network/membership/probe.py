"""The HTTP heartbeat probe: one signed GET of a peer's /v1/federation/health.

Every probe carries a fresh nonce and our key id; the answer must be signed over that nonce with
a key this node accepts. It is how a peer is first met (and how a silent one is checked): a
refused connection is a crash, an accepted one a live host, however slow its answer.
"""
from __future__ import annotations

import errno
import logging
import platform
import secrets
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

import aiohttp

from network.discovery.privacy import local_network_hint
from network.membership.records import Timings
from network.trust.signing import KEY_ID_HEADER, MAX_SKEW_S, check_reply
from network.trust.swarm_key import KeyRing
from network.wire import codec
from network.wire.address import Address
from network.wire.messages import Heartbeat
from network.wire.paths import HEALTH_PATH
from swarm.errors import PeerError

log = logging.getLogger(__name__)

MAX_HEARTBEAT_BYTES = 64 * 1024
MAX_SKEW_WARNINGS = 1024  # addresses remembered as already warned about their clock
_ACCEPT = f"{codec.MSGPACK}, {codec.JSON};q=0.5"
# Our own side has no network: no route (Wi-Fi off, cable out), the interface or address gone.
LOCAL_ERRNOS = frozenset({errno.ENETUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL})


class ProbeFailed(PeerError):
    """One probe got no valid heartbeat; the message is the reason shown in the peer table."""


class NetworkUnreachable(ProbeFailed):
    """This node's own network is down (no route, no interface, no address): not the peer's fault."""


class ProbeTimedOut(ProbeFailed):
    """No TCP accept or no answer within `timeout_s`: the peer's fault only if our own loop was
    on time (network/membership/suspicion.py). `accepted`: its host took the connection (the
    process lives and is busy, or stopped), only the answer did not come."""

    def __init__(self, reason: str, timeout_s: float, accepted: bool = False) -> None:
        super().__init__(reason)
        self.timeout_s = timeout_s
        self.accepted = accepted


class PortClosed(ProbeFailed):
    """The peer's host refused the connection: nothing listens on its port (the process is gone;
    a busy or hung one still has its socket, and the kernel accepts for it)."""


class ProbeRefused(ProbeFailed):
    """The answer is not signed by a key we accept: the peer belongs to another swarm."""

    def __init__(self, reason: str, heartbeat: Heartbeat | None) -> None:
        super().__init__(reason)
        self.heartbeat = heartbeat  # as the peer claims it (unauthenticated), if it decoded


class HealthProbe:
    """GETs heartbeats through the node's one peer session (`session()`, None when closed)."""

    def __init__(self, node_id: str, keys: KeyRing, timings: Timings,
                 session: Callable[[], aiohttp.ClientSession | None], *,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._node_id = node_id
        self.keys = keys
        self._timings = timings
        self._session = session
        self._wall_clock = wall_clock
        self._skewed: set[Address] = set()  # addresses already warned about their clock
        self._privacy_warned = False  # macOS Local Network privacy: warned once

    async def __call__(self, address: Address) -> Heartbeat:
        """One GET of the heartbeat at `address`, signed over a fresh nonce; every way it can go
        wrong raises `ProbeFailed` (`ProbeRefused`: signed with a key this node does not accept)."""
        session = self._session()
        if session is None:
            raise ProbeFailed("monitor closed")
        nonce = secrets.token_urlsafe(12)
        url = f"http://{address}{HEALTH_PATH}"
        t = self._timings
        timeout = aiohttp.ClientTimeout(total=t.request_timeout_s, sock_connect=t.connect_timeout_s)
        headers = {"Accept": _ACCEPT, "User-Agent": f"local-swarm/{self._node_id}",
                   KEY_ID_HEADER: self.keys.fingerprint}
        try:
            async with session.get(url, params={"nonce": nonce}, headers=headers,
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
                wrong_key = check_reply(self.keys, nonce, bytes(body), response.headers)
                if wrong_key is not None:
                    raise ProbeRefused(wrong_key, _claimed(bytes(body), kind))
                heartbeat = codec.decode(bytes(body), kind, Heartbeat,
                                         max_bytes=MAX_HEARTBEAT_BYTES)
        except aiohttp.ClientConnectorError as exc:
            if exc.os_error.errno == errno.ECONNREFUSED:
                raise PortClosed(f"connect failed ({exc.os_error.strerror})") from exc
            if exc.os_error.errno in LOCAL_ERRNOS:
                raise NetworkUnreachable(f"connect failed ({exc.os_error.strerror})") from exc
            raise ProbeFailed(self._connect_failed(exc.os_error, address)) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise ProbeTimedOut(f"no TCP accept in {t.connect_timeout_s} s",
                                t.connect_timeout_s) from exc
        except TimeoutError as exc:
            raise ProbeTimedOut(f"no answer in {t.request_timeout_s} s (busy?)",
                                t.request_timeout_s, accepted=True) from exc
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
        if len(self._skewed) < MAX_SKEW_WARNINGS:
            self._skewed.add(address)
            log.warning("the clock of the peer at %s is %+.0f s off ours: the votes and requests "
                        "signed between us will be refused as stale (limit %.0f s); enable NTP "
                        "on both machines", address, skew, MAX_SKEW_S)


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
