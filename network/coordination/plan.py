"""The coordinator's swarm plan: members with weights, and who takes part in consensus."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from network.membership.records import Peer, PeerState
from network.wire.election import PlanMember, SwarmPlan
from network.wire.spans import SpanPlan


def member_of(peer: Peer) -> PlanMember | None:
    """A plan member for an ALIVE peer whose heartbeat offers votes, else None."""
    beat = peer.heartbeat
    if peer.state is not PeerState.ALIVE or beat is None or not beat.votes:
        return None
    return PlanMember(node_id=peer.node_id, score=beat.bench_score, load=beat.load,
                      queue_depth=beat.queue_depth, instances=beat.instances, weight=1.0)


def choose_consensus(members: Iterable[PlanMember]) -> tuple[str, ...]:
    """Members for consensus, preferred first: ones with a free instance before saturated ones
    (those only when no member has room), then lower load, higher score, smaller id."""
    ordered = sorted(members, key=lambda m: (m.load >= 1.0, m.load, -m.score, m.node_id))
    free = [m.node_id for m in ordered if m.load < 1.0]
    return tuple(free) if free else tuple(m.node_id for m in ordered)


def build_plan(term: int, local: PlanMember, peers: Iterable[Peer], *,
               issued_at: float, spans: SpanPlan | None = None) -> SwarmPlan:
    """The plan the coordinator `local` publishes for `term` from its own peer table.

    Weights are benchmark scores relative to the fastest member (1.0 each when none benchmarked).
    """
    members = [local, *(m for p in peers if (m := member_of(p)) is not None)]
    fastest = max(m.score for m in members)
    members = [replace(m, weight=round(m.score / fastest, 4) if fastest > 0 else 1.0)
               for m in members]
    return SwarmPlan(term=term, coordinator=local.node_id, issued_at=issued_at,
                     members=tuple(sorted(members, key=lambda m: m.node_id)),
                     consensus=choose_consensus(members), spans=spans)
