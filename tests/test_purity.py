"""The decision cores stay pure: nothing they import, however indirectly, reaches an event loop, a
socket, the clock or randomness (they take `now` and `rng` as arguments instead). Read from the
sources, so an import added three modules away fails here, naming the chain that reaches it."""
from __future__ import annotations

import pytest

from tests.module_imports import module_path, reachable

PURE_CORES = (
    "network.coordination.election",  # the coordinator election
    "network.coordination.turns",
    "network.coordination.records",
    "network.coordination.wake",  # sleep detection from two clock readings
    "network.coordination.plan",  # the coordinator's swarm plan
    "network.coordination.chooser",  # where a request goes
    "network.coordination.spans",  # the span planner
    "network.coordination.placement",  # its search
    "network.membership.table",  # the peer table
    "network.membership.records",
    "network.membership.roster",
    "network.membership.suspicion",  # whose fault a failed probe is, suspicion's probe budget
    "network.membership.ledger",  # which pushed heartbeats to take
    "consensus.strategies",  # the consensus decisions
    "consensus.normalize",  # answer keys for voting
    "consensus.sentences",
    "consensus.candidates",
    "network.wire.messages",  # the wire: frozen messages and their checks
    "network.wire.votes",
    "network.wire.fields",
    "network.wire.address",
    "network.wire.election",
    "network.wire.spans",
    "network.wire.txt",
    "network.wire.paths",
    "network.wire.beat",
    "network.wire.pairing",
    "network.trust.exchange",  # joining by approval: the exchange, the requests, the target
    "network.trust.joins",
    "network.trust.join_target",
    "swarm.engine.source",  # the Source seam
    "swarm.sizing.apple",  # what a Mac's sysctl says (cores, chip, GPU memory)
)
FORBIDDEN = frozenset({"asyncio", "aiohttp", "socket", "time", "random", "threading",
                       "zeroconf", "psutil", "torch", "llama_cpp"})


@pytest.mark.parametrize("core", PURE_CORES)
def test_a_pure_core_reaches_no_io_clock_or_randomness(core):
    assert module_path(core) is not None, f"{core} moved: update PURE_CORES"
    chains = reachable(core)
    bad = {name: chain for name, chain in chains.items() if name.split(".")[0] in FORBIDDEN}
    assert not bad, "\n".join(" -> ".join(chain) for chain in bad.values())


def test_the_check_sees_through_our_own_modules():
    """The walk follows imports across modules (so the test above can fail)."""
    assert reachable("consensus.service")["asyncio"] == [
        "consensus.service", "consensus.runner", "asyncio"]
    assert "msgpack" in reachable("network.federation.gate")  # through network.wire.codec
