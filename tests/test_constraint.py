"""Constraints enforced while decoding: their pure parts (JSON depth, regex search patterns), their
building from OpenAI shapes, the wire, and llguidance masks over the embedded model's vocabulary."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from network.api.openai.schema import request_constraint
from network.wire.fields import WireDecodeError
from network.wire.votes import VoteRequest
from swarm.engine.backend import ChatMessage, GenerationRequest, SamplingParams
from swarm.engine.constraint import (
    Constraint,
    JsonDepth,
    _search_pattern,
    json_constraint,
    regex_constraint,
)
from swarm.engine.sampler import Sampler
from swarm.errors import RequestError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=12)


@given(json_values, st.data())
def test_json_depth_counts_what_is_open_at_every_split(value, data):
    text = json.dumps(value, ensure_ascii=False).encode()
    cut = data.draw(st.integers(0, len(text)))
    depth = JsonDepth()
    depth.feed(text[:cut])
    opened = JsonDepth()
    for i in range(cut):  # byte by byte gives the same count
        opened.feed(text[i:i + 1])
    assert depth.depth == opened.depth >= 0
    depth.feed(text[cut:])
    assert depth.depth == 0


@given(st.text(alphabet="ab", max_size=6), st.text(alphabet="ab", min_size=1, max_size=3),
       st.booleans(), st.booleans())
def test_search_pattern_matches_exactly_when_re_search_does(text, needle, start, end):
    pattern = ("^" if start else "") + re.escape(needle) + ("$" if end else "")
    whole = re.fullmatch(_search_pattern(pattern), text, re.DOTALL) is not None
    assert whole == (re.search(pattern, text) is not None)


def test_openai_shapes_become_constraints():
    assert request_constraint(None, None) is None
    assert request_constraint({"type": "text"}, None) is None
    assert request_constraint({"type": "json_object"}, None) == Constraint("json_schema",
                                                                            '{"type": "object"}')
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    made = request_constraint({"type": "json_schema", "json_schema": {"name": "x",
                                                                      "schema": schema}}, "a")
    assert made is not None and json.loads(made.source) == schema  # JSON wins over the regex
    assert request_constraint(None, "^(yes|no)$") == Constraint("regex", "^(yes|no)$")


def test_what_cannot_be_enforced_is_refused_or_only_checked():
    with pytest.raises(RequestError) as bad_schema:
        request_constraint({"type": "json_schema", "json_schema": {"schema": {"type": "nope"}}},
                           None)
    assert bad_schema.value.status == 400 and bad_schema.value.param == "response_format"
    with pytest.raises(RequestError) as bad_regex:
        request_constraint(None, "(unclosed")
    assert bad_regex.value.param == "swarm.regex"
    assert regex_constraint(r"\bword\b") is None  # look-around: checked after generation only
    with pytest.raises(ValueError):
        json_constraint({"type": "object", "properties": {"a": {"type": "string",
                                                                "pattern": "(?=x)"}}})


def test_constraints_and_logprob_options_cross_the_wire():
    request = GenerationRequest(
        messages=(ChatMessage("user", "hi"),),
        params=SamplingParams(max_tokens=9, logprobs=True, top_logprobs=3),
        constraint=json_constraint({"type": "object"}))
    vote = VoteRequest.from_generation("r1", request)
    assert VoteRequest.from_wire(vote.to_wire()).to_generation() == request
    wire = vote.to_wire() | {"constraint_kind": "regex", "constraint": "(?=x)"}
    with pytest.raises(WireDecodeError, match="cannot be enforced"):
        VoteRequest.from_wire(wire)
    with pytest.raises(WireDecodeError):
        VoteRequest.from_wire(vote.to_wire() | {"top_logprobs": 21})
    old = {k: v for k, v in vote.to_wire().items() if k not in ("constraint_kind", "constraint")}
    assert VoteRequest.from_wire(old).to_generation().constraint is None  # an older peer's vote


@given(st.integers(0, 2**63 - 1), st.floats(0.05, 2.0), st.floats(0.05, 1.0))
def test_sampling_stays_inside_the_mask_and_reports_unmasked_logprobs(seed, temperature, top_p):
    logits = np.random.default_rng(seed % 1000).normal(size=64).astype(np.float32)
    allowed = np.zeros(64, dtype=bool)
    allowed[[3, 17, 40]] = True
    sampler = Sampler(SamplingParams(temperature=temperature, top_p=top_p, seed=seed))
    token, logprob = sampler.pick(logits, allowed)
    assert allowed[token]
    expected = logits[token] - np.log(np.exp(logits.astype(np.float64)).sum())
    assert logprob == pytest.approx(expected, abs=1e-4)
    greedy = Sampler(SamplingParams(temperature=0.0)).pick(logits, allowed)[0]
    assert greedy == max((3, 17, 40), key=lambda t: logits[t])
