"""The house keeps its rooms: each sub-package imports only the rooms its `__init__.py` docstring
allows, and every constant that must agree across the code is defined once."""
from __future__ import annotations

import re
from collections import defaultdict

import pytest

from tests.module_imports import ROOT, runtime_imports

NETWORK = {"network.api", "network.wire", "network.trust", "network.discovery",
           "network.membership", "network.coordination", "network.federation", "network.petals"}
SWARM = {"swarm.engine", "swarm.sizing", "swarm.models", "swarm.node", "swarm.errors"}
# room -> the rooms it may import (the OPEN ones are open to every room); the
# same rules as each __init__.py docstring states.
OPEN = {"swarm.errors", "network.tasks"}  # the error tree and the one way to stop owned tasks
ALLOWED: dict[str, set[str]] = {
    "swarm.errors": set(),
    "network.tasks": set(),
    "swarm.models": set(),
    "swarm.engine": {"swarm.models", "swarm.node"},  # the loader reads the configuration
    "swarm.sizing": {"swarm.engine", "swarm.models", "swarm.node"},
    "swarm.node": {*SWARM, *NETWORK, "consensus"},  # the shell that wires everything
    "consensus": {"swarm.engine"},
    "network.wire": {"swarm.engine", "network.coordination"},  # records; the election's messages
    "network.trust": {"network.wire", "network.membership", "network.api"},  # approval's route
    "network.discovery": {"network.wire"},
    "network.membership": {"network.wire", "network.trust", "network.discovery"},
    "network.coordination": {"network.wire", "network.membership", "network.trust",
                             "swarm.engine"},
    "network.federation": {*NETWORK, "consensus", "swarm.engine", "swarm.models", "swarm.node"},
    "network.api": {*NETWORK, "consensus", "swarm.engine", "swarm.node"},
    "network.petals": {*NETWORK, "swarm.engine", "swarm.models", "swarm.node"},
}


def room_of(module: str) -> str | None:
    rooms = [r for r in ALLOWED if module == r or module.startswith(r + ".")]
    return max(rooms, key=len) if rooms else None


def _imports_by_room() -> dict[str, dict[str, set[str]]]:
    found: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for top in ("swarm", "network", "consensus"):
        for path in (ROOT / top).rglob("*.py"):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            if module in ("swarm", "network"):
                continue  # the houses themselves: docstrings only
            room = room_of(module)
            assert room is not None, f"{module} is in no room: add it to ALLOWED"
            for imported in runtime_imports(path):
                other = room_of(imported)
                if other is not None and other != room and other not in OPEN:
                    found[room][other].add(module)
    return found


def test_every_room_imports_only_what_its_docstring_allows():
    wrong = [f"{room} imports {other} ({', '.join(sorted(modules))})"
             for room, others in _imports_by_room().items()
             for other, modules in others.items() if other not in ALLOWED[room]]
    assert not wrong, "\n".join(wrong)


def test_swarm_outside_its_shell_never_reaches_the_network():
    found = _imports_by_room()
    for room in SWARM - {"swarm.node"}:
        assert not set(found.get(room, {})) & (NETWORK | {"consensus"}), room


def _production_sources() -> dict[str, str]:
    files = [ROOT / "main.py", *(p for top in ("swarm", "network", "consensus")
                                 for p in (ROOT / top).rglob("*.py"))]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in files}


@pytest.mark.parametrize(("what", "pattern", "home"), [
    # The strategy names, and the federation routes: one definition each.
    ("the strategy names", r'"route",\s*"best_of_n"|"route",\s*"first_valid"',
     "consensus/candidates.py"),
    ("the federation paths", r'"/v1/federation/[a-z]*"', "network/wire/paths.py"),
    # The id and nonce patterns of the wire: config, TXT, approval and OpenAPI reuse them.
    ("the node id pattern", r"A-Za-z0-9\]\[A-Za-z0-9", "network/wire/fields.py"),
    ("the heartbeat nonce pattern", r"A-Za-z0-9\._~:-", "network/wire/fields.py"),
    ("the signed-request header patterns", r"\[0-9a-f\]\{16\}|\[A-Za-z0-9_-\]\{16,64\}",
     "network/trust/signing.py"),
    # One JSON nesting check (wire and API pass their own limits), one aiohttp client session.
    ("the JSON depth walk", r"stack\.extend\(\(child, depth \+ 1\)", "network/wire/codec.py"),
    ("the aiohttp client session", r"aiohttp\.ClientSession\(", "network/federation/client.py"),
    # One request key for a verified swarm signature.
    ("the signature verdict request key", r"web\.RequestKey\(", "network/federation/gate.py"),
    # Owned background tasks end through one helper: cancel, then wait for every one to end.
    ("cancelling a task then waiting for it",
     r"\.cancel\(\)\n\s*(await asyncio\.gather|with contextlib\.suppress\(asyncio\.CancelledError)",
     "network/tasks.py"),
    ("the address parser", r"\\\[\(\[0-9A-Fa-f:\.\]\+\)\\\]", "network/wire/address.py"),
])
def test_defined_once(what, pattern, home):
    where = [name for name, text in _production_sources().items() if re.search(pattern, text)]
    assert where == [home], f"{what} must be defined only in {home}, found in {where}"
