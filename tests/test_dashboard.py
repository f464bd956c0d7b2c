"""The dashboard's data: the pure snapshot and span map, the usage ledger, the change counter that
wakes every watcher, the terminal rendering of the same snapshot, and the routes on real loopback
nodes built as `main.py --federation` builds them (tests/swarm_nodes.py; scripted models). The page
itself in a real browser is tests/test_dashboard_browser.py."""
from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from network.api.dashboard.ledger import Ledger, RequestRecord, votes_of
from network.api.dashboard.snapshot import build_snapshot, span_map
from network.federation.changes import Changes
from swarm.node.swarm_view import render_swarm
from tests.swarm_keys import KEY
from tests.swarm_nodes import make_swarm, running

pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")


def text_of(renderable: Any, width: int = 160) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None)
    console.print(renderable)
    return console.file.getvalue()  # type: ignore[attr-defined]


def plan_with_spans(assignments: list[tuple[str, int, int]], blocks: int) -> dict[str, Any]:
    return {"term": 3, "coordinator": "a", "consensus": ["a"], "members": [],
            "spans": {"model": "m", "num_blocks": blocks,
                      "assignments": [{"node_id": n, "start": s, "end": e}
                                      for n, s, e in assignments]}}


# --- pure parts ----------------------------------------------------------------------------------

def test_span_map_marks_unserved_blocks_and_spans_on_dead_nodes_as_gaps():
    plan = plan_with_spans([("a", 0, 10), ("b", 10, 20), ("c", 24, 30)], 30)
    spans = span_map(plan, {"a": "alive", "b": "dead", "c": "alive"})
    assert spans is not None
    assert spans["gaps"] == [[10, 24]]  # b is dead, and nobody planned 20..24
    assert [a["live"] for a in spans["assignments"]] == [True, False, True]
    assert span_map(plan, {"a": "alive", "b": "alive", "c": "alive"})["gaps"] == [[20, 24]]
    assert span_map({"term": 1}, {}) is None and span_map(None) is None


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.tuples(st.sampled_from("abcdef"), st.integers(0, n - 1), st.integers(1, n)), max_size=6))))
def test_span_map_gaps_are_exactly_the_blocks_no_live_node_serves(case):
    blocks, raw = case
    assignments = [(n, s, e) for n, s, e in raw if e > s]
    states = {n: ("dead" if n in "ef" else "alive") for n in "abcdef"}
    spans = span_map(plan_with_spans(assignments, blocks), states)
    assert spans is not None
    in_gap = {b for start, end in spans["gaps"] for b in range(start, end)}
    served = {b for n, s, e in assignments if states[n] == "alive" for b in range(s, e)}
    assert in_gap == set(range(blocks)) - served
    assert all(spans["replicas"][b] > 0 for b in served)
    gaps = spans["gaps"]
    assert all(a[1] < b[0] for a, b in zip(gaps, gaps[1:], strict=False))  # merged, ordered


def test_snapshot_marks_the_coordinator_puts_this_node_first_and_sums_live_nodes():
    rows = [{"node_id": "b", "self": False, "state": "alive", "tok_s": 10.0, "load": 1.0},
            {"node_id": "c", "self": False, "state": "dead", "tok_s": 99.0, "load": 0.0},
            {"node_id": "a", "self": True, "state": "alive", "tok_s": 5.0, "load": 0.0}]
    snap = build_snapshot(node_id="a", rows=rows, election={"term": 4, "coordinator": "b",
                                                               "role": "follower"},
                          plan=None, requests=[], usage={}, version=7, now=1.0)
    assert [n["node_id"] for n in snap["nodes"]] == ["a", "b", "c"]
    assert [n["coordinator"] for n in snap["nodes"]] == [False, True, False]
    assert snap["summary"] == {"nodes": 3, "alive": 2, "tok_s": 15.0, "load": 0.5}
    assert (snap["version"], snap["term"], snap["spans"]) == (7, 4, None)


