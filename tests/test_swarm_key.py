"""The swarm key: generated once with mode 0600, refused when others can read it, precedence of
flag, environment, config and file, and the `swarm-key` command (print, rotate, set, forget)."""
from __future__ import annotations

import hashlib
import io
import os
import stat
import threading

import pytest

import main
from network.trust.swarm_key import (
    KEY_BYTES,
    KeyRing,
    SwarmKey,
    SwarmKeyError,
    fingerprint,
    key_path,
    load_keys,
    read_key_file,
    write_key_file,
)
from swarm.node import cli
from swarm.node.config import load_config
from swarm.node.key_command import run_command
from tests.swarm_keys import KEY, OTHER_KEY

posix_only = pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_key_round_trips_as_text_and_never_shows_in_its_repr():
    text = KEY.text
    assert text.startswith("lsk_") and len(text) == 47
    assert SwarmKey.parse(f"  {text}\n") == KEY
    assert text not in repr(KEY) and KEY.fingerprint in repr(KEY)
    assert text not in repr(KeyRing(KEY, (OTHER_KEY,)))
    assert SwarmKey.generate() != SwarmKey.generate()


@pytest.mark.parametrize("text", ["", "lsk_", "hunter2", "lsk_" + "A" * 42, "lsk_" + "A" * 44,
                                  "lsk_" + "*" * 43, KEY.text.removeprefix("lsk_"),
                                  "LSK_" + KEY.text[4:]])
def test_a_bad_key_is_refused_without_echoing_it(text):
    with pytest.raises(SwarmKeyError) as caught:
        SwarmKey.parse(text, "the key given")
    message = str(caught.value)
    assert "the key given" in message and "swarm-key" in message
    assert len(text) < 8 or text not in message


def test_the_fingerprint_is_short_domain_separated_and_not_the_key():
    fp = fingerprint(KEY.secret)
    assert fp == KEY.fingerprint and len(fp) == 16 and int(fp, 16) >= 0
    assert fp != hashlib.sha256(KEY.secret).hexdigest()[:16]  # domain-separated
    assert fp not in KEY.secret.hex() and fp != OTHER_KEY.fingerprint
    with pytest.raises(SwarmKeyError):
        SwarmKey(b"short")
    assert len(KEY.secret) == KEY_BYTES


def test_a_ring_drops_duplicates_and_finds_keys_by_fingerprint():
    ring = KeyRing(KEY, (OTHER_KEY, KEY, OTHER_KEY))
    assert ring.previous == (OTHER_KEY,) and ring.fingerprint == KEY.fingerprint
    assert ring.accepted == {KEY.fingerprint, OTHER_KEY.fingerprint}
    assert ring.get(OTHER_KEY.fingerprint) is OTHER_KEY and ring.get("0" * 16) is None
    assert ring.get(None) is None


@posix_only
def test_the_first_run_generates_a_key_with_mode_0600_and_reuses_it(tmp_path):
    first = load_keys("", (), tmp_path / "cache")
    path = key_path(tmp_path / "cache")
    assert first.generated and first.source == "file" and first.path == path
    assert mode(path) == 0o600
    assert first.ring.current.text in path.read_text()
    again = load_keys("", (), tmp_path / "cache")
    assert not again.generated and again.ring == first.ring
    # No temporary file left; beside the key, the marker of a key that never left this node.
    assert sorted(p.name for p in path.parent.iterdir()) == ["swarm.key", "swarm.key.solo"]
    assert mode(path.parent / "swarm.key.solo") == 0o600 and again.solo()


@posix_only
def test_creation_is_atomic_when_several_nodes_start_at_once(tmp_path):
    rings: list[KeyRing] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        rings.append(load_keys("", (), tmp_path).ring)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(rings) == 4 and len({r.fingerprint for r in rings}) == 1
    assert not write_key_file(key_path(tmp_path), [OTHER_KEY], replace=False)  # never clobbered
    assert read_key_file(key_path(tmp_path))[0] == rings[0].current


@posix_only
@pytest.mark.parametrize("bits", [0o644, 0o604, 0o640, 0o620, 0o666])
def test_a_key_file_others_can_access_is_refused(tmp_path, bits):
    load_keys("", (), tmp_path)
    path = key_path(tmp_path)
    os.chmod(path, bits)
    with pytest.raises(SwarmKeyError) as caught:
        load_keys("", (), tmp_path)
    message = str(caught.value)
    assert f"chmod 600 {path}" in message and f"{bits:04o}" in message
    assert "lsk_" not in message


@posix_only
def test_a_key_file_without_a_key_is_refused(tmp_path):
    path = key_path(tmp_path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"# nothing here\n\n")
    os.close(fd)
    with pytest.raises(SwarmKeyError, match="holds no key"):
        load_keys("", (), tmp_path)
    os.chmod(path, 0o600)
    path.write_text("lsk_not-a-key\n")
    with pytest.raises(SwarmKeyError, match="line 1 of"):
        load_keys("", (), tmp_path)


def test_without_create_a_missing_key_is_an_error(tmp_path):
    with pytest.raises(SwarmKeyError, match="python main.py swarm-key"):
        load_keys("", (), tmp_path, create=False)
    assert not key_path(tmp_path).exists()


