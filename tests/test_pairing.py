"""Joining by approval between whole nodes (main.build_services) on loopback, manual peers: fresh
nodes ask, one `peers approve` admits, the flood, expiry, refusal and configured-key rules."""
from __future__ import annotations

import asyncio
import stat
import time

import aiohttp
import httpx

from network.federation.pairing import MAX_REFUSED
from network.membership.table import PeerState
from network.trust.exchange import JoinerExchange
from network.trust.swarm_key import key_path, read_key_file, solo_path
from network.wire import codec
from network.wire.pairing import JoinHello
from swarm.node import commands
from tests.federation_fixtures import until
from tests.swarm_keys import KEY, OTHER_KEY
from tests.swarm_nodes import SwarmNode, make_swarm, running, weighted_vote


def stored_key(node: SwarmNode) -> str:
    return read_key_file(key_path(node.config.cache_path))[0].fingerprint


async def asked(host: SwarmNode, node_id: str) -> str:
    """The code `host` shows for the pending join request of `node_id`, once it shows one."""
    def pending() -> list[dict]:
        return [r for r in host.pairing.requests() if r["node_id"] == node_id
                and r["state"] == "pending"]
    await until(lambda: bool(pending()), 10, f"{host.name} to hold a request of {node_id}")
    return str(pending()[0]["code"])


async def test_two_fresh_nodes_become_one_swarm_with_one_approval(tmp_path, capsys):
    swarm = make_swarm(tmp_path, ["a", "b"], KEY, fresh=frozenset({"a", "b"}))
    async with running(swarm) as nodes, aiohttp.ClientSession() as http:
        a, b = nodes["a"], nodes["b"]
        assert a.pairing.state() == "fresh" and b.pairing.state() == "fresh"
        assert stored_key(a) != stored_key(b)
        code = await asked(a, "b")  # the larger node id asks the smaller
        await until(lambda: (b.pairing.asking or {}).get("code") == code, 5,
                    "b to show the code a shows")
        assert a.pairing.asking is None and "b" not in {r["node_id"] for r in b.pairing.requests()}
        await asyncio.to_thread(commands.show_peers, a.config)  # what `main.py peers` prints
        printed = capsys.readouterr().out
        assert f"code {code}" in printed and "python main.py peers approve b" in printed, printed

        approved_at = time.monotonic()
        assert await asyncio.to_thread(commands.approve_peer, a.config, "b") == 0
        await until(lambda: a.state_of("b") is PeerState.ALIVE
                    and b.state_of("a") is PeerState.ALIVE, 1.0, "both alive within 1 s")
        joined_s = time.monotonic() - approved_at
        assert f"code {code}" in capsys.readouterr().out
        print(f"approval to membership: {joined_s * 1000:.0f} ms")
        assert stored_key(a) == stored_key(b) == a.federation.keys.fingerprint
        path = key_path(b.config.cache_path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not solo_path(path).exists() and not solo_path(key_path(a.config.cache_path)).exists()
        assert a.pairing.state() == b.pairing.state() == "open"
        leader = a.federation.coordinator.state
        await until(lambda: a.federation.coordinator.state.coordinator
                    == b.federation.coordinator.state.coordinator is not None, 5,
                    f"one coordinator for both ({leader})")
        assert {"a", "b"} <= await weighted_vote(http, a, 4) | {"a"}
        assert "a" in await weighted_vote(http, b, 4)


async def test_a_flood_of_join_requests_is_cut_off_and_the_node_keeps_serving(tmp_path):
    swarm = make_swarm(tmp_path, ["a"], KEY)
    async with running(swarm) as nodes:
        a = nodes["a"]
        statuses = []
        async with httpx.AsyncClient(base_url=a.url, timeout=5) as http:
            for i in range(40):
                hello = JoinerExchange(f"x{i}", "flood", KEY.fingerprint, bytes(32),
                                       bytes(16)).hello()
                r = await http.post("/v1/federation/join", content=codec.encode(hello, codec.JSON),
                                    headers={"Content-Type": codec.JSON})
                statuses.append(r.status_code)
            assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}, statuses
            assert len(a.pairing.host) == 5
            assert (await http.get("/health")).status_code == 200
            garbage = await http.post("/v1/federation/join", content=b"\x00" * 5000,
                                      headers={"Content-Type": codec.JSON})
            assert garbage.status_code == 413
            bad = await http.post("/v1/federation/join", json={"node_id": "x"})
            assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_message"
            chat = await http.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
            assert chat.status_code == 200


