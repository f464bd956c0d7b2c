"""Runs inside the span venv: keep every hivemind P2P daemon on this swarm's own addresses.

Each `P2P.create` gets NAT port mapping, AutoNAT, relays, auto-relay and IPFS bootstrap turned off,
listens only on the addresses it is given (loopback by default), and refuses any multiaddr outside
loopback and the private LAN ranges, so petals' public bootstrap peers can never be dialled. petals'
start-up version check (an HTTP GET to the package index) is turned off too.
"""
import ipaddress
import os
import sys

_installed = False


def _host(maddr):
    parts = str(maddr).split("/")
    return parts[2] if len(parts) > 2 and parts[1] in ("ip4", "ip6") else None


def allowed(maddr):
    """True for a /ip4 or /ip6 multiaddr on loopback, a private LAN range or link-local."""
    host = _host(maddr)
    if host is None:
        return False
    address = ipaddress.ip_address(host)
    return address.is_loopback or address.is_private or address.is_link_local


def _check(kind, maddrs):
    for maddr in maddrs or ():
        if not allowed(maddr):
            raise RuntimeError(f"span runtime guard: refusing {kind} {maddr} (not loopback or LAN)")


def install():
    """Patch hivemind's P2P.create and petals' version check (idempotent)."""
    global _installed
    if _installed:
        return
    from hivemind.p2p.p2p_daemon import P2P

    original = P2P.create.__func__

    async def create(cls, initial_peers=None, **kwargs):
        if kwargs.get("host_maddrs") is None and not kwargs.get("no_listen"):
            kwargs["host_maddrs"] = ["/ip4/127.0.0.1/tcp/0"]
        _check("host address", kwargs.get("host_maddrs"))
        _check("initial peer", initial_peers)
        _check("announced address", kwargs.get("announce_maddrs"))
        _check("relay", kwargs.get("trusted_relays"))
        kwargs.update(nat_port_map=False, auto_nat=False, use_relay=False, use_auto_relay=False,
                      use_ipfs=False)
        return await original(cls, initial_peers, **kwargs)

    P2P.create = classmethod(create)
    import petals.utils.version as version

    version.validate_version = lambda: None
    if "petals.cli.run_server" in sys.modules:
        sys.modules["petals.cli.run_server"].validate_version = lambda: None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _installed = True