@posix_only
def test_precedence_flag_over_env_over_config_over_file(tmp_path):
    stored = load_keys("", (), tmp_path).ring.current
    flag, env, conf = SwarmKey.generate(), SwarmKey.generate(), SwarmKey.generate()
    config_file = tmp_path / "node.toml"
    config_file.write_text(f'[federation]\nswarm_key = "{conf.text}"\n'
                           f'previous_swarm_keys = ["{OTHER_KEY.text}"]\n')
    env_vars = {"LOCAL_SWARM_FEDERATION_SWARM_KEY": env.text}

    def current(path=None, environ=None, flag_key=None) -> SwarmKey:
        config = load_config(path, env=environ or {},
                             cli={"federation.swarm_key": flag_key})
        fed = config.federation
        assert not fed.swarm_key or fed.swarm_key not in repr(config)  # secrets stay out of logs
        return load_keys(fed.swarm_key, fed.previous_swarm_keys, tmp_path).ring.current

    assert current(config_file, env_vars, flag.text) == flag
    assert current(config_file, env_vars) == env
    assert current(config_file) == conf
    assert current() == stored
    with_previous = load_keys(conf.text, (OTHER_KEY.text,), tmp_path)
    assert with_previous.source == "configured" and with_previous.ring.previous == (OTHER_KEY,)
    with pytest.raises(SwarmKeyError, match=r"previous_swarm_keys\[0\]"):
        load_keys("", ("nope",), tmp_path)


def test_the_command_line_has_the_flag_and_the_command(tmp_path):
    got = cli.parse_invocation(["swarm-key", "--rotate", "--cache-dir", str(tmp_path)])
    assert (got.command, got.key_action) == ("swarm-key", "rotate")
    got = cli.parse_invocation(["swarm-key", "--set", "-"])
    assert (got.key_action, got.new_key) == ("set", "-")
    got = cli.parse_invocation(["--swarm-key", KEY.text])
    assert got.config.federation.swarm_key == KEY.text and got.command == "serve"
    for argv in (["--rotate"], ["peers", "--forget-previous"],
                 ["swarm-key", "--rotate", "--forget-previous"]):
        with pytest.raises(SystemExit) as caught:
            cli.parse_invocation(argv)
        assert caught.value.code == 2
    assert "swarm-key" in cli.COMMANDS


def command(tmp_path, action: str = "", new_key: str = "", stdin: str = "",
            swarm_key: str = "", previous: tuple[str, ...] = ()) -> str:
    out = io.StringIO()
    assert run_command(swarm_key, previous, tmp_path, action, new_key, out=out,
                       stdin=io.StringIO(stdin)) == 0
    return out.getvalue()


@posix_only
def test_swarm_key_prints_the_key_and_its_fingerprint(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("swarm.node.terminal.setup_logging", lambda level: None)
    assert main.run(["swarm-key", "--cache-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    ring = load_keys("", (), tmp_path).ring
    assert f"swarm key    {ring.current.text}\n" in printed
    assert f"fingerprint  {ring.fingerprint}" in printed and "just generated" in printed
    assert mode(key_path(tmp_path)) == 0o600
    assert "just generated" not in command(tmp_path)


@posix_only
def test_rotation_keeps_the_old_key_accepted_until_forgotten(tmp_path):
    old = load_keys("", (), tmp_path).ring.current
    printed = command(tmp_path, "rotate")
    ring = load_keys("", (), tmp_path).ring
    assert ring.current != old and ring.previous == (old,)
    assert ring.current.text in printed and old.fingerprint in printed
    assert "--set" in printed and "--forget-previous" in printed
    assert mode(key_path(tmp_path)) == 0o600
    command(tmp_path, "rotate")
    assert len(load_keys("", (), tmp_path).ring.previous) == 2
    printed = command(tmp_path, "forget-previous")
    assert old.fingerprint in printed
    assert load_keys("", (), tmp_path).ring.previous == ()


@posix_only
def test_set_stores_a_copied_key_from_stdin(tmp_path):
    generated = load_keys("", (), tmp_path).ring.current
    printed = command(tmp_path, "set", "-", stdin=KEY.text + "\n")
    ring = load_keys("", (), tmp_path).ring
    assert ring.current == KEY and ring.previous == (generated,)
    assert KEY.text not in printed and KEY.fingerprint in printed
    assert mode(key_path(tmp_path)) == 0o600
    fresh = tmp_path / "fresh"
    command(fresh, "set", OTHER_KEY.text)
    assert load_keys("", (), fresh).ring == KeyRing(OTHER_KEY)
    with pytest.raises(SwarmKeyError):
        command(fresh, "set", "-", stdin="not a key\n")


def test_rotating_a_configured_key_stores_nothing_and_says_what_to_set(tmp_path):
    printed = command(tmp_path, "rotate", swarm_key=KEY.text)
    assert not key_path(tmp_path).exists()
    assert "previous_swarm_keys" in printed and KEY.text in printed  # the old one, to keep


@posix_only
def test_a_readable_key_file_stops_the_command_with_a_clear_error(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("swarm.node.terminal.setup_logging", lambda level: None)
    load_keys("", (), tmp_path)
    os.chmod(key_path(tmp_path), 0o644)
    assert main.run(["swarm-key", "--cache-dir", str(tmp_path)]) == 1
    assert "chmod 600" in caplog.text


@posix_only
def test_without_hard_links_the_key_is_still_created_exclusively(tmp_path, monkeypatch):
    def no_links(*_args):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    first = load_keys("", (), tmp_path)
    assert first.generated and mode(key_path(tmp_path)) == 0o600
    assert not write_key_file(key_path(tmp_path), [OTHER_KEY], replace=False)
    assert load_keys("", (), tmp_path).ring == first.ring
