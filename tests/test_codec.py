"""Wire messages and codec: round trips, garbage in, one error type out, limits."""
from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.wire import codec
from network.wire.codec import JSON, MSGPACK, WireDecodeError
from network.wire.fields import WireMessage
from network.wire.messages import Heartbeat
from network.wire.votes import CancelRequest, VoteReply, VoteRequest
from swarm.engine.backend import ChatMessage, Completion, GenerationRequest, SamplingParams
from tests.wire_properties import (
    TYPES,
    check_bytes_decode_or_raise,
    check_round_trip,
    check_wire_decodes_or_raises,
    ids,
    json_values,
    unit,
)

CLASSES = (Heartbeat, VoteRequest, VoteReply, CancelRequest)

texts = st.text(max_size=40)
small = st.text(max_size=16)
heartbeats = st.builds(
    Heartbeat, node_id=ids, boot_id=ids, protocol=st.integers(0, 65535),
    api_port=st.integers(1, 65535), swarm=st.one_of(st.just(""), ids), model_id=texts,
    instances=st.integers(0, 4096), load=unit(0, 1), queue_depth=st.integers(0, 2**31 - 1),
    capabilities=st.lists(small, max_size=5).map(tuple), bench_score=unit(0, 1e12),
    ram_gb=unit(0, 1e6), vram_gb=unit(0, 1e6), term=st.integers(0, 2**63 - 1),
    coordinator=st.none() | ids, priority=st.none() | st.integers(-1000, 1000),
    solo=st.booleans(), nonce=st.none() | small)
turns = st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), texts),
                 min_size=1, max_size=4).map(tuple)
vote_requests = st.one_of(
    st.builds(VoteRequest, request_id=ids, messages=turns, prompt=st.none()),
    st.builds(VoteRequest, request_id=ids, prompt=texts),
).flatmap(lambda r: st.builds(
    VoteRequest, request_id=st.just(r.request_id), messages=st.just(r.messages),
    prompt=st.just(r.prompt), max_tokens=st.integers(1, 1 << 16), temperature=unit(0, 2),
    top_p=unit(1e-6, 1), seed=st.none() | st.integers(-(2**63), 2**64 - 1),
    stop=st.lists(small, max_size=4).map(tuple)))
vote_replies = st.builds(
    VoteReply, request_id=ids, text=texts, logprobs=st.lists(unit(-1e9, 0), max_size=8).map(tuple),
    finish_reason=st.sampled_from(["stop", "length", "cancelled"]),
    prompt_tokens=st.integers(0, 2**31 - 1), completion_tokens=st.integers(0, 1 << 16),
    latency_s=unit(0, 1e6), node_id=ids)
cancels = st.builds(CancelRequest, request_id=ids)
messages = st.one_of(heartbeats, vote_requests, vote_replies, cancels)


@given(msg=messages, content_type=st.sampled_from(TYPES))
def test_every_message_round_trips(msg: WireMessage, content_type: str) -> None:
    check_round_trip(msg, content_type)


@given(data=st.binary(max_size=256), cls=st.sampled_from(CLASSES),
       content_type=st.sampled_from(TYPES))
def test_arbitrary_bytes_decode_or_raise_the_one_error(data: bytes, cls: type,
                                                       content_type: str) -> None:
    check_bytes_decode_or_raise(data, cls, content_type)


@given(msg=messages, data=st.data(), value=json_values, content_type=st.sampled_from(TYPES))
def test_mutated_fields_decode_or_raise_the_one_error(msg: object, data: st.DataObject,
                                                      value: object, content_type: str) -> None:
    wire = {"v": 1, **msg.to_wire()}  # type: ignore[attr-defined]
    wire[data.draw(st.sampled_from(sorted(wire)) | st.text(max_size=12))] = value
    check_wire_decodes_or_raises(wire, type(msg), content_type)


@given(msg=messages, cut=st.integers(0, 10_000), flip=st.integers(0, 255))
def test_truncated_or_flipped_msgpack_decodes_or_raises(msg: WireMessage, cut: int,
                                                        flip: int) -> None:
    data = bytearray(codec.encode(msg))
    data[cut % len(data)] ^= flip
    for candidate in (bytes(data), bytes(data[: cut % len(data)])):
        with contextlib.suppress(WireDecodeError):
            codec.decode(candidate, MSGPACK, type(msg))