def test_join_hello_is_a_wire_message():
    hello = JoinHello(node_id="n1", name="Mac", swarm=KEY.fingerprint, commitment=bytes(32))
    assert codec.decode(codec.encode(hello), codec.MSGPACK, JoinHello) == hello


async def test_a_refused_machine_gets_nothing_and_stops_asking(tmp_path, capsys):
    swarm = make_swarm(tmp_path, ["a", "b"], KEY, fresh=frozenset({"b"}),
                       extra={"a": {"federation.approve_peers": True}})
    async with running(swarm) as nodes:
        a, b = nodes["a"], nodes["b"]
        assert a.pairing.state() == "open" and b.pairing.state() == "fresh"
        await asked(a, "b")
        own = stored_key(b)
        await until(lambda: bool(a.pairing.waiters), 5, "b to wait for the decision")
        assert await asyncio.to_thread(commands.approve_peer, a.config, "b", False) == 0
        assert "refused" in capsys.readouterr().out
        await until(lambda: KEY.fingerprint in b.pairing.refused, 5, "b to take the refusal")
        assert a.pairing.requests() == [] and stored_key(b) == own
        assert b.pairing.asking is None and b.pairing.state() == "fresh"
        assert a.state_of("b") is PeerState.FOREIGN
        for k in range(MAX_REFUSED):  # a device showing (and refusing with) many fingerprints
            b.pairing.note_refusal(f"{k:064x}")
        assert len(b.pairing.refused) == MAX_REFUSED and KEY.fingerprint not in b.pairing.refused


async def test_under_approve_peers_one_approval_also_approves_the_peer(tmp_path):
    swarm = make_swarm(tmp_path, ["a", "b"], KEY, fresh=frozenset({"b"}),
                       extra={"a": {"federation.approve_peers": True},
                              "b": {"federation.approve_peers": True}})
    async with running(swarm) as nodes:
        a, b = nodes["a"], nodes["b"]
        code = await asked(a, "b")
        assert await asyncio.to_thread(commands.approve_peer, a.config, "b", True, code) == 0
        await until(lambda: a.state_of("b") is PeerState.ALIVE
                    and b.state_of("a") is PeerState.ALIVE, 2, "both alive (not pending)")
        assert stored_key(b) == KEY.fingerprint  # the configured key, now in b's key file


async def test_configured_keys_never_ask_and_two_swarms_in_sight_get_no_request(tmp_path):
    swarm = make_swarm(tmp_path, ["a", "b", "c"], KEY, fresh=frozenset({"b"}),
                       keys={"c": (OTHER_KEY, ())})
    async with running(swarm) as nodes:
        a, b, c = nodes["a"], nodes["b"], nodes["c"]
        await until(lambda: "several swarms" in b.pairing.reason, 5, "b to see two swarms")
        assert b.pairing.asking is None and a.pairing.requests() == c.pairing.requests() == []
        assert a.pairing.asking is None and c.pairing.asking is None
        assert (a.pairing.state(), c.pairing.state()) == ("open", "open")
        assert stored_key(b) not in (KEY.fingerprint, OTHER_KEY.fingerprint)


async def test_with_pairing_off_a_member_takes_no_join_requests(tmp_path):
    swarm = make_swarm(tmp_path, ["a", "b"], KEY, fresh=frozenset({"b"}),
                       extra={"a": {"federation.pairing": False}})
    async with running(swarm) as nodes:
        a, b = nodes["a"], nodes["b"]
        await until(lambda: b.state_of("a") is PeerState.FOREIGN, 5, "b to see a foreign")
        assert a.pairing.state() == ""
        assert "no swarm in sight" in b.pairing.reason
        hello = JoinerExchange("x1", "m", KEY.fingerprint, bytes(32), bytes(16)).hello()
        async with httpx.AsyncClient(base_url=a.url, timeout=5) as http:
            r = await http.post("/v1/federation/join", content=codec.encode(hello, codec.JSON),
                                headers={"Content-Type": codec.JSON})
        assert r.status_code == 403 and r.json()["error"]["code"] == "pairing_off"
