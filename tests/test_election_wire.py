"""Election messages and the swarm plan on the wire: round trips, garbage in, one error out."""
from __future__ import annotations

import json
import math

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.coordination.election import Ack, Announce, Candidate, Claim
from network.wire import codec
from network.wire.codec import MSGPACK, WireDecodeError
from network.wire.election import (
    MAX_PLAN_MEMBERS,
    MAX_REPLY_MESSAGES,
    ElectionEnvelope,
    ElectionReply,
    PlanMember,
    SwarmPlan,
    decode_message,
    encode_message,
)
from network.wire.fields import MAX_TERM, WireMessage
from tests.wire_properties import (
    TYPES,
    check_bytes_decode_or_raise,
    check_round_trip,
    check_wire_decodes_or_raises,
    ids,
    json_values,
    unit,
)

terms = st.integers(0, MAX_TERM)
candidates = st.builds(Candidate, node_id=ids, priority=st.none() | st.integers(-1000, 1000),
                       score=unit(0, 1e12))
messages = st.one_of(
    st.builds(Claim, term=terms, candidate=candidates),
    st.builds(Ack, term=terms, voter=ids, candidate=ids, granted=st.booleans(), seen_term=terms),
    st.builds(Announce, term=terms, coordinator=candidates))
envelopes = st.builds(ElectionEnvelope, message=messages)
replies = st.builds(ElectionReply, messages=st.lists(messages, max_size=MAX_REPLY_MESSAGES)
                    .map(tuple))
members = st.builds(PlanMember, node_id=ids, score=unit(0, 1e12), load=unit(0, 1),
                    queue_depth=st.integers(0, 2**31 - 1), instances=st.integers(0, 4096),
                    weight=unit(0, 1e12))


@st.composite
def plans(draw: st.DrawFn) -> SwarmPlan:
    crew = draw(st.lists(members, max_size=12, unique_by=lambda m: m.node_id))
    chosen = draw(st.permutations([m.node_id for m in crew]))
    return SwarmPlan(term=draw(terms), coordinator=draw(ids), issued_at=draw(unit(0, 1e12)),
                     members=tuple(crew),
                     consensus=tuple(chosen[:draw(st.integers(0, len(chosen)))]))


wire_messages = st.one_of(envelopes, replies, plans())
CLASSES = (ElectionEnvelope, ElectionReply, SwarmPlan)


@given(msg=wire_messages, content_type=st.sampled_from(TYPES))
def test_every_message_round_trips(msg: WireMessage, content_type: str) -> None:
    check_round_trip(msg, content_type)


@given(msg=wire_messages)
def test_to_wire_is_plain_json(msg: object) -> None:
    wire = msg.to_wire()  # type: ignore[attr-defined]
    assert json.loads(json.dumps(wire, allow_nan=False)) == wire  # no tuples, no odd types


@given(data=st.binary(max_size=256), cls=st.sampled_from(CLASSES),
       content_type=st.sampled_from(TYPES))
def test_arbitrary_bytes_decode_or_raise_the_one_error(data: bytes, cls: type,
                                                       content_type: str) -> None:
    check_bytes_decode_or_raise(data, cls, content_type)


@given(msg=wire_messages, data=st.data(), value=json_values, content_type=st.sampled_from(TYPES))
def test_mutated_fields_decode_or_raise_the_one_error(msg: object, data: st.DataObject,
                                                      value: object, content_type: str) -> None:
    wire = {"v": 1, **msg.to_wire()}  # type: ignore[attr-defined]
    target: object = wire  # a map anywhere in the message gets one field replaced
    while isinstance(target, dict | list) and target and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(target) if isinstance(target, dict)
                                        else range(len(target))))
        target = target[key]
    if isinstance(target, dict):
        target[data.draw(st.sampled_from(sorted(target)) | st.text(max_size=8))] = value
    check_wire_decodes_or_raises(wire, type(msg), content_type)


