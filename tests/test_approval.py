"""--approve-peers: the approved-ids store, the loopback-only approve route, and whole nodes where
a peer holding the swarm key stays pending (never used) until `main.py peers approve ID`."""
from __future__ import annotations

import asyncio
import json
import logging
import stat
import tempfile
from pathlib import Path

import aiohttp
import httpx
import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from network.coordination.driver import peer_view
from network.membership.table import Membership, PeerState
from network.trust.approval import (
    ApprovalError,
    ApprovalRoutes,
    ApprovedPeers,
    approved_path,
    is_loopback,
)
from network.wire.address import Address
from swarm.node import commands
from swarm.node.config import load_config
from tests.federation_fixtures import until
from tests.server import ServerThread
from tests.swarm_keys import KEY
from tests.swarm_nodes import bound_socket, make_swarm, running, weighted_vote
from tests.test_membership import advert, beat


def test_the_store_persists_privately_and_atomically(tmp_path):
    path = approved_path(tmp_path / "cache")
    store = ApprovedPeers.load(path)
    assert len(store) == 0 and not path.exists()
    assert store.add("laptop-1") and store.add("a.b:c-2") and not store.add("laptop-1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"version": 1, "approved": ["a.b:c-2", "laptop-1"]}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    again = ApprovedPeers.load(path)
    assert again.ids() == ("a.b:c-2", "laptop-1") and "laptop-1" in again
    assert again.remove("laptop-1") and not again.remove("laptop-1")
    assert ApprovedPeers.load(path).ids() == ("a.b:c-2",)


@pytest.mark.parametrize("bad", ["", "-x", "a b", "x" * 65, "é", "../etc", "a/b", None, 7])
def test_only_node_ids_are_approved(bad):
    store = ApprovedPeers()
    with pytest.raises(ApprovalError):
        store.add(bad)
    assert len(store) == 0


def test_the_store_is_bounded(tmp_path):
    store = ApprovedPeers(approved_path(tmp_path), limit=2)
    store.add("n1")
    store.add("n2")
    with pytest.raises(ApprovalError, match="already 2"):
        store.add("n3")
    assert store.ids() == ("n1", "n2") and ApprovedPeers.load(approved_path(tmp_path)).ids() == (
        "n1", "n2")


def test_an_unreadable_file_fails_closed_and_is_kept_aside(tmp_path, caplog):
    path = approved_path(tmp_path)
    path.write_text("{not json")
    with caplog.at_level(logging.ERROR, logger="network.trust.approval"):
        assert len(ApprovedPeers.load(path)) == 0
    assert "no peer is approved" in caplog.text
    assert path.with_name(path.name + ".bad").read_text() == "{not json" and not path.exists()
    path.write_text(json.dumps({"version": 1, "approved": ["ok-1", "../bad", 5, "ok-2"]}))
    assert ApprovedPeers.load(path).ids() == ("ok-1", "ok-2")


def test_a_failed_save_changes_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = ApprovedPeers(blocker / "approved-peers.json")  # its folder is a file: cannot save
    with pytest.raises(OSError):
        store.add("n1")
    assert "n1" not in store


ops = st.lists(st.tuples(st.booleans(), st.sampled_from(["n1", "n2", "n3", "n4"])), max_size=30)


@settings(max_examples=60, deadline=None)
@given(script=ops)
def test_the_store_behaves_like_a_set_and_reloads_the_same(script):
    with tempfile.TemporaryDirectory() as tmp:
        path = approved_path(Path(tmp))
        store, model = ApprovedPeers(path, limit=3), set()
        for add, node_id in script:
            if add and node_id not in model and len(model) >= 3:
                with pytest.raises(ApprovalError):
                    store.add(node_id)
                continue
            changed = store.add(node_id) if add else store.remove(node_id)
            assert changed == ((node_id not in model) if add else (node_id in model))
            (model.add if add else model.discard)(node_id)
        assert set(store.ids()) == model
        assert set(ApprovedPeers.load(path).ids()) == model if script else True


@pytest.mark.parametrize(("remote", "local"), [
    ("127.0.0.1", True), ("127.3.4.5", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("10.0.0.5", False), ("192.168.1.20", False), ("::ffff:10.0.0.5", False), ("fe80::1%eth0", False),
    ("0.0.0.0", False), ("", False), (None, False), ("localhost", False), ("garbage", False)])
def test_only_loopback_addresses_are_local(remote, local):
    assert is_loopback(remote) is local


def test_pending_peers_are_not_in_the_election_view():
    m = Membership("self", 1, "ab12", approved=lambda _id: False)
    m.discovered(advert("n1"), Address("a", 1), 0.0)
    m.heartbeat_ok("n1", beat("n1"), 0.1)
    peer = m.get("n1")
    assert peer is not None and peer.state is PeerState.PENDING and peer_view(peer) is None


# --- the route, over loopback ----------------------------------------------------------------

def approval_app(store: ApprovedPeers, membership: Membership, remote: str | None) -> web.Application:
    """An app with the approve route; `remote` (if set) stands in for the caller's address, as
    a LAN client would have (only loopback servers are started in tests)."""

    @web.middleware
    async def pretend(request: web.Request, handler):
        return await handler(request.clone(remote=remote) if remote else request)

    from network.api.errors import error_middleware

    app = web.Application(middlewares=[error_middleware, pretend])
    ApprovalRoutes(store, membership.get, enforced=False).add_to(app)
    return app


@pytest.mark.parametrize("remote", [None, "192.168.1.20"])
def test_approve_is_for_this_machine_only_and_validates(remote):
    store, membership = ApprovedPeers(), Membership("self", 1, "ab12")
    server = ServerThread(lambda: approval_app(store, membership, remote)).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            answer = http.post("/v1/federation/approve", json={"node_id": "laptop-1"})
            if remote is not None:
                assert answer.status_code == 403, answer.text
                error = answer.json()["error"]
                assert (error["code"], error["type"]) == ("not_local", "permission_error")
                assert "laptop-1" not in store
                return
            assert answer.json() == {"node_id": "laptop-1", "approved": True, "state": None,
                                     "join": None, "approve_peers": False}
            assert "laptop-1" in store
            for body, param in [({"node_id": "../x"}, "node_id"), ({}, "node_id"),
                                ({"node_id": "n1", "approved": "yes"}, "approved"),
                                (["n1"], None)]:
                bad = http.post("/v1/federation/approve", json=body)
                assert bad.status_code == 400 and bad.json()["error"]["param"] == param, body
            assert http.post("/v1/federation/approve", content=b"{nope").status_code == 400
            revoked = http.post("/v1/federation/approve",
                                json={"node_id": "laptop-1", "approved": False})
            assert revoked.json()["approved"] is False and "laptop-1" not in store
    finally:
        server.stop()


# --- whole nodes (main.build_services), manual peers on loopback ---------------------------------

async def test_an_unapproved_peer_waits_until_approved_from_the_terminal(tmp_path, capsys):
    swarm = make_swarm(tmp_path, ["a", "b"], KEY, extra={"a": {"federation.approve_peers": True}})
    async with running(swarm) as nodes, aiohttp.ClientSession() as http:
        a, b = nodes["a"], nodes["b"]
        await until(lambda: a.state_of("b") is PeerState.PENDING, what="a to hold b pending")
        await until(lambda: b.state_of("a") is PeerState.ALIVE, what="b (no approval) to use a")
        assert a.federation.remotes() == [] and a.federation.membership.routable() == ()
        assert "b" not in await weighted_vote(http, a, 4)
        assert b.pool.instances[0].backend.requests == []

        await asyncio.to_thread(commands.show_peers, a.config)  # what `main.py peers` prints
        printed = capsys.readouterr().out
        assert "pending" in printed and "python main.py peers approve b" in printed, printed

        assert await asyncio.to_thread(commands.approve_peer, a.config, "b") == 0
        assert a.state_of("b") is PeerState.ALIVE  # at once, not on the next heartbeat
        assert "b approved; its state is now alive." in capsys.readouterr().out
        assert "b" in ApprovedPeers.load(approved_path(a.config.cache_path))
        assert "b" in await weighted_vote(http, a, 4)

        assert await asyncio.to_thread(commands.approve_peer, a.config, "b", False) == 0
        assert a.state_of("b") is PeerState.PENDING and a.federation.remotes() == []
        assert "b no longer approved; its state is now pending." in capsys.readouterr().out


def test_approve_says_when_no_node_answers(tmp_path, caplog):
    sock = bound_socket()  # bound, not listening: the connection is refused
    config = load_config(env={}, cli={"api.port": sock.getsockname()[1],
                                      "model.cache_dir": str(tmp_path)})
    with caplog.at_level(logging.ERROR):
        assert commands.approve_peer(config, "b") == 1
    sock.close()
    assert "no node answers" in caplog.text
