"""Answer normalisation, similarity grouping, and the validators built on them."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.normalize import (
    AnswerKey,
    group_keys,
    normalize_answer,
    normalize_text,
    similarity,
    strip_fences,
)
from consensus.validators import build_validator, json_object, json_schema, regex
from swarm.backend import Completion


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("The answer is 1,234.", "number", "1234"),
    ("3.50", "number", "3.5"),
    ("1234.0", "number", "1234"),
    ("-0.0", "number", "0"),
    (".5", "number", "0.5"),
    ("2+3=5", "number", "5"),
    ("#### 72", "number", "72"),
    ("There are 3 cats and 4 dogs, so the total is 7 animals.", "number", "7"),
    ("It costs $1,000,000.00", "number", "1000000"),
    ("42 apples", "number", "42"),
    ("(B)", "letter", "B"),
    ("Answer: b", "letter", "B"),
    ("the answer is C.", "letter", "C"),
    ("answer is (c) because it fits", "letter", "C"),
    ("B) 42", "letter", "B"),
    ("a.", "letter", "A"),
    ('```json\n{"b": 1, "a": [1, 2]}\n```', "json", '{"a":[1,2],"b":1}'),
    ('{"a": 1}', "json", '{"a":1}'),
    ("The capital of France is Paris.", "text", "capital of france is paris"),
    ("The answer is a dog", "text", "answer is dog"),
    ("Paris was founded in 250 BC", "text", "paris was founded in 250 bc"),
])
def test_normalize_answer(text: str, kind: str, value: str) -> None:
    assert normalize_answer(text) == AnswerKey(kind, value)


def test_same_answers_share_a_key() -> None:
    assert normalize_answer("The answer is 1,234.") == normalize_answer("1234")
    assert normalize_answer('{"x": 1, "y": 2}') == normalize_answer('```\n{"y":2,"x":1}\n```')
    assert normalize_answer("  PARIS!! ") == normalize_answer("paris")


def test_strip_fences() -> None:
    assert strip_fences("Here:\n```json\n[1]\n```\nbye") == "[1]"
    assert strip_fences("  plain  ") == "plain"


def test_normalize_text_drops_articles_and_punctuation() -> None:
    assert normalize_text("An apple, the pear; A plum!") == "apple pear plum"


def test_similarity_groups_paraphrases_not_different_answers() -> None:
    keys = [normalize_answer(t) for t in (
        "Paris is the capital of France.", "The capital of France is Paris",
        "The capital of France is Lyon.", "42",
    )]
    groups = group_keys(keys)
    assert groups[keys[0]] == groups[keys[1]]
    assert groups[keys[2]] != groups[keys[0]]
    assert groups[keys[3]] == keys[3]


def test_group_keys_never_merges_structured_kinds() -> None:
    a, b = AnswerKey("number", "1"), AnswerKey("letter", "1")
    assert group_keys([a, b]) == {a: a, b: b}


_words = st.lists(st.sampled_from(["paris", "lyon", "is", "capital", "of", "france", "x"]),
                  min_size=0, max_size=5).map(" ".join)


@given(st.lists(_words, max_size=8), st.randoms(use_true_random=False))
def test_group_keys_is_order_independent(texts: list[str], rnd) -> None:
    keys = [AnswerKey("text", t) for t in texts]
    shuffled = list(keys)
    rnd.shuffle(shuffled)
    groups = group_keys(keys)
    assert groups == group_keys(shuffled)
    for key, rep in groups.items():
        assert rep <= key and groups[rep] == rep


@given(_words, _words)
def test_similarity_is_symmetric_and_bounded(a: str, b: str) -> None:
    assert similarity(a, b) == similarity(b, a)
    assert 0.0 <= similarity(a, b) <= 1.0
    assert similarity(a, a) == 1.0


def _done(text: str, finish: str = "stop") -> Completion:
    return Completion(text, (1,), (-0.1,), finish, 3)  # type: ignore[arg-type]


def test_json_validators() -> None:
    assert json_object(_done('```json\n{"a": 1}\n```'))[0]
    assert not json_object(_done("[1, 2]"))[0]
    assert not json_object(_done("{oops"))[0]
    check = json_schema({"type": "object", "required": ["n"],
                         "properties": {"n": {"type": "integer"}}})
    assert check(_done('{"n": 3}')) == (True, "ok")
    valid, reason = check(_done('{"n": "three"}'))
    assert not valid and "n" in reason
    with pytest.raises(ValueError):
        json_schema({"type": "no-such-type"})


def test_regex_searches() -> None:
    assert regex(r"\d+")(_done("it is 42."))[0]
    assert not regex(r"^\d+$")(_done("it is 42."))[0]
    with pytest.raises(ValueError):
        regex("(")


def test_build_validator_shapes() -> None:
    text = build_validator(None)
    assert text(_done("hi"))[0]
    assert not text(_done("hi", "length"))[0]
    assert not text(_done("   "))[0]
    assert build_validator({"type": "text"}, require_finished=False)(_done("hi", "length"))[0]
    obj = build_validator({"type": "json_object"})
    assert obj(_done('{"a": 1}'))[0] and not obj(_done("a"))[0]
    schema = build_validator({"type": "json_schema", "json_schema": {
        "name": "n", "schema": {"type": "object", "required": ["n"]}}}, regex=r'"n"')
    assert schema(_done('{"n": 1}'))[0]
    assert not schema(_done('{"m": 1}'))[0]
    with pytest.raises(ValueError):
        build_validator({"type": "xml"})
    with pytest.raises(ValueError):
        build_validator({"type": "json_schema", "json_schema": {"schema": {"type": 5}}})
