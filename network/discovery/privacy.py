"""What the operating system may block between nodes, and what to tell the person (pure).

macOS 15 and later keep apps off the local network until the person allows it (Local Network
privacy, System Settings → Privacy & Security → Local Network); Terminal.app may be allowed
already, other terminals (iTerm2, VS Code, Ghostty...) ask once, and until then every connect to
a LAN address fails with EHOSTUNREACH, "No route to host", although the network is fine.
`local_network_hint` recognises that failure from what a connect gives: the platform, the errno
and the peer's address. Values are macOS's own, so this is tested anywhere.
"""
from __future__ import annotations

from network.discovery.lan import lan_rank

DARWIN_EHOSTUNREACH = 65  # errno.EHOSTUNREACH on macOS (113 on Linux)
LOCAL_NETWORK_HINT = ("allow Local Network access for your terminal app (System Settings → "
                      "Privacy & Security → Local Network), then restart the node")


def local_network_hint(system: str, error_number: int | None, host: str) -> str | None:
    """`LOCAL_NETWORK_HINT` when a connect from macOS to a LAN address failed with "No route to
    host" (what Local Network privacy does), else None."""
    if system != "Darwin" or error_number != DARWIN_EHOSTUNREACH:
        return None
    return LOCAL_NETWORK_HINT if lan_rank(host) is not None else None
