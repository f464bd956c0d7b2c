"""A peer's API endpoint, typed once: what discovery finds, the peer table keeps and clients dial.

`Address` is the only representation past the edge: a manual peer's "HOST:PORT" is parsed here
once (`parse_address`), mDNS gives a host and the advert's port, and the peer client builds its
URLs from the fields, never by formatting and re-parsing a string.
"""
from __future__ import annotations

import re
from typing import NamedTuple

_ENTRY = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^\s:\[\]]+):([0-9]{1,5})")


class Address(NamedTuple):
    """A host (name, IPv4 or bare IPv6 literal) and a TCP port; `str()` gives "host:port" with an
    IPv6 literal in brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """"HOST:PORT" or "[IPv6]:PORT" as an `Address`; ValueError naming the entry otherwise."""
    match = _ENTRY.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"peer {text!r} is not HOST:PORT")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ValueError(f"peer {text!r}: port {port} is outside 1..65535")
    return Address(host, port)
