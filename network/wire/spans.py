"""The wire form of the span map, the `spans` part of the coordinator's plan:

    {"model": NAME, "num_blocks": N, "dht_prefix": P, "initial_peers": [MULTIADDR, ...],
     "assignments": [{"node_id": ID, "start": A, "end": B}, ...], "gaps": [[A, B], ...],
     "bottleneck": TOKENS_PER_S}

`initial_peers` are the multiaddrs of the coordinator's hivemind DHT bootstrap; a node serving
no blocks is absent from `assignments`; `gaps` are the block ranges nobody serves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from network.wire.fields import (
    MAX_NAME_CHARS,
    Fields,
    WireDecodeError,
    ident,
    integer,
    number,
    seq,
    text,
)

MAX_BLOCKS = 4096
MAX_ASSIGNMENTS = 256
MAX_PEER_ADDRESSES = 16
MAX_MULTIADDR_CHARS = 256


@dataclass(frozen=True)
class SpanAssignment:
    """Node `node_id` serves blocks [start, end)."""

    node_id: str
    start: int
    end: int
    peer_id: str = ""  # its span server's hivemind peer id, once the coordinator has seen it

    def to_wire(self) -> dict[str, Any]:
        """As a plain map."""
        return {"node_id": self.node_id, "start": self.start, "end": self.end,
                "peer_id": self.peer_id}

    @classmethod
    def from_wire(cls, data: object, where: str = "SpanAssignment") -> SpanAssignment:
        """Validate a decoded map; `WireDecodeError` names the first problem."""
        f = Fields(data, where)
        item = cls(node_id=f.get("node_id", ident()), start=f.get("start", integer(0, MAX_BLOCKS)),
                   end=f.get("end", integer(1, MAX_BLOCKS)),
                   peer_id=f.get("peer_id", text(MAX_MULTIADDR_CHARS), ""))
        if item.end <= item.start:
            raise WireDecodeError(f"{where}: end {item.end} is not after start {item.start}")
        return item


def _gap(value: object, where: str) -> tuple[int, int]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise WireDecodeError(f"{where}: expected a [start, end] pair")
    start, end = integer(0, MAX_BLOCKS)(value[0], where), integer(1, MAX_BLOCKS)(value[1], where)
    if end <= start:
        raise WireDecodeError(f"{where}: end {end} is not after start {start}")
    return start, end


@dataclass(frozen=True)
class SpanPlan:
    """Which node serves which blocks of `model`, and how to join the span swarm."""

    model: str
    num_blocks: int
    dht_prefix: str
    initial_peers: tuple[str, ...] = ()
    assignments: tuple[SpanAssignment, ...] = ()
    gaps: tuple[tuple[int, int], ...] = ()
    bottleneck: float = 0.0

    def span_of(self, node_id: str) -> tuple[int, int] | None:
        """The blocks `node_id` serves, if any."""
        return next(((a.start, a.end) for a in self.assignments if a.node_id == node_id), None)

    def allowed_servers(self) -> tuple[str, ...] | None:
        """The span servers a client may route through: every assignment's peer id, or None
        (route by the DHT alone) while some server's id is not known yet."""
        ids = tuple(a.peer_id for a in self.assignments)
        return ids if ids and all(ids) else None

    def replicas(self, block: int) -> int:
        """How many nodes serve `block`."""
        return sum(1 for a in self.assignments if a.start <= block < a.end)

    def to_wire(self) -> dict[str, Any]:
        """As plain JSON/msgpack types."""
        return {"model": self.model, "num_blocks": self.num_blocks,
                "dht_prefix": self.dht_prefix, "initial_peers": list(self.initial_peers),
                "assignments": [a.to_wire() for a in self.assignments],
                "gaps": [list(g) for g in self.gaps], "bottleneck": float(self.bottleneck)}

    @classmethod
    def from_wire(cls, data: object) -> SpanPlan:
        """Validate a decoded map: bounds, every range inside the model, one span per node."""
        f = Fields(data, "SpanPlan")
        plan = cls(model=f.get("model", text(MAX_NAME_CHARS)),
                   num_blocks=f.get("num_blocks", integer(1, MAX_BLOCKS)),
                   dht_prefix=f.get("dht_prefix", ident()),
                   initial_peers=f.get("initial_peers",
                                       seq(text(MAX_MULTIADDR_CHARS), MAX_PEER_ADDRESSES), ()),
                   assignments=f.get("assignments",
                                     seq(SpanAssignment.from_wire, MAX_ASSIGNMENTS), ()),
                   gaps=f.get("gaps", seq(_gap, MAX_BLOCKS), ()),
                   bottleneck=f.get("bottleneck", number(0.0, 1e12), 0.0))
        ids = [a.node_id for a in plan.assignments]
        if len(set(ids)) != len(ids):
            raise WireDecodeError("SpanPlan.assignments: a node id appears twice")
        for where, end in [*(("assignments", a.end) for a in plan.assignments),
                           *(("gaps", g[1]) for g in plan.gaps)]:
            if end > plan.num_blocks:
                raise WireDecodeError(f"SpanPlan.{where}: block {end} is past num_blocks "
                                      f"{plan.num_blocks}")
        return plan
