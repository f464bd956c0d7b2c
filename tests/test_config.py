"""Configuration precedence and the errors that name the bad key."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network.trust.identity import load_identity
from network.wire import codec
from network.wire.fields import is_identifier
from network.wire.messages import Heartbeat
from swarm.node import cli
from swarm.node.config import ConfigError, env_key, known_keys, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_defaults_serve_the_embedded_model_on_loopback():
    config = load_config(env={})
    assert (config.api.host, config.api.port) == ("127.0.0.1", 17615)
    assert config.model.path == "" and config.model.instances == 1
    assert config.consensus.strategy == "route"


def test_precedence_cli_over_env_over_file(tmp_path):
    path = write(tmp_path, "[api]\nport = 1000\nhost = '127.0.0.2'\n[model]\ninstances = 2\n")
    env = {"LOCAL_SWARM_API_PORT": "2000", "LOCAL_SWARM_MODEL_INSTANCES": "3"}
    config = load_config(path, env=env, cli={"api.port": 3000, "model.instances": None})
    assert config.api.port == 3000
    assert config.model.instances == 3
    assert config.api.host == "127.0.0.2"
    assert {"api.port", "model.instances", "api.host"} <= config.explicit


@pytest.mark.parametrize(("text", "needle"), [
    ("[api]\nprot = 1\n", "api.prot"),
    ("colour = 'red'\n", "colour"),
    ("[model]\ninstances = 0\n", "model.instances"),
    ("[model]\ninstances = 'two'\n", "model.instances"),
    ("[model]\nbackend = 'vllm'\n", "model.backend"),
    ("[api]\nport = 70000\n", "api.port"),
    ("[consensus]\nstrategy = 'majority'\n", "consensus.strategy"),
    ("api = 3\n", "[api]"),
    ("[api\n", "not valid TOML"),
])
def test_bad_file_names_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError, match=__import__("re").escape(needle)):
        load_config(write(tmp_path, text), env={})


def test_unknown_or_bad_env_names_the_variable():
    with pytest.raises(ConfigError, match="LOCAL_SWARM_API_PROT"):
        load_config(env={"LOCAL_SWARM_API_PROT": "1"})
    with pytest.raises(ConfigError, match="api.port"):
        load_config(env={"LOCAL_SWARM_API_PORT": "eighty"})


def test_env_lists_and_bools():
    config = load_config(env={"LOCAL_SWARM_API_KEYS": "a, b", "LOCAL_SWARM_AUTO": "yes"})
    assert config.api.keys == ("a", "b") and config.auto is True


def test_example_config_documents_every_key_with_its_default():
    with open(ROOT / "config.example.toml", "rb") as fh:
        example = tomllib.load(fh)
    flat = {}
    for name, value in example.items():
        if isinstance(value, dict):
            flat.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    keys = known_keys()
    assert set(flat) == set(keys)
    for key, default in keys.items():
        assert flat[key] == (list(default) if isinstance(default, tuple) else default), key
    load_config(ROOT / "config.example.toml", env={})


def test_env_key_names():
    assert env_key("api.port") == "LOCAL_SWARM_API_PORT"
    assert env_key("auto") == "LOCAL_SWARM_AUTO"


def test_approval_and_coordinator_keys_defaults_env_and_checks():
    fed = load_config(env={}).federation
    assert (fed.approve_peers, fed.coordinator_priority, fed.coordinator) == (False, 0, True)
    fed = load_config(env={"LOCAL_SWARM_FEDERATION_APPROVE_PEERS": "yes",
                           "LOCAL_SWARM_FEDERATION_COORDINATOR_PRIORITY": "-1000",
                           "LOCAL_SWARM_FEDERATION_COORDINATOR": "false"}).federation
    assert (fed.approve_peers, fed.coordinator_priority, fed.coordinator) == (True, -1000, False)
    assert load_config(env={}, cli={"federation.coordinator_priority": 1000}).federation \
        .coordinator_priority == 1000
    for bad in ("1001", "-1001", "high", "1.5"):
        with pytest.raises(ConfigError, match="federation.coordinator_priority"):
            load_config(env={"LOCAL_SWARM_FEDERATION_COORDINATOR_PRIORITY": bad})
    with pytest.raises(ConfigError, match="from -1000 to 1000"):
        load_config(env={}, cli={"federation.coordinator_priority": 5000})
    with pytest.raises(ConfigError, match="federation.approve_peers"):
        load_config(env={"LOCAL_SWARM_FEDERATION_APPROVE_PEERS": "maybe"})


def test_flags_for_approval_coordinator_and_peer_actions():
    from swarm.node import cli
    got = cli.parse_invocation(["--approve-peers", "--coordinator-priority", "7",
                                "--no-coordinator"])
    fed = got.config.federation
    assert (fed.approve_peers, fed.coordinator_priority, fed.coordinator) == (True, 7, False)
    assert {"federation.approve_peers", "federation.coordinator_priority",
            "federation.coordinator"} <= got.config.explicit
    plain = cli.parse_invocation([]).config
    assert "federation.coordinator" not in plain.explicit and plain.federation.coordinator
    assert (cli.parse_invocation(["peers"]).peer_action, cli.parse_invocation(["peers"]).peer_id) \
        == ("", "")
    got = cli.parse_invocation(["peers", "approve", "laptop-1", "--port", "9000"])
    assert (got.command, got.peer_action, got.peer_id, got.config.api.port) == (
        "peers", "approve", "laptop-1", 9000)
    assert cli.parse_invocation(["--port", "9", "peers", "revoke", "x"]).peer_action == "revoke"
    for argv in (["peers", "approve"], ["peers", "bless", "x"], ["peers", "approve", "a", "b"],
                 ["benchmark", "x"], ["--coordinator-priority", "2000"]):
        with pytest.raises(SystemExit):
            cli.parse_invocation(argv)


# --- the node id: one definition (network/wire/fields.py) for the config and the wire -----------

@pytest.mark.parametrize("node_id", ["-lab", ".hidden", "_x", "a" * 65, "lab node", "läb", "a/b"])
def test_a_node_id_peers_would_refuse_stops_the_node_at_start(node_id):
    with pytest.raises(ConfigError, match="federation.node_id"):
        load_config(env={}, cli={"federation.node_id": node_id})
    with pytest.raises(ConfigError, match="federation.node_id"):
        load_config(env={"LOCAL_SWARM_FEDERATION_NODE_ID": node_id})


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec="ascii"), max_size=70))
def test_the_config_accepts_exactly_the_ids_the_wire_accepts(node_id):
    try:
        load_config(env={}, cli={"federation.node_id": node_id})
        accepted = True
    except ConfigError:
        accepted = False
    on_the_wire = node_id == "" or is_identifier(node_id)
    assert accepted == on_the_wire
    if accepted and node_id:  # then every peer takes its heartbeats
        beat = Heartbeat(node_id=node_id, boot_id="b1", protocol=1, api_port=1)
        assert codec.decode(codec.encode(beat), codec.MSGPACK, Heartbeat) == beat


def test_the_command_line_refuses_it_with_the_key_named(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.parse_invocation(["--node-id=-lab"])
    assert stopped.value.code == 2
    assert "configuration error" in capsys.readouterr().err


def test_a_stored_node_id_peers_would_refuse_is_a_config_error(tmp_path):
    (tmp_path / "node-id").write_text("-lab\n")
    with pytest.raises(ConfigError, match="node-id"):
        load_identity(tmp_path, "", "ab12")
    assert load_identity(tmp_path, "lab-1", "ab12").node_id == "lab-1"  # a configured id wins
    with pytest.raises(ConfigError, match="federation.node_id"):
        load_identity(tmp_path, "-lab", "ab12")
