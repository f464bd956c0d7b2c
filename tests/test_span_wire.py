"""The span map on the wire, in the heartbeat and the plan, on screen, and the API's answer to
a spans request on a node without --spans."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from network.coordination.spans import SpanNode, plan_spans
from network.wire.election import SwarmPlan
from network.wire.fields import WireDecodeError
from network.wire.messages import Heartbeat
from network.wire.spans import SpanAssignment, SpanPlan
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.node.config import load_config
from swarm.node.span_view import render_spans

PEERS = ("/ip4/127.0.0.1/tcp/4000/p2p/12D3KooWR2p5nrPjMUfQ22aNHNtxzLvoxAGe6os1D2ivzwCG1B1i",)


def plan_of(num_blocks: int, nodes: list[SpanNode]) -> SpanPlan:
    layout = plan_spans(num_blocks, nodes)
    return SpanPlan("m", num_blocks, "m", PEERS,
                    tuple(SpanAssignment(s.node_id, s.start, s.end) for s in layout.spans),
                    layout.gaps, layout.bottleneck)


@given(st.integers(1, 12), st.lists(st.integers(0, 12), min_size=1, max_size=4))
def test_span_plan_round_trips(num_blocks, caps):
    plan = plan_of(num_blocks, [SpanNode(f"n{i}", 1.0, c) for i, c in enumerate(caps)])
    assert SpanPlan.from_wire(plan.to_wire()) == plan
    swarm = SwarmPlan(term=3, coordinator="n0", spans=plan)
    assert SwarmPlan.from_wire(swarm.to_wire()) == swarm


def test_clients_route_through_the_planned_servers_once_all_are_known():
    plan = plan_of(30, [SpanNode("a", 1.0, 20), SpanNode("b", 1.0, 20)])
    assert plan.allowed_servers() is None  # no peer ids yet: route by the DHT alone
    named = SpanPlan(plan.model, 30, "m", PEERS, tuple(
        SpanAssignment(a.node_id, a.start, a.end, f"peer-{a.node_id}") for a in plan.assignments))
    assert named.allowed_servers() == ("peer-a", "peer-b")
    assert SpanPlan.from_wire(named.to_wire()) == named
    beat = Heartbeat(node_id="a", boot_id="b", protocol=1, api_port=1, span_peer="12D3KooWx")
    assert Heartbeat.from_wire(beat.to_wire()).span_peer == "12D3KooWx"


def test_the_plan_revision_moves_with_the_span_map():
    """Followers fetch the plan only when the revision in the coordinator's heartbeat moves: a
    span server named or a span moved must move it (else followers never see the servers), a new
    bottleneck figure alone need not."""
    plan = plan_of(30, [SpanNode("a", 1.0, 20), SpanNode("b", 1.0, 20)])
    named = SpanPlan(plan.model, 30, "m", PEERS, tuple(
        SpanAssignment(a.node_id, a.start, a.end, f"peer-{a.node_id}") for a in plan.assignments),
        plan.gaps, plan.bottleneck)
    moved = SpanPlan(plan.model, 30, "m", PEERS, tuple(
        SpanAssignment(a.node_id, a.start, a.end + (1 if a.start == 0 else 0)) for a in
        plan.assignments), plan.gaps, plan.bottleneck)
    slower = SpanPlan(plan.model, 30, "m", PEERS, plan.assignments, plan.gaps, plan.bottleneck / 2)

    def revision(spans: SpanPlan | None) -> str:
        return SwarmPlan(term=3, coordinator="a", consensus=("a", "b"), spans=spans).revision

    assert len({revision(None), revision(plan), revision(named), revision(moved)}) == 4
    assert revision(slower) == revision(plan)


def test_a_plan_without_spans_stays_as_it_was():
    wire = SwarmPlan(term=1, coordinator="a").to_wire()
    assert "spans" not in wire and SwarmPlan.from_wire(wire).spans is None


@pytest.mark.parametrize(("change", "needle"), [
    ({"assignments": [{"node_id": "a", "start": 5, "end": 5}]}, "not after start"),
    ({"assignments": [{"node_id": "a", "start": 0, "end": 40}]}, "past num_blocks"),
    ({"assignments": [{"node_id": "a", "start": 0, "end": 1},
                      {"node_id": "a", "start": 1, "end": 2}]}, "appears twice"),
    ({"gaps": [[3]]}, "pair"),
    ({"num_blocks": 0}, "num_blocks"),
    ({"initial_peers": "x"}, "initial_peers"),
])
def test_bad_span_plans_are_refused(change, needle):
    wire = {**plan_of(30, [SpanNode("a", 1.0, 30)]).to_wire(), **change}
    with pytest.raises(WireDecodeError, match=needle):
        SpanPlan.from_wire(wire)


def test_heartbeat_carries_span_capacity_and_old_ones_read_as_none():
    beat = Heartbeat(node_id="a", boot_id="b", protocol=1, api_port=1, span_blocks=22)
    assert Heartbeat.from_wire(beat.to_wire()).span_blocks == 22
    old = {k: v for k, v in beat.to_wire().items() if k != "span_blocks"}
    assert Heartbeat.from_wire(old).span_blocks == 0


def test_span_map_renders_nodes_blocks_replicas_and_gaps():
    view = {"plan": plan_of(30, [SpanNode("a", 1.0, 20), SpanNode("b", 1.0, 5)]).to_wire(),
            "node": {"node_id": "a", "span_blocks": 20,
                     "server": {"start": 0, "end": 20, "state": "serving"}}}
    console = Console(width=120, record=True)
    console.print(render_spans(view))
    text = console.export_text()
    assert "a" in text and "serving" in text and "not served: " in text
    console.print(render_spans({"plan": None, "node": {}}))
    assert "no span map yet" in console.export_text()


def test_spans_config_keys_and_flags():
    from swarm.node.cli import parse

    command, config = parse(["--spans", "--max-memory-gb", "0.75", "--strategy", "spans"])
    assert config.spans.enabled and config.spans.max_memory_gb == 0.75
    assert config.consensus.strategy == "spans"
    assert load_config(env={"LOCAL_SWARM_SPANS_ENABLED": "1"}).spans.enabled
    assert parse(["setup-spans"])[0] == "setup-spans"


def test_a_spans_request_on_a_node_without_spans_is_a_clear_400(api_server):
    reply = httpx.post(api_server.url + "/v1/chat/completions", timeout=60, json={
        "messages": [{"role": "user", "content": "Hi"}], "swarm": {"strategy": "spans"}})
    assert reply.status_code == 400
    assert reply.json()["error"]["code"] == "spans_disabled"


def test_a_suspect_peer_keeps_its_place_in_the_span_plan_and_a_dead_one_loses_it(tmp_path):
    from types import SimpleNamespace

    from network.membership.records import PeerState
    from network.petals.service import SpanService
    from swarm.node.config import SpansConfig

    def peer(node_id: str, state: PeerState) -> SimpleNamespace:
        beat = Heartbeat(node_id=node_id, boot_id="b", protocol=1, api_port=1, span_blocks=22,
                         span_peer=f"12D3Koo{node_id}")
        return SimpleNamespace(node_id=node_id, state=state, heartbeat=beat)

    peers = [peer("b", PeerState.ALIVE), peer("c", PeerState.SUSPECT), peer("d", PeerState.DEAD),
             peer("e", PeerState.JOINING)]
    service = SpanService(SpansConfig(), cache_path=tmp_path, model_path="", node_id="a",
                          host="127.0.0.1", ram_bytes=2**30, coordinator=None,
                          peers=lambda: peers)
    service.span_blocks = 22
    assert [n.node_id for n in service.leader.capacities()] == ["a", "b", "c"]
    assert set(service.leader.server_ids()) == {"a", "b", "c"}


async def test_the_span_map_last_applied_serves_while_the_coordinator_shows_none_for_a_moment(
        tmp_path):
    """Leadership settling (a solo leader claiming its first real term, a follower's plan older
    than the term it just learnt) hides the coordinator's map for a moment: the node keeps the
    map it applied for PLAN_HOLD_S, then says there is none (a 503 with Retry-After)."""
    from types import SimpleNamespace

    from network.petals import service as span_service
    from network.petals.chain import SpanChain
    from network.wire.spans import SpanAssignment, SpanPlan
    from swarm.errors import RequestError
    from swarm.node.config import SpansConfig

    plan = SpanPlan(model="m", num_blocks=30, dht_prefix="m",
                    initial_peers=("/ip4/127.0.0.1/tcp/1/p2p/Qm",),
                    assignments=(SpanAssignment("a", 0, 30, "12D3Kooa"),), gaps=(), bottleneck=1.0)
    shown: list[SpanPlan | None] = [plan]
    applied: list[tuple[tuple[int, int] | None, tuple[str, ...]]] = []

    async def apply(span, initial_peers) -> None:
        applied.append((span, initial_peers))

    coordinator = SimpleNamespace(current_spans=lambda: shown[0])
    service = span_service.SpanService(SpansConfig(), cache_path=tmp_path, model_path="",
                                       node_id="a", host="127.0.0.1", ram_bytes=2**30,
                                       coordinator=coordinator, peers=lambda: [])
    service.supervisor = SimpleNamespace(apply=apply, status=None)
    await service._follow(coordinator.current_spans())
    assert applied == [((0, 30), plan.initial_peers)]
    shown[0] = None
    await service._follow(coordinator.current_spans())
    assert service.current_plan() == plan and service.unavailable() is None
    assert service.view()["plan"] == plan.to_wire()
    service._applied_seen -= span_service.PLAN_HOLD_S + 1  # the hold is over
    assert service.current_plan() is None
    with pytest.raises(RequestError) as refused:
        await anext(SpanChain(service).stream(GenerationRequest(
            messages=(ChatMessage("user", "Hi"),), params=SamplingParams(max_tokens=4))))
    assert refused.value.status == 503 and "no span map yet" in str(refused.value)
    assert refused.value.headers["Retry-After"]


def test_the_span_venv_hard_links_the_nodes_own_torch_build(tmp_path):
    """The span venv takes this venv's torch 2.13.0 CPU build as hard links (no copy, no disk),
    every file of its RECORD but the console scripts."""
    import os

    from network.petals.environment import link_torch, reusable_torch

    torch = reusable_torch()
    if torch is None:
        pytest.skip("this venv's torch is not the span runtime's 2.13.0 CPU build")
    assert link_torch(torch, tmp_path)
    init = tmp_path / "torch" / "__init__.py"
    assert os.path.samefile(init, Path(str(torch.locate_file("torch/__init__.py"))))
    assert os.stat(init).st_nlink >= 2
    assert (tmp_path / f"torch-{torch.version}.dist-info" / "RECORD").is_file()
