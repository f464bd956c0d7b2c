"""Answer normalisation, similarity grouping, and the validators built on them."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consensus.normalize import (
    AnswerKey,
    answer_span,
    group_keys,
    normalize_answer,
    normalize_text,
    similar,
    similarity,
    strip_fences,
)
from consensus.validators import build_validator, json_object, json_schema, regex
from swarm.engine.backend import Completion


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
    ("The answer is 24. 24 hours is equal to 1 day.", "number", "24"),
    ("Answer: 3 + 4 = 7", "number", "7"),
    ("5 + 7 = 12, so the answer is 12. Done.", "number", "12"),
    ("In a day, there are 24 hours.", "number", "24"),
    ("A day is approximately 86,400 seconds long.", "number", "86400"),
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
    key = normalize_answer(text)
    assert (key.kind, key.value) == (kind, value)
    if kind != "text":
        assert key == AnswerKey(kind, value)


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


@pytest.mark.parametrize(("text", "span", "subject"), [
    ("The capital of France is Paris.", "paris", "capital france"),
    ("The capital of China is Beijing, but an alternative answer would be Shanghai", "beijing",
     "capital china"),
    ("In Italy, the capital is Rome. A single word is indeed the answer.", "rome", "italy capital"),
    ("The only planet that is habitable to humans is Earth.", "earth", "planet habitable humans"),
    ("The sky is usually a deep shade of blue, with a lighter hue", "deep shade blue", "sky"),
    ('The answer is "blue".', "blue", ""),
    ("The answer to your question is: **hammamoun**", "hammamoun", ""),
    ("The colour of snow is usually either white or silver", "white", "colour snow"),
    ("The opposite of fast is not slow.", "not slow", "opposite fast"),
    ("No, fire is not cold. Fire is hot.", "no", ""),
    ("Is the sun hot? Yes.", "yes", ""),
    ("Bünde, Germany's capital city.", "bünde", ""),
    ("Venus \u2013 the most inhospitable planet", "venus", ""),
    ("The sun rises in the east", "", ""),  # a clause of three content words: no span
    ("Pacific Ocean.", "pacific ocean", ""),
    ("The bees make a unique form of honey with wax", "", ""),
    ("The sky on a clear day is either:", "", "sky clear day"),
    ("", "", ""),
])
def test_answer_span(text: str, span: str, subject: str) -> None:
    assert answer_span(text) == (span, subject)


def _grouped(texts: list[str]) -> list[set[str]]:
    keys = {text: normalize_answer(text) for text in texts}
    groups = group_keys(keys.values())
    by_rep: dict[AnswerKey, set[str]] = {}
    for text, key in keys.items():
        by_rep.setdefault(groups[key], set()).add(text)
    return sorted(by_rep.values(), key=lambda g: sorted(g))


def test_short_answers_group_with_the_sentences_that_give_them() -> None:
    # Real SmolLM2-135M answers to "... Answer with one word." (bench/consensus_quality.py).
    paris = {"Paris", "The capital of France is Paris.", "Paris is the capital of France.",
             "The capital of France is Paris, a city of light."}
    lyon = {"The capital of France is Lyon.", "Lyon is the capital of France."}
    assert _grouped([*paris, *lyon]) == sorted([lyon, paris], key=lambda g: sorted(g))
    no = {"No", "No.", "No, fire is not cold. Fire has a specific temperature",
          "The answer is no, I am not able to provide a response."}
    assert _grouped([*no, "Yes. Ice is indeed cold."]) == [no, {"Yes. Ice is indeed cold."}]
    blue = {"The sky on a clear day is a deep shade of blue, with a hint of pink.",
            "The sky on a clear day is blue, but some people might argue",
            "The sky on a clear day is a brilliant blue color, as it reflects", "Blue"}
    indigo = {"The sky on a clear day appears to be a breathtaking shade of indigo, a rare"}
    assert _grouped([*blue, *indigo]) == [blue, indigo]


@pytest.mark.parametrize(("a", "b"), [
    ("hot", "The opposite of hot is cold."),  # an echo of the question is not the answer
    ("day", "The opposite of day is night."),
    ("The opposite of fast is slow.", "The opposite of fast is not slow."),
    ("The sun rises in the east.", "The sun rises in the west."),
    ("Paris is the capital of France.", "Lyon is the capital of France."),
    ("bees", "The bees make a unique form of honey with wax."),
    ("The capital of Spain is Madrid.", "The capital of Spain is Monaco."),
    # near-identical sentences (word Jaccard 0.8 or more) whose short answers conflict
    ("The capital of Japan is Tokyo.", "The capital of Japan is **JAPAN**!"),
    ("The color of coal is black.", "The color of coal is coal."),
    ("A ripe tomato is a deep, rich, bitter colour.", "A ripe tomato is a deep, dark red colour."),
])
def test_different_answers_stay_apart(a: str, b: str) -> None:
    assert not similar(normalize_answer(a), normalize_answer(b))


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


_sentences = st.lists(
    st.sampled_from(["Paris", "Lyon", "the", "capital", "of", "France", "is", "not", "no", "yes",
                     "blue", "sky", "usually", ",", ".", "but", "or", "\n", "?", "be"]),
    max_size=9).map(" ".join)


@given(_sentences, _sentences)
def test_similar_is_symmetric(a: str, b: str) -> None:
    key_a, key_b = normalize_answer(a), normalize_answer(b)
    assert similar(key_a, key_b) == similar(key_b, key_a)
    if key_a.kind == "text":
        assert similar(key_a, key_a)


@given(st.lists(_sentences, max_size=8), st.lists(_sentences, max_size=3),
       st.randoms(use_true_random=False))
def test_more_answers_only_merge_groups(texts: list[str], more: list[str], rnd) -> None:
    # The early-stop bound in strategies.vote_settled relies on this: answers still to come can
    # merge groups (a bridge), never split them, and the order answers come in does not matter.
    keys = [normalize_answer(t) for t in texts]
    extra = [*keys, *(normalize_answer(t) for t in more)]
    rnd.shuffle(extra)
    before, after = group_keys(keys), group_keys(extra)
    for a in keys:
        for b in keys:
            if before[a] == before[b]:
                assert after[a] == after[b]
    assert group_keys(reversed(extra)) == after


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


def test_a_candidate_nested_too_deep_is_invalid_not_a_crash() -> None:
    deep = "[" * 200_000 + "]" * 200_000  # a peer's vote text may be anything up to its bound
    valid, reason = json_object(_done(deep))
    assert not valid and "RecursionError" in reason
    assert normalize_answer(deep) is not None  # grouped as text, not as JSON


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