def test_ledger_counts_tokens_by_strategy_and_by_the_node_that_generated_them():
    bumps: list[int] = []
    ledger = Ledger("me", keep=2, on_record=lambda: bumps.append(1))
    report = {"strategy": "weighted_vote", "winner": "peer", "winner_index": 1, "early_stop": True,
              "candidates": [{"source": "local/0", "tokens": 5, "latency_ms": 3, "votes": 1.0,
                              "valid": True},
                             {"source": "peer", "tokens": 7, "latency_ms": 4, "votes": 2.0,
                              "valid": True},
                             {"source": "local/1", "tokens": 0, "latency_ms": 9, "valid": False,
                              "error": "timeout"}]}
    votes = votes_of(report, "me")
    assert [(v.node, v.winner) for v in votes] == [("me", False), ("peer", True), ("me", False)]
    for i, (strategy, status) in enumerate([("weighted_vote", 200), ("route", 200),
                                            ("route", 429)]):
        ledger.record(RequestRecord(id=f"r{i}", at=float(i), api="openai", endpoint="/x",
                                    strategy=strategy, model="m", status=status, duration_ms=1,
                                    prompt_tokens=3, completion_tokens=7 if status == 200 else 0,
                                    candidates=votes if i == 0 else ()))
    usage = ledger.usage()
    assert usage["by_strategy"]["route"] == {"requests": 2, "errors": 1, "prompt_tokens": 6,
                                             "completion_tokens": 7}
    assert usage["by_node"] == {"me": {"candidates": 2, "wins": 0, "tokens": 5},
                                "peer": {"candidates": 1, "wins": 1, "tokens": 7}}
    assert usage["total"]["requests"] == 3 and len(bumps) == 3
    assert [r["id"] for r in ledger.recent()] == ["r2", "r1"]  # newest first, `keep` of them


async def test_every_watcher_sees_every_change_however_many_watch():
    changes = Changes()
    seen: dict[str, list[int]] = {"page": [], "terminal": []}

    async def watch(name: str) -> None:
        version = 0
        while version < 3:
            version = await changes.wait_newer(version, 5.0)
            seen[name].append(version)

    async with asyncio.TaskGroup() as tg:
        for name in seen:
            tg.create_task(watch(name))
        for _ in range(3):
            await asyncio.sleep(0)  # let both watchers wait (a shared cleared Event loses one)
            changes.bump()
    assert all(versions[-1] == 3 for versions in seen.values())
    assert await changes.wait_newer(2, 5.0) == 3  # a late watcher is answered at once
    started = time.monotonic()
    assert await changes.wait_newer(3, 0.05) == 3  # nothing new: the timeout answers
    assert time.monotonic() - started >= 0.04


def test_the_terminal_renders_nodes_spans_requests_and_usage_as_text():
    rows = [{"node_id": "a", "self": True, "state": "alive", "model": "m", "load": 0.5,
             "tok_s": 12.5, "coordinator": True},
            {"node_id": "b", "self": False, "state": "dead", "model": "m", "load": None,
             "last_seen_s_ago": 4.2}]
    request = {"id": "r1", "at": 0.0, "api": "openai", "endpoint": "/v1/chat/completions",
               "strategy": "weighted_vote", "status": 200, "duration_ms": 1234.0,
               "completion_tokens": 9, "winner": "a",
               "candidates": [{"node": "a", "tokens": 9, "votes": 2.0, "winner": True},
                              {"node": "b", "tokens": 0, "error": "dead", "winner": False}]}
    snap = build_snapshot(node_id="a", rows=rows, election={"term": 2, "coordinator": "a"},
                          plan=plan_with_spans([("a", 0, 15), ("b", 15, 30)], 30),
                          requests=[request],
                          usage={"by_strategy": {"weighted_vote": {
                              "requests": 1, "errors": 0, "completion_tokens": 9}},
                              "by_node": {"a": {"candidates": 1, "wins": 1, "tokens": 9}}},
                          version=1, now=0.0)
    text = text_of(render_swarm(snap))
    assert "1 of 2 node(s) alive, coordinator a (term 2), 12.5 tok/s" in text
    assert "dead" in text and "4.2s ago" in text
    assert "gaps 15:30" in text  # b serves 15..30 and is dead
    assert "*a 9t votes 2.00" in text and "!b 0t" in text
    assert "weighted_vote" in text and "1.23 s" in text


def test_join_requests_show_under_the_nodes_with_their_code_and_command():
    joins = {"node_id": "a", "pairing": "open", "requests": [
        {"node_id": "c0ffee", "name": "MacBook-Air", "state": "pending", "code": "4821-0937",
         "expires_in_s": 120.0},
        {"node_id": "beef01", "name": "", "state": "offered", "code": None}]}
    snap = build_snapshot(node_id="a", rows=[{"node_id": "a", "self": True, "state": "alive"}],
                          election={}, plan=None, requests=[], usage={}, version=3, now=0.0,
                          joins=joins)
    assert snap["joins"] == joins
    text = text_of(render_swarm(snap))
    assert "MacBook-Air (c0ffee) asks to join; code 4821-0937" in text.replace("\n", " ")
    assert "python main.py peers approve c0ffee" in text.replace("\n", " ")
    assert "beef01" not in text  # no code yet: nothing to compare, nothing to approve


