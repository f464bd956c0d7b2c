"""Wire forms of the election (Claim, Ack, Announce) and of the coordinator's swarm plan.

The election core (network/coordination/election.py) stays free of I/O; here its messages become plain maps
and are validated as strictly as network/wire/messages.py's:

    {"kind": "claim", "term": T, "candidate": {"node_id": ID, "priority": P|null, "score": S}}
    {"kind": "ack", "term": T, "voter": ID, "candidate": ID, "granted": bool, "seen_term": T}
    {"kind": "announce", "term": T, "coordinator": {candidate map}}

`ElectionEnvelope` is one such map (the body of POST /v1/federation/election); `ElectionReply`
(`{"messages": [...]}`) is its answer. `SwarmPlan` is what GET /v1/federation/plan serves.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from network.coordination.election import Ack, Announce, Candidate, Claim, Message
from network.wire import fields
from network.wire.fields import MAX_COUNT, MAX_PRIORITY, MAX_TERM, Fields, WireDecodeError
from network.wire.spans import SpanPlan

__all__ = ["MAX_PLAN_MEMBERS", "MAX_REPLY_MESSAGES", "MAX_SCORE", "ElectionEnvelope",
           "ElectionReply", "PlanMember", "SwarmPlan", "decode_message", "encode_message"]

MAX_REPLY_MESSAGES = 8
MAX_PLAN_MEMBERS = 256
MAX_SCORE = 1e12
MAX_INSTANCES = 4096
KINDS = ("claim", "ack", "announce")

_term = fields.integer(0, MAX_TERM)
_priority = fields.optional(fields.integer(-MAX_PRIORITY, MAX_PRIORITY))
_score = fields.number(0.0, MAX_SCORE)


def _candidate_wire(candidate: Candidate) -> dict[str, Any]:
    return {"node_id": candidate.node_id, "priority": candidate.priority,
            "score": float(candidate.score)}


def _candidate(value: object, where: str) -> Candidate:
    f = Fields(value, where)
    node_id = f.get("node_id", fields.ident())
    priority = f.get("priority", _priority)
    score = f.get("score", _score)
    try:
        return Candidate(node_id, priority, score)
    except (ValueError, TypeError) as exc:
        raise WireDecodeError(f"{where}: {exc}") from exc


def encode_message(message: Message) -> dict[str, Any]:
    """One Claim, Ack or Announce as a plain map (see the module docstring); TypeError otherwise."""
    if isinstance(message, Claim):
        return {"kind": "claim", "term": message.term,
                "candidate": _candidate_wire(message.candidate)}
    if isinstance(message, Ack):
        return {"kind": "ack", "term": message.term, "voter": message.voter,
                "candidate": message.candidate, "granted": bool(message.granted),
                "seen_term": message.seen_term}
    if isinstance(message, Announce):
        return {"kind": "announce", "term": message.term,
                "coordinator": _candidate_wire(message.coordinator)}
    raise TypeError(f"not an election message: {type(message).__name__}")


def decode_message(data: object, where: str = "ElectionMessage") -> Message:
    """Validate one decoded map into a Claim, Ack or Announce; `WireDecodeError` otherwise
    (unknown kinds included). Unknown keys are ignored."""
    f = Fields(data, where)
    kind = f.get("kind", fields.choice(KINDS))
    term = f.get("term", _term)
    if kind == "claim":
        return Claim(term, f.get("candidate", _candidate))
    if kind == "ack":
        return Ack(term, f.get("voter", fields.ident()), f.get("candidate", fields.ident()),
                   f.get("granted", fields.flag), f.get("seen_term", _term, 0))
    return Announce(term, f.get("coordinator", _candidate))


@dataclass(frozen=True)
class ElectionEnvelope:
    """One election message on the wire: the body of POST /v1/federation/election."""

    message: Message

    def to_wire(self) -> dict[str, Any]:
        """The message as plain msgpack/JSON types."""
        return encode_message(self.message)

    @classmethod
    def from_wire(cls, data: object) -> ElectionEnvelope:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        return cls(decode_message(data, "ElectionEnvelope"))


@dataclass(frozen=True)
class ElectionReply:
    """The messages a node sends back to the sender of one election message (at most 8)."""

    messages: tuple[Message, ...] = ()

    def __post_init__(self) -> None:
        if len(self.messages) > MAX_REPLY_MESSAGES:
            raise ValueError(f"ElectionReply: more than {MAX_REPLY_MESSAGES} messages")

    def to_wire(self) -> dict[str, Any]:
        """The reply as plain msgpack/JSON types."""
        return {"messages": [encode_message(m) for m in self.messages]}

    @classmethod
    def from_wire(cls, data: object) -> ElectionReply:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        return cls(Fields(data, "ElectionReply").get(
            "messages", fields.seq(decode_message, MAX_REPLY_MESSAGES)))


@dataclass(frozen=True)
class PlanMember:
    """One node of the plan: its benchmark score, load and queue when planned, and its weight."""

    node_id: str
    score: float = 0.0
    load: float = 0.0  # 0..1
    queue_depth: int = 0
    instances: int = 0
    weight: float = 0.0  # 0..1e12; the coordinator's relative weight for this node

    def to_wire(self) -> dict[str, Any]:
        """The member as a plain map."""
        return {"node_id": self.node_id, "score": float(self.score), "load": float(self.load),
                "queue_depth": self.queue_depth, "instances": self.instances,
                "weight": float(self.weight)}

    @classmethod
    def from_wire(cls, data: object, where: str = "PlanMember") -> PlanMember:
        """Validate a decoded map; raise `WireDecodeError` naming the first bad field."""
        f = Fields(data, where)
        return cls(node_id=f.get("node_id", fields.ident()), score=f.get("score", _score),
                   load=f.get("load", fields.number(0.0, 1.0)),
                   queue_depth=f.get("queue_depth", fields.integer(0, MAX_COUNT)),
                   instances=f.get("instances", fields.integer(0, MAX_INSTANCES)),
                   weight=f.get("weight", fields.number(0.0, MAX_SCORE)))


@dataclass(frozen=True)
class SwarmPlan:
    """The coordinator's plan for `term`: its members, and the consensus sources it prefers
    (node ids of `members`, best first). `issued_at` is the coordinator's wall clock, for
    display only (clocks differ between machines)."""

    term: int
    coordinator: str
    issued_at: float = 0.0
    members: tuple[PlanMember, ...] = ()
    consensus: tuple[str, ...] = ()
    spans: SpanPlan | None = None  # the span map, when the swarm serves layer spans

    @property
    def revision(self) -> str:
        """A short digest of what followers use (term, coordinator, consensus order, and the
        span map but its bottleneck figure): the coordinator's heartbeat carries it, and a follower
        fetches the plan only when it moves (a span server named, a span moved: it must see it)."""
        what = [str(self.term), self.coordinator, *self.consensus]
        if self.spans is not None:
            span_map = {k: v for k, v in self.spans.to_wire().items() if k != "bottleneck"}
            what.append(json.dumps(span_map, sort_keys=True, separators=(",", ":")))
        return hashlib.blake2b("\n".join(what).encode("utf-8"), digest_size=8).hexdigest()

    def to_wire(self) -> dict[str, Any]:
        """The plan as plain JSON/msgpack types (lists, not tuples)."""
        wire = {"term": self.term, "coordinator": self.coordinator,
                "issued_at": float(self.issued_at),
                "members": [m.to_wire() for m in self.members],
                "consensus": list(self.consensus)}
        if self.spans is not None:
            wire["spans"] = self.spans.to_wire()
        return wire

    @classmethod
    def from_wire(cls, data: object) -> SwarmPlan:
        """Validate a decoded map: bounds, no duplicate member or consensus id, and every
        consensus id a member; raise `WireDecodeError` naming the first problem."""
        f = Fields(data, "SwarmPlan")
        plan = cls(term=f.get("term", _term), coordinator=f.get("coordinator", fields.ident()),
                   issued_at=f.get("issued_at", fields.number(0.0, MAX_SCORE)),
                   members=f.get("members", fields.seq(PlanMember.from_wire, MAX_PLAN_MEMBERS)),
                   consensus=f.get("consensus", fields.seq(fields.ident(), MAX_PLAN_MEMBERS)),
                   spans=f.get("spans", fields.optional(lambda v, _w: SpanPlan.from_wire(v)),
                               None))
        ids = [m.node_id for m in plan.members]
        if len(set(ids)) != len(ids):
            raise WireDecodeError("SwarmPlan.members: a node id appears twice")
        if len(set(plan.consensus)) != len(plan.consensus):
            raise WireDecodeError("SwarmPlan.consensus: a node id appears twice")
        strangers = [i for i in plan.consensus if i not in set(ids)]
        if strangers:
            raise WireDecodeError(f"SwarmPlan.consensus: {strangers[0]!r} is not a member")
        return plan