def test_wire_shapes_are_the_documented_ones() -> None:
    me = Candidate("n1", None, 2.5)
    assert encode_message(Claim(3, me)) == {
        "kind": "claim", "term": 3, "candidate": {"node_id": "n1", "priority": None, "score": 2.5}}
    assert encode_message(Ack(3, "n2", "n1", True, 2)) == {
        "kind": "ack", "term": 3, "voter": "n2", "candidate": "n1", "granted": True,
        "seen_term": 2}
    assert encode_message(Announce(4, Candidate("n1", 7, 1.0))) == {
        "kind": "announce", "term": 4,
        "coordinator": {"node_id": "n1", "priority": 7, "score": 1.0}}
    reply = ElectionReply((Ack(3, "n2", "n1", False, 9),))
    assert reply.to_wire() == {"messages": [encode_message(reply.messages[0])]}
    plan = SwarmPlan(term=2, coordinator="n1", issued_at=5.0,
                     members=(PlanMember("n1", 1.0, 0.5, 1, 2, 1.0),), consensus=("n1",))
    assert plan.to_wire() == {"term": 2, "coordinator": "n1", "issued_at": 5.0, "members": [
        {"node_id": "n1", "score": 1.0, "load": 0.5, "queue_depth": 1, "instances": 2,
         "weight": 1.0}], "consensus": ["n1"]}


CLAIM = {"kind": "claim", "term": 1, "candidate": {"node_id": "n1", "priority": 0, "score": 1.0}}
ACK = {"kind": "ack", "term": 1, "voter": "n2", "candidate": "n1", "granted": True,
       "seen_term": 0}
ANNOUNCE = {"kind": "announce", "term": 1, "coordinator": CLAIM["candidate"]}


def _with(base: dict, **changes: object) -> dict:
    return {**base, **changes}


def _cand(**changes: object) -> dict:
    return _with(CLAIM, candidate=_with(CLAIM["candidate"], **changes))  # type: ignore[arg-type]


@pytest.mark.parametrize("content_type", TYPES)
@pytest.mark.parametrize(("wire", "needle"), [
    (_with(CLAIM, kind="vote"), "kind: expected one of"),
    (_with(CLAIM, kind=None), "kind"),
    ({k: v for k, v in CLAIM.items() if k != "kind"}, "kind: missing"),
    (_with(CLAIM, term=-1), "term: -1 is outside"),
    (_with(CLAIM, term=MAX_TERM + 1), "term"),
    (_with(CLAIM, term="1"), "term: expected an integer"),
    (_with(CLAIM, term=True), "term: expected an integer"),
    (_with(CLAIM, term=1.0), "term: expected an integer"),
    ({k: v for k, v in CLAIM.items() if k != "candidate"}, "candidate: missing"),
    (_with(CLAIM, candidate="n1"), "expected a map"),
    (_cand(node_id="bad id"), "node_id: expected an identifier"),
    (_cand(node_id="x" * 65), "node_id"),
    (_cand(priority=1001), "priority: 1001 is outside"),
    (_cand(priority=-1001), "priority"),
    (_cand(priority=True), "priority: expected an integer"),
    (_cand(priority=1.5), "priority"),
    ({**CLAIM, "candidate": {"node_id": "n1", "score": 1.0}}, "priority: missing"),
    (_cand(score=-0.5), "score"),
    (_cand(score=1e13), "score"),
    (_cand(score="1"), "score: expected a number"),
    (_with(ACK, granted=1), "granted: expected true or false"),
    (_with(ACK, granted="yes"), "granted"),
    (_with(ACK, voter=""), "voter"),
    (_with(ACK, candidate={"node_id": "n1"}), "candidate: expected an identifier"),
    (_with(ACK, seen_term=-3), "seen_term"),
    ({k: v for k, v in ACK.items() if k != "granted"}, "granted: missing"),
    (_with(ANNOUNCE, coordinator=None), "expected a map"),
    ([CLAIM], "top level"),
])
def test_bad_election_messages_raise_with_a_reason(content_type: str, wire: object,
                                                   needle: str) -> None:
    body = {"v": 1, **wire} if isinstance(wire, dict) else wire
    data = msgpack.packb(body) if content_type == MSGPACK else json.dumps(body).encode()
    with pytest.raises(WireDecodeError, match=needle):
        codec.decode(data, content_type, ElectionEnvelope)


def test_non_finite_scores_are_refused() -> None:
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(WireDecodeError, match="score"):
            codec.decode(msgpack.packb({"v": 1, **_cand(score=value)}), MSGPACK, ElectionEnvelope)


def test_unknown_keys_are_ignored_and_seen_term_defaults() -> None:
    wire = {**{k: v for k, v in ACK.items() if k != "seen_term"}, "future": [1, {"x": 2}]}
    assert decode_message(wire) == Ack(1, "n2", "n1", True, 0)
    claim = decode_message({**CLAIM, "candidate": {**CLAIM["candidate"], "extra": 1}})  # type: ignore[dict-item]
    assert claim == Claim(1, Candidate("n1", 0, 1.0))


