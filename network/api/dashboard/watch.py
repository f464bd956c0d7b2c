"""The node's live view of the swarm: where the snapshot's parts come from, and the change counter
every watcher (the page's long polls, the terminal view) waits on.

Without --federation the node is alone: its own row from the pool. With it, `attach` wires the
federation's peer rows, election status and the coordinator's plan in (main.py does).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from network.api.dashboard.ledger import Ledger
from network.api.dashboard.snapshot import build_snapshot
from network.federation.changes import Changes
from network.wire.election import SwarmPlan
from swarm.engine.pool import InstancePool

Rows = Callable[[], Sequence[Mapping[str, Any]]]


class SwarmWatch:
    """Builds snapshots of what this node sees; `changes` is bumped on every change."""

    def __init__(self, pool: InstancePool, changes: Changes | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.pool = pool
        self.changes = changes or Changes()
        self.ledger = Ledger(pool.node_id, on_record=self.changes.bump)
        self.clock = clock
        self._rows: Rows = self._alone
        self._election: Callable[[], Mapping[str, Any]] = lambda: {}
        self._plan: Callable[[], SwarmPlan | None] = lambda: None
        self._joins: Callable[[], Mapping[str, Any]] = dict

    def attach(self, rows: Rows, election: Callable[[], Mapping[str, Any]],
               plan: Callable[[], SwarmPlan | None],
               joins: Callable[[], Mapping[str, Any]] = dict) -> None:
        """Show the swarm: peer rows (`/v1/federation/peers`), the election status, the plan
        in force (the coordinator's own, or the one this node follows) and the join requests
        (`/v1/federation/joins`)."""
        self._rows, self._election, self._plan, self._joins = rows, election, plan, joins

    def _alone(self) -> list[dict[str, Any]]:
        pool = self.pool
        return [{"node_id": pool.node_id, "self": True, "state": "alive", "address": None,
                 "api_port": None, "model": pool.model_id, "load": pool.load(),
                 "queue_depth": pool.queue_depth(), "bench_score": None,
                 "last_seen_s_ago": 0.0, "reason": "this node", "coordinator": False,
                 "tok_s": round(pool.tok_s(), 2), "tokens": pool.tokens(),
                 "instances": len(pool.instances)}]

    def snapshot(self) -> dict[str, Any]:
        """The swarm now, as the page and the terminal show it."""
        plan = self._plan()
        return build_snapshot(node_id=self.pool.node_id, rows=self._rows(),
                              election=self._election(),
                              plan=None if plan is None else plan.to_wire(),
                              requests=self.ledger.recent(), usage=self.stats(),
                              joins=self._joins(),
                              version=self.changes.version, now=self.clock())

    def stats(self) -> dict[str, Any]:
        """`/v1/federation/stats`: this node's usage ledger, and what its instances generated
        for anyone (peers' votes included) with their decode speed."""
        return {**self.ledger.usage(), "generated_tokens": self.pool.tokens(),
                "tok_s": round(self.pool.tok_s(), 2)}
