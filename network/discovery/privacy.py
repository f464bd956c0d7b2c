"""What the operating system may block between nodes, and what to tell the person.

macOS 15 and later keep apps off the local network until the person allows it (Local Network
privacy, System Settings → Privacy & Security → Local Network); Terminal.app may be allowed
already, other terminals (iTerm2, VS Code, Ghostty...) ask once, and until then every connect to
a LAN address fails with EHOSTUNREACH, "No route to host", although the network is fine.
`local_network_hint` recognises that failure from what a connect gives: the platform, the errno
and the peer's address. Values are macOS's own, so this is tested anywhere.

The Application Firewall, when on, asks the first time Python listens whether it may accept
incoming connections; denied (or set to block all incoming connections), peers cannot reach the
node while it still reaches them. `firewall_hint` reads `socketfilterfw`'s answers (pure);
`read_firewall` asks it once, on macOS only, and never raises.
"""
from __future__ import annotations

import logging
import os
import subprocess

from network.discovery.lan import lan_rank

log = logging.getLogger(__name__)

DARWIN_EHOSTUNREACH = 65  # errno.EHOSTUNREACH on macOS (113 on Linux)
LOCAL_NETWORK_HINT = ("allow Local Network access for your terminal app (System Settings → "
                      "Privacy & Security → Local Network), then restart the node")


def local_network_hint(system: str, error_number: int | None, host: str) -> str | None:
    """`LOCAL_NETWORK_HINT` when a connect from macOS to a LAN address failed with "No route to
    host" (what Local Network privacy does), else None."""
    if system != "Darwin" or error_number != DARWIN_EHOSTUNREACH:
        return None
    return LOCAL_NETWORK_HINT if lan_rank(host) is not None else None


SOCKETFILTERFW = "/usr/libexec/ApplicationFirewall/socketfilterfw"
FIREWALL_QUESTIONS = ("--getglobalstate", "--getblockall")
FIREWALL_ON_HINT = ("the macOS firewall is on: when macOS asks whether Python may accept incoming "
                    "network connections, choose Allow (or System Settings → Network → Firewall "
                    "→ Options: Python, Allow incoming connections), or peers cannot reach this "
                    "node")
FIREWALL_BLOCK_ALL_HINT = ("the macOS firewall blocks all incoming connections (System Settings → "
                           "Network → Firewall → Options): peers cannot reach this node until "
                           "that is turned off")


def firewall_hint(system: str, answers: str) -> str | None:
    """What to tell the person about the firewall from `socketfilterfw --getglobalstate` and
    `--getblockall` (their output together), or None (off, unknown, not macOS)."""
    if system != "Darwin":
        return None
    text = answers.lower()
    if "block all state set to enabled" in text or "(state = 2)" in text:
        return FIREWALL_BLOCK_ALL_HINT
    if "firewall is enabled" in text:
        return FIREWALL_ON_HINT
    return None


def read_firewall(system: str, timeout_s: float = 2.0) -> str:
    """`socketfilterfw`'s answers on macOS ("" elsewhere, or when it cannot be asked)."""
    if system != "Darwin" or not os.path.exists(SOCKETFILTERFW):
        return ""
    answers = []
    for question in FIREWALL_QUESTIONS:
        try:
            done = subprocess.run([SOCKETFILTERFW, question], capture_output=True, text=True,
                                  timeout=timeout_s, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("cannot ask the firewall (%s): %s", question, exc)
            continue
        answers.append(done.stdout)
    return "\n".join(answers)
