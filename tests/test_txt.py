"""TXT records: round trips, entry sizes, garbage in, one error type out, foreign peers."""
from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.wire import txt
from network.wire.fields import ID_PATTERN
from network.wire.messages import Heartbeat
from network.wire.txt import PeerAdvert, TxtError

ids = st.from_regex(ID_PATTERN, fullmatch=True)
adverts = st.builds(
    PeerAdvert, node_id=ids, boot_id=ids, protocol=st.integers(0, 65535),
    api_port=st.integers(1, 65535), fingerprint=st.just("") | ids, model_id=st.text(max_size=300),
    instances=st.integers(0, 4096), hardware=st.text(max_size=300),
    score=st.floats(0, 1e300, allow_nan=False), term=st.integers(0, 2**63 - 1),
    priority=st.none() | st.integers(-1000, 1000))
BASE = PeerAdvert(node_id="n1", boot_id="b1", protocol=1, api_port=17615, fingerprint="ab12",
                  model_id="qwen2.5-0.5b", instances=2, hardware="cuda 24G / 64G", score=41.5,
                  term=3, priority=5)


def _fits(value: str) -> bool:
    return len(value.encode()) <= txt.MAX_FREE_TEXT_BYTES


@given(advert=adverts)
def test_round_trip_and_every_entry_under_255_bytes(advert: PeerAdvert) -> None:
    props = txt.encode(advert)
    assert all(len(k) + 1 + len(v) < 255 for k, v in props.items())
    decoded = txt.decode(props)
    assert txt.encode(decoded) == props  # truncation is deterministic and idempotent
    if _fits(advert.model_id) and _fits(advert.hardware):
        assert decoded == advert
    else:
        assert advert.model_id.startswith(decoded.model_id)
        assert advert.hardware.startswith(decoded.hardware)


@given(advert=adverts)
def test_decodes_zeroconfs_decoded_str_properties_too(advert: PeerAdvert) -> None:
    props = {k.decode(): v.decode() for k, v in txt.encode(advert).items()}
    assert txt.decode(props) == txt.decode(txt.encode(advert))


@given(props=st.dictionaries(st.binary(max_size=8) | st.sampled_from([b"id", b"boot", b"v",
                                                                     b"port", b"score", b"pri",
                                                                     b"term"]),
                             st.none() | st.binary(max_size=300), max_size=12))
def test_garbage_decodes_or_raises_txt_error(props: dict[bytes, bytes | None]) -> None:
    try:
        advert = txt.decode(props)
    except TxtError:
        return
    assert isinstance(advert, PeerAdvert)


@given(key=st.sampled_from(sorted(txt.encode(BASE))), value=st.none() | st.binary(max_size=40))
def test_a_mutated_entry_decodes_or_raises_txt_error(key: bytes, value: bytes | None) -> None:
    with contextlib.suppress(TxtError):
        txt.decode({**txt.encode(BASE), key: value})


@pytest.mark.parametrize(("key", "value", "needle"), [
    (b"id", None, "no value"),
    (b"port", b"0", "port"),
    (b"port", b"70000", "port"),
    (b"port", b" 80", "port"),
    (b"v", b"1_0", "v"),
    (b"score", b"nan", "score"),
    (b"score", b"inf", "score"),
    (b"score", b"-1", "score"),
    (b"score", b"1e999", "score"),
    (b"id", b"has space", "id"),
    (b"boot", b"\xff\xfe", "UTF-8"),
    (b"model", b"m" * 250, "over 254"),
    (b"fp", b"not/hex", "fp"),
    (b"pri", b"1001", "pri"),
    (b"pri", b"-1001", "pri"),
    (b"pri", b"-0", "pri"),
    (b"pri", b"+1", "pri"),
    (b"pri", b"007", "pri"),
    (b"pri", b"", "pri"),
    (b"pri", b"--", "pri"),
    (b"pri", b"none", "pri"),
    (b"pri", b"1.5", "pri"),
    (b"pri", None, "no value"),
    (b"term", b"-1", "term"),
])
def test_bad_values_raise_txt_error(key: bytes, value: bytes | None, needle: str) -> None:
    with pytest.raises(TxtError, match=needle):
        txt.decode({**txt.encode(BASE), key: value})