# --- routes on real loopback nodes ------------------------------------------------------------------

@pytest.fixture()
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def snapshot_until(http: aiohttp.ClientSession, url: str,
                         predicate: Callable[[dict[str, Any]], bool], within_s: float,
                         headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Long-poll the node's snapshot (as the page does) until `predicate` holds."""
    version: int | None = None
    snap: dict[str, Any] = {}
    try:
        async with asyncio.timeout(within_s):
            while True:
                query = "" if version is None else f"?after={version}&wait_s=1"
                async with http.get(url + "/v1/dashboard/snapshot" + query,
                                    headers=headers) as r:
                    assert r.status == 200, await r.text()
                    snap = await r.json()
                if predicate(snap):
                    return snap
                version = snap["version"]
    except TimeoutError:
        raise AssertionError(f"the snapshot never got there: {snap}") from None


def coordinator_shown(snap: dict[str, Any]) -> bool:
    nodes = snap["nodes"]
    return len(nodes) == 3 and all(n["state"] == "alive" for n in nodes) \
        and sum(n["coordinator"] for n in nodes) == 1 and snap["coordinator"] is not None \
        and snap["plan"] is not None  # fetched from the coordinator within a second


async def test_the_snapshot_shows_the_swarm_its_requests_and_a_stopped_node(tmp_path, http):
    nodes = make_swarm(tmp_path, ["a", "b", "c"], KEY, scores={"a": 1.0, "b": 3.0, "c": 2.0})
    async with running(nodes):
        a = nodes["a"]
        snap = await snapshot_until(http, a.url, coordinator_shown, 15.0)
        assert [n["node_id"] for n in snap["nodes"]] == ["a", "b", "c"]
        assert snap["coordinator"] == "b" and snap["plan"]["coordinator"] == "b"

        body = {"messages": [{"role": "user", "content": "Capital of France?"}],
                "max_tokens": 8, "swarm": {"strategy": "weighted_vote", "n": 3}}
        async with http.post(a.url + "/v1/chat/completions", json=body) as r:
            assert r.status == 200
            reply = await r.json()
        snap = await snapshot_until(http, a.url, lambda s: bool(s["requests"]), 5.0)
        request = snap["requests"][0]
        assert request["strategy"] == "weighted_vote" and request["status"] == 200
        nodes_used = {c["node"] for c in request["candidates"]}
        assert nodes_used == {c["source"] if not c["source"].startswith("local/") else "a"
                              for c in reply["swarm"]["candidates"]}
        assert len(nodes_used) > 1  # candidates came from several machines
        assert sum(c["winner"] for c in request["candidates"]) == 1

        async with http.get(a.url + "/v1/federation/stats") as r:
            stats = await r.json()
        assert stats["by_strategy"]["weighted_vote"]["requests"] == 1
        assert sum(t["tokens"] for t in stats["by_node"].values()) == \
            sum(c["tokens"] for c in reply["swarm"]["candidates"])
        assert set(stats["by_node"]) == nodes_used

        await nodes["c"].stop()
        snap = await snapshot_until(
            http, a.url, lambda s: {n["node_id"]: n["state"] for n in s["nodes"]}["c"] == "dead",
            10.0)
        async with http.get(a.url + "/dashboard") as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
            assert "/dashboard/app.js" in await r.text()


async def test_with_api_keys_the_page_is_open_and_its_data_wants_the_key(tmp_path, http):
    nodes = make_swarm(tmp_path, ["a"], KEY, extra={"a": {"api.keys": ["sekrit"]}})
    async with running(nodes):
        url = nodes["a"].url
        for path in ("/dashboard", "/dashboard/app.js", "/dashboard/style.css"):
            async with http.get(url + path) as r:
                assert r.status == 200, path
        for path in ("/v1/dashboard/snapshot", "/v1/federation/stats", "/api/tags"):
            async with http.get(url + path) as r:
                assert r.status == 401, path
        async with http.get(url + "/api/tags") as r:
            assert isinstance((await r.json())["error"], str)  # Ollama's error body
        key = {"Authorization": "Bearer sekrit"}
        snap = await snapshot_until(http, url, lambda s: len(s["nodes"]) == 1, 5.0, headers=key)
        assert snap["nodes"][0]["self"] is True
        async with http.get(url + "/v1/dashboard/snapshot?after=x", headers=key) as r:
            assert r.status == 400 and (await r.json())["error"]["param"] == "after"
        async with http.get(url + "/v1/dashboard/snapshot?wait_s=99", headers=key) as r:
            assert r.status == 400
