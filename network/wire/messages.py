"""Who a node is and how it stands: `NodeHeader` and the `Heartbeat` it answers on
`/v1/federation/health`, with the capabilities this version offers; frozen dataclasses whose
`from_wire` validates (with the readers of network/wire/fields.py) and ignores unknown keys. The
vote messages are in network/wire/votes.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from network.wire.fields import (
    MAX_CAPABILITIES,
    MAX_COUNT,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_NONCE_CHARS,
    MAX_PRIORITY,
    MAX_REVISION_CHARS,
    MAX_SUSPECTS,
    MAX_TERM,
    Fields,
    flag,
    ident,
    integer,
    number,
    optional,
    seq,
    text,
)
from network.wire.pairing import pairing_state
from swarm.engine.embedding import EMBEDDINGS_FEATURE
from swarm.engine.tools import TOOLS_FEATURE

VOTE_CAPABILITY = "vote"  # a node that answers POST /v1/federation/vote
# What this version's nodes offer: a request that needs a feature goes only to peers listing it.
CAPABILITIES = ("chat", "completions", VOTE_CAPABILITY, TOOLS_FEATURE, EMBEDDINGS_FEATURE)
_NO_PRIORITY: int | None = 0  # an absent Heartbeat.priority (typed for `Fields.get`)


@dataclass(frozen=True, kw_only=True)
class NodeHeader:
    """Who a node is (its lasting node id, this run's boot id), the protocol it speaks and the port
    of its API: what its heartbeat and its mDNS advert (network/wire/txt.py) both open with."""

    node_id: str
    boot_id: str
    protocol: int
    api_port: int


@dataclass(frozen=True, kw_only=True)
class Heartbeat(NodeHeader):
    """A node's answer to `/v1/federation/health`: identity, load, capacity and election view."""

    swarm: str = ""
    model_id: str = ""
    instances: int = 0
    load: float = 0.0
    queue_depth: int = 0
    capabilities: tuple[str, ...] = ()
    bench_score: float = 0.0
    ram_gb: float = 0.0
    vram_gb: float = 0.0
    term: int = 0
    coordinator: str | None = None
    priority: int | None = 0  # the election's configured priority; None: never coordinator
    solo: bool = False  # it leads only itself: a role taken with no peer in view (election.py)
    nonce: str | None = None
    plan: str = ""  # the revision of the plan this node publishes as coordinator ("" otherwise)
    suspects: tuple[str, ...] = ()  # peers it suspects or saw die just now: others check them
    span_blocks: int = 0  # blocks this node may serve as a layer span (0: it serves none)
    span_peer: str = ""  # the hivemind peer id of this node's span server, while it serves
    pairing: str = ""  # "open": takes join requests; "fresh": a lone new node (network/wire/pairing.py)
    tok_s: float = 0.0  # decode speed of one instance over its last generations
    tokens: int = 0  # completion tokens generated since start, for anyone

    @property
    def votes(self) -> bool:
        """True when the node answers votes (`VOTE_CAPABILITY`): a consensus candidate."""
        return VOTE_CAPABILITY in self.capabilities

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack/JSON types (tuples become arrays); shallow, since every
        field is a scalar or a tuple of strings (sent every heartbeat interval)."""
        return dict(self.__dict__)

    @classmethod
    def from_wire(cls, data: object) -> Heartbeat:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        f = Fields(data, "Heartbeat")
        return cls(
            node_id=f.get("node_id", ident()), boot_id=f.get("boot_id", ident()),
            protocol=f.get("protocol", integer(0, 65535)), api_port=f.get("api_port", integer(1, 65535)),
            swarm=f.get("swarm", ident(allow_empty=True), ""),
            model_id=f.get("model_id", text(MAX_NAME_CHARS), ""),
            instances=f.get("instances", integer(0, 4096), 0), load=f.get("load", number(0.0, 1.0), 0.0),
            queue_depth=f.get("queue_depth", integer(0, MAX_COUNT), 0),
            capabilities=f.get("capabilities", seq(text(MAX_ID_CHARS), MAX_CAPABILITIES), ()),
            bench_score=f.get("bench_score", number(0.0, 1e12), 0.0),
            ram_gb=f.get("ram_gb", number(0.0, 1e6), 0.0),
            vram_gb=f.get("vram_gb", number(0.0, 1e6), 0.0),
            term=f.get("term", integer(0, MAX_TERM), 0),
            coordinator=f.get("coordinator", optional(ident()), None),
            priority=f.get("priority", optional(integer(-MAX_PRIORITY, MAX_PRIORITY)), _NO_PRIORITY),
            solo=f.get("solo", flag, False),
            nonce=f.get("nonce", optional(text(MAX_NONCE_CHARS)), None),
            plan=f.get("plan", text(MAX_REVISION_CHARS), ""),
            suspects=f.get("suspects", seq(ident(), MAX_SUSPECTS), ()),
            span_blocks=f.get("span_blocks", integer(0, 1 << 20), 0),
            span_peer=f.get("span_peer", text(MAX_ID_CHARS), ""),
            pairing=pairing_state(f.get("pairing", text(MAX_ID_CHARS), "")),
            tok_s=f.get("tok_s", number(0.0, 1e9), 0.0),
            tokens=f.get("tokens", integer(0, 2**63 - 1), 0),
        )