@given(text=st.text(max_size=6) | st.from_regex(r"-?[0-9]{1,5}", fullmatch=True))
def test_priority_entries_decode_canonically_or_raise(text: str) -> None:
    try:
        advert = txt.decode({**txt.encode(BASE), b"pri": text.encode()})
    except TxtError:
        return
    assert txt.encode(advert)[b"pri"] == text.encode()  # only canonical forms are accepted
    assert advert.priority is None or -1000 <= advert.priority <= 1000


@pytest.mark.parametrize(("priority", "entry"), [(None, b"-"), (0, b"0"), (-1000, b"-1000"),
                                                 (1000, b"1000"), (-3, b"-3")])
def test_priority_is_advertised_with_a_dash_for_none(priority: int | None, entry: bytes) -> None:
    advert = PeerAdvert(**{**BASE.__dict__, "priority": priority})
    assert txt.encode(advert)[b"pri"] == entry
    assert txt.decode(txt.encode(advert)).priority == priority


def test_missing_keys_and_non_mappings_raise() -> None:
    props = txt.encode(BASE)
    del props[b"boot"]
    with pytest.raises(TxtError, match="lacks boot"):
        txt.decode(props)
    with pytest.raises(TxtError):
        txt.decode([(b"id", b"x")])  # type: ignore[arg-type]


def test_unknown_keys_are_ignored_and_optional_keys_default() -> None:
    props = {b"id": b"n1", b"boot": b"b1", b"v": b"1", b"port": b"17615", b"future": b"x",
             b"\xff": None}
    assert txt.decode(props) == PeerAdvert(node_id="n1", boot_id="b1", protocol=1, api_port=17615)


def test_encode_truncates_free_text_on_a_character_boundary() -> None:
    advert = PeerAdvert(node_id="n1", boot_id="b1", protocol=1, api_port=1, model_id="é" * 150)
    model = txt.decode(txt.encode(advert)).model_id
    assert model == "é" * 100
    assert len(txt.encode(advert)[b"model"]) == 200


@pytest.mark.parametrize("bad", [{"node_id": "x" * 65}, {"boot_id": ""}, {"api_port": 0},
                                 {"score": float("nan")}, {"fingerprint": "a b"},
                                 {"priority": 1001}, {"priority": True}, {"priority": 1.0}])
def test_encode_refuses_what_it_cannot_advertise(bad: dict[str, object]) -> None:
    with pytest.raises(TxtError):
        txt.encode(PeerAdvert(**{**BASE.__dict__, **bad}))


def test_compatible_classifies_foreign_peers_with_a_reason() -> None:
    assert txt.compatible(BASE, 1, "ab12") == (True, "compatible")
    ok, why = txt.compatible(BASE, 2, "ab12")
    assert not ok and "protocol 1" in why
    ok, why = txt.compatible(BASE, 1, "cd34")
    assert not ok and "another swarm" in why
    ok, why = txt.compatible(BASE, 1, "")
    assert not ok and "keyed swarm" in why
    ok, why = txt.compatible(PeerAdvert(**{**BASE.__dict__, "fingerprint": ""}), 1, "ab12")
    assert not ok and "without a swarm key" in why


def test_static_peer_advert_from_heartbeat() -> None:
    hb = Heartbeat(node_id="n1", boot_id="b1", protocol=1, api_port=17615, swarm="ab12",
                   model_id="qwen2.5-0.5b", instances=2, bench_score=41.5, term=3, priority=5)
    advert = PeerAdvert.from_heartbeat(hb, hardware="cuda 24G / 64G")
    assert advert == BASE