def _hb(**extra: object) -> dict[str, object]:
    return {"v": 1, "node_id": "n1", "boot_id": "b1", "protocol": 1, "api_port": 17615, **extra}


@pytest.mark.parametrize("content_type", TYPES)
def test_oversize_is_refused_both_ways(content_type: str) -> None:
    big = VoteRequest(request_id="r", prompt="x" * 400_000)
    data = codec.encode(big, content_type)
    with pytest.raises(WireDecodeError, match="limit"):
        codec.decode(data, content_type, VoteRequest, max_bytes=len(data) - 1)
    assert codec.decode(data, content_type, VoteRequest, max_bytes=len(data)) == big
    with pytest.raises(ValueError, match="over"):
        codec.encode(big, content_type, max_bytes=1000)
    with pytest.raises(WireDecodeError, match="limit"):
        codec.decode(b" " * (codec.MAX_BYTES + 1), content_type, VoteRequest)


@pytest.mark.parametrize("content_type", TYPES)
@pytest.mark.parametrize(("wire", "needle"), [
    ({k: v for k, v in _hb().items() if k != "boot_id"}, "boot_id: missing"),
    (_hb(api_port="17615"), "api_port: expected an integer"),
    (_hb(api_port=True), "api_port: expected an integer"),
    (_hb(api_port=0), "api_port: 0 is outside"),
    (_hb(load=1.5), "load"),
    (_hb(node_id="x" * 65), "node_id: expected an identifier"),
    (_hb(node_id="bad id"), "node_id"),
    (_hb(capabilities=["a"] * 65), "more than 64 items"),
    (_hb(model_id="m" * 257), "longer than 256"),
    (_hb(priority=1001), "priority: 1001 is outside"),
    (_hb(priority=-1001), "priority"),
    (_hb(priority="1"), "priority: expected an integer"),
    (_hb(priority=True), "priority: expected an integer"),
    (_hb(term=-1), "term"),
    (_hb(extra=[[[[[[[[[1]]]]]]]]]), "nested deeper"),
    ({**_hb(), "v": 2}, "wire version 2"),
    ({k: v for k, v in _hb().items() if k != "v"}, "wire version None"),
    ([1, 2], "top level"),
])
def test_bad_fields_raise_with_a_reason(content_type: str, wire: object, needle: str) -> None:
    data = msgpack.packb(wire) if content_type == MSGPACK else json.dumps(wire).encode()
    with pytest.raises(WireDecodeError, match=needle):
        codec.decode(data, content_type, Heartbeat)


def test_non_finite_numbers_are_refused() -> None:
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(WireDecodeError):
            codec.decode(msgpack.packb(_hb(load=value)), MSGPACK, Heartbeat)
    for text in ('{"v":1,"load":NaN}', '{"v":1,"ram_gb":1e999,"node_id":"a","boot_id":"b",'
                 '"protocol":1,"api_port":1}'):
        with pytest.raises(WireDecodeError):
            codec.decode(text.encode(), JSON, Heartbeat)


def test_unknown_fields_are_ignored_and_defaults_fill_gaps() -> None:
    data = msgpack.packb(_hb(future_field={"a": [1, 2]}, load=0.25))
    hb = codec.decode(data, MSGPACK, Heartbeat)
    assert hb == Heartbeat(node_id="n1", boot_id="b1", protocol=1, api_port=17615, load=0.25)


def test_heartbeat_priority_defaults_to_zero_and_none_means_never_coordinator() -> None:
    assert codec.decode(msgpack.packb(_hb()), MSGPACK, Heartbeat).priority == 0
    assert codec.decode(msgpack.packb(_hb(priority=None)), MSGPACK, Heartbeat).priority is None
    beat = Heartbeat(node_id="a", boot_id="b", protocol=1, api_port=1, priority=-7, term=4,
                     coordinator="a")
    assert beat.to_wire()["priority"] == -7
    assert codec.decode(codec.encode(beat, JSON), JSON, Heartbeat) == beat


