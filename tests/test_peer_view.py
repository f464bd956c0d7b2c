"""The peer table as a person sees it: rendering, missing-peer hints, and `main.py peers`."""
from __future__ import annotations

import io

from rich.console import Console

from swarm.node.peer_view import missing_peer_hints, render_peers

SELF = {"node_id": "n1", "self": True, "state": "alive", "address": "10.0.0.1",
        "api_port": 17615, "model": "SmolLM2", "load": 0.0, "queue_depth": 0,
        "bench_score": 51.5, "last_seen_s_ago": 0.0, "reason": "this node"}
PEER = {"node_id": "n2", "self": False, "state": "alive", "address": "10.0.0.2",
        "api_port": 17615, "model": "SmolLM2", "load": 0.5, "queue_depth": 1,
        "bench_score": 40.0, "last_seen_s_ago": 0.31, "reason": "answering"}


def text(rows) -> str:
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(render_peers(rows))
    return out.getvalue()


def test_table_shows_state_address_load_and_age():
    out = text([SELF, PEER])
    assert "n1" in out and "self" in out and "10.0.0.1:17615" in out
    assert "n2" in out and "alive" in out and "50%" in out and "0.3s ago" in out


def test_the_coordinator_is_marked():
    out = text([{**SELF, "term": 3, "coordinator": False}, {**PEER, "term": 3, "coordinator": True}])
    assert "coord" in out
    lead = next(line for line in out.splitlines() if "n2" in line)
    assert "yes" in lead and "yes" not in next(line for line in out.splitlines() if "n1" in line)
    alone = text([SELF, {**PEER, "coordinator": True, "solo": True}])
    assert "alone" in next(line for line in alone.splitlines() if "n2" in line)


def test_hints_explain_foreign_unreachable_duplicate_and_no_mdns():
    foreign = {**PEER, "node_id": "n3", "state": "foreign",
               "reason": "protocol 2, this node speaks 1"}
    silent = {**PEER, "node_id": "n4", "state": "dead", "last_seen_s_ago": None,
              "reason": "refused (2 missed, quiet 1.00 s)"}
    hints = missing_peer_hints([SELF, foreign, silent], {
        "mdns": False, "mdns_reason": "No interfaces to listen on",
        "ignored": {"n1": "another node claims our id"},
        "unanswered": {"10.0.0.9:17615": "connection refused"}})
    joined = " ".join(hints)
    assert "mDNS discovery is not running: No interfaces to listen on" in joined
    assert "n3" in joined and "foreign" in joined and "protocol 2" in joined
    assert "n4" in joined and "never answered" in joined
    assert "node's id 'n1'" in joined
    assert "manual peer 10.0.0.9:17615 does not answer" in joined


def test_hints_when_alone():
    hints = missing_peer_hints([SELF], {"mdns": True})
    assert any("No peer seen yet" in h for h in hints)


def test_peers_command_prints_the_running_nodes_table(capsys):
    from network.federation.server import FederationRoutes
    from network.membership.table import Membership
    from network.trust.identity import NodeIdentity
    from swarm.engine.pool import InstancePool
    from swarm.engine.scripted import ScriptedBackend
    from swarm.node.commands import show_peers
    from swarm.node.config import load_config
    from tests.federation_fixtures import StaticMember
    from tests.server import ServerThread

    pool = InstancePool([ScriptedBackend()])
    identity = NodeIdentity(node_id="solo", boot_id="b1", name="solo")

    def make_app():
        from network.api.app import build_app

        app = build_app(pool, load_config(env={}).api)
        member = StaticMember(identity, Membership("solo", 1, ""), discovery={"mdns": True})
        FederationRoutes(member, pool).add_to(app)
        return app

    server = ServerThread(make_app).start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        config = load_config(env={}, cli={"api.port": port})
        assert show_peers(config) == 0
    finally:
        server.stop()
    assert show_peers(load_config(env={}, cli={"api.port": 1})) == 1


def test_pending_peers_are_shown_with_how_to_approve_them():
    pending = {**PEER, "node_id": "n5", "state": "pending",
               "reason": "waiting for approval: run `python main.py peers approve n5` on this "
                         "machine"}
    out = text([SELF, pending])
    assert "n5" in out and "pending" in out
    hints = " ".join(missing_peer_hints([SELF, pending], {"mdns": True}))
    assert "n5" in hints and "not approved" in hints and "python main.py peers approve n5" in hints


def test_peers_command_sends_the_api_key_and_explains_a_401(caplog):
    import logging

    from swarm.node import commands
    from swarm.node.config import load_config
    from tests.node_apps import federated_app, scripted_pool
    from tests.server import ServerThread

    pool = scripted_pool(1)
    server = ServerThread(lambda: federated_app(pool, load_config(
        env={}, cli={"api.keys": ["k1", "k2"]}).api)).start()
    try:
        port = int(server.url.rsplit(":", 1)[1])
        with caplog.at_level(logging.ERROR):
            assert commands.show_peers(load_config(env={}, cli={"api.port": port})) == 1
        assert "requires an API key and none was sent" in caplog.text
        assert "LOCAL_SWARM_API_KEYS" in caplog.text and "[api] keys" in caplog.text
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            wrong = load_config(env={}, cli={"api.port": port, "api.keys": ["nope"]})
            assert commands.show_peers(wrong) == 1
        assert "is not one it accepts" in caplog.text
        keyed = load_config(env={}, cli={"api.port": port, "api.keys": ["k1"]})
        assert commands.show_peers(keyed) == 0
    finally:
        server.stop()