def test_reply_limits() -> None:
    ack = encode_message(Ack(1, "n2", "n1", True))
    full = {"v": 1, "messages": [ack] * MAX_REPLY_MESSAGES}
    assert len(codec.decode(msgpack.packb(full), MSGPACK, ElectionReply).messages) == 8
    with pytest.raises(WireDecodeError, match="more than 8 items"):
        codec.decode(msgpack.packb({"v": 1, "messages": [ack] * 9}), MSGPACK, ElectionReply)
    with pytest.raises(WireDecodeError, match=r"messages\[1\].kind"):
        codec.decode(msgpack.packb({"v": 1, "messages": [ack, {"kind": "x", "term": 1}]}),
                     MSGPACK, ElectionReply)
    with pytest.raises(WireDecodeError, match="messages: missing"):
        codec.decode(msgpack.packb({"v": 1}), MSGPACK, ElectionReply)
    with pytest.raises(ValueError, match="more than 8"):
        ElectionReply((Ack(1, "n2", "n1", True),) * 9)
    with pytest.raises(TypeError, match="not an election message"):
        encode_message("claim")  # type: ignore[arg-type]


def _member(node_id: str, **changes: object) -> dict:
    return {"node_id": node_id, "score": 1.0, "load": 0.0, "queue_depth": 0, "instances": 1,
            "weight": 1.0, **changes}


def _plan(**changes: object) -> dict:
    return {"v": 1, "term": 1, "coordinator": "n1", "issued_at": 1.7e9,
            "members": [_member("n1"), _member("n2")], "consensus": ["n2", "n1"], **changes}


@pytest.mark.parametrize("content_type", TYPES)
@pytest.mark.parametrize(("wire", "needle"), [
    (_plan(consensus=["n3"]), "'n3' is not a member"),
    (_plan(consensus=["n1", "n1"]), "consensus: a node id appears twice"),
    (_plan(members=[_member("n1"), _member("n1")], consensus=[]), "members: a node id appears"),
    (_plan(members=[_member("n1", load=1.5)]), r"members\[0\].load"),
    (_plan(members=[_member("n1", weight=-1)]), "weight"),
    (_plan(members=[_member("n1", weight=1e13)]), "weight"),
    (_plan(members=[_member("n1", queue_depth=-1)]), "queue_depth"),
    (_plan(members=[_member("n1", instances=5000)]), "instances"),
    (_plan(members=[{"node_id": "n1"}]), "score: missing"),
    (_plan(members=[_member(f"n{i}") for i in range(MAX_PLAN_MEMBERS + 1)], consensus=[]),
     "more than 256 items"),
    (_plan(consensus=["n1"] * (MAX_PLAN_MEMBERS + 1)), "more than 256 items"),
    (_plan(coordinator="not an id"), "coordinator"),
    (_plan(term=-1), "term"),
    (_plan(issued_at=-1.0), "issued_at"),
    (_plan(issued_at="now"), "issued_at"),
    ({k: v for k, v in _plan().items() if k != "consensus"}, "consensus: missing"),
    (_plan(members={"n1": _member("n1")}), "members: expected a list"),
])
def test_bad_plans_raise_with_a_reason(content_type: str, wire: dict, needle: str) -> None:
    data = msgpack.packb(wire) if content_type == MSGPACK else json.dumps(wire).encode()
    with pytest.raises(WireDecodeError, match=needle):
        codec.decode(data, content_type, SwarmPlan)


def test_a_full_plan_fits_the_wire_and_round_trips() -> None:
    crew = tuple(PlanMember(f"node-{i:03d}-" + "x" * 50, 1e12, 1.0, 2**31 - 1, 4096, 1e12)
                 for i in range(MAX_PLAN_MEMBERS))
    plan = SwarmPlan(term=MAX_TERM, coordinator=crew[0].node_id, issued_at=1.7e9, members=crew,
                     consensus=tuple(m.node_id for m in reversed(crew)))
    for content_type in TYPES:
        data = codec.encode(plan, content_type)
        assert len(data) < codec.MAX_BYTES
        assert codec.decode(data, content_type, SwarmPlan) == plan