def test_heartbeat_solo_defaults_to_false_and_must_be_a_boolean() -> None:
    assert codec.decode(msgpack.packb(_hb()), MSGPACK, Heartbeat).solo is False  # older peers
    assert codec.decode(msgpack.packb(_hb(solo=True)), MSGPACK, Heartbeat).solo is True
    with pytest.raises(WireDecodeError, match="Heartbeat.solo"):
        codec.decode(msgpack.packb(_hb(solo=1)), MSGPACK, Heartbeat)


def test_format_tricks_are_refused() -> None:
    cases = [
        (msgpack.packb({"v": 1, 1: 2}), MSGPACK),  # non-string key
        (b"\x82\xa1v\x01\xa1v\x01", MSGPACK),  # duplicate key
        (msgpack.packb(_hb()) + b"\x00", MSGPACK),  # trailing bytes
        (msgpack.packb({"v": 1, "x": msgpack.ExtType(1, b"abcd")}), MSGPACK),
        (b"\xd6\xff\x00\x00\x00\x00", MSGPACK),  # timestamp extension
        (b"\xdd\xff\xff\xff\xff", MSGPACK),  # array header claiming 4 billion items
        (b"\x91" * 5000, MSGPACK),
        (b"[" * 100_000, JSON),
        (b'{"v":1,"v":1}', JSON),
        (b"\xff\xfe", JSON),
        (b"9" * 5000, JSON),
        (msgpack.packb(_hb()), "text/plain"),
    ]
    for data, content_type in cases:
        with pytest.raises(WireDecodeError):
            codec.decode(data, content_type, Heartbeat)


def test_content_type_parameters_and_aliases() -> None:
    hb = Heartbeat(node_id="a", boot_id="b", protocol=1, api_port=1)
    assert codec.decode(codec.encode(hb, JSON), "Application/JSON; charset=utf-8", Heartbeat) == hb
    assert codec.decode(codec.encode(hb), "application/x-msgpack", Heartbeat) == hb


def test_vote_request_needs_exactly_one_of_messages_or_prompt() -> None:
    both = {"v": 1, "request_id": "r", "prompt": "p", "messages": [["user", "hi"]]}
    neither = {"v": 1, "request_id": "r"}
    for wire in (both, neither):
        with pytest.raises(WireDecodeError, match="exactly one"):
            codec.decode(msgpack.packb(wire), MSGPACK, VoteRequest)
    with pytest.raises(WireDecodeError, match="pair"):
        codec.decode(msgpack.packb({**neither, "messages": [["user"]]}), MSGPACK, VoteRequest)


def test_vote_messages_convert_to_and_from_backend_records() -> None:
    gen = GenerationRequest(messages=(ChatMessage("user", "hi"),),
                            params=SamplingParams(max_tokens=8, temperature=0.0, seed=3,
                                                  stop=("\n",)))
    vote = VoteRequest.from_generation("r1", gen)
    assert codec.decode(codec.encode(vote), MSGPACK, VoteRequest).to_generation() == gen
    done = Completion(text="hello", token_ids=(1, 2), logprobs=(-0.5, -0.25),
                      finish_reason="stop", prompt_tokens=4)
    reply = VoteReply.from_completion("r1", done, latency_s=0.1, node_id="n1")
    assert reply.completion_tokens == 2
    back = codec.decode(codec.encode(reply, JSON), JSON, VoteReply)
    assert back == reply
    local = back.to_completion()
    assert (local.text, local.logprobs, local.completion_tokens, local.finish_reason) == (
        "hello", (-0.5, -0.25), 2, "stop")
    with pytest.raises(WireDecodeError, match="finish_reason"):
        VoteReply.from_wire({**reply.to_wire(), "finish_reason": "exploded"})


def test_codec_is_the_only_msgpack_importer() -> None:
    root = Path(__file__).resolve().parent.parent
    ours = [root / "main.py"] + [p for d in ("swarm", "network", "consensus", "bench")
                                 for p in (root / d).rglob("*.py")]
    users = [p.relative_to(root).as_posix() for p in ours if "import msgpack" in p.read_text()]
    assert users == ["network/wire/codec.py"]
