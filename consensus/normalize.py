"""Answer normalisation for voting: one comparable key per answer, and similarity groups of keys.

An answer is keyed by the first of these that applies, in this order:
  tool_call  tool calls (an answer written under the tool-call grammar, swarm/engine/tools.py):
          the set of (function, arguments), arguments re-serialised with sorted keys, so two
          candidates that call the same functions with the same arguments vote together,
          whatever order or ids;
  json    a JSON object or array (``` fences stripped), re-serialised with sorted keys;
  letter  a multiple-choice option: "(B)", "B)", "Answer: b", "the answer is C", or just "b.";
  number  the first number in the sentence of the last "answer" or "####" (its last "=" if any:
          "The answer is 24. A day is equal to 1 ..." -> 24), else the number after the last "=",
          "equals", "total" or "result", else a number that ends the text, else the only number of
          a short text, else one that opens the predicate of the first sentence ("There are 7 days
          in a week"); "1,234" -> "1234", "3.50" -> "3.5";
  text    casefolded NFKC text without punctuation, extra whitespace or articles (a, an, the),
          plus the short answer its first sentence gives (`answer_span`).

Free text is grouped by the short answer, falling back on word overlap. The span is read from the
first statement: a leading "yes"/"no"; else the predicate of its copula, "The capital of France is
Paris, a city of light" -> "paris" with subject "capital france", "The answer is **blue**." ->
"blue"; else a first clause of at most two content words, "Bünde, Germany's capital city" ->
"bünde". Content words leave out function words and hedges ("usually", "called", ...); at most five
are kept. Two text answers are `similar` when
  - their spans agree: one's content words all occur in the other's, with the same polarity
    ("not", "never", "n't"), and their subjects share a word or one has none; "Paris" ~ "The
    capital of France is Paris." ~ "... is Paris, a city of light"; "No" ~ "No, fire is not cold.";
  - or, when the spans give no evidence either way (one is empty, or the subjects differ), the
    Jaccard index of their word sets is at least `TEXT_SIMILARITY` (0.8) with the same negations:
    paraphrases and inversions, "Paris is the capital of France" ~ "The capital of France is Paris".
Spans that are both present under compatible subjects and do not agree are a conflict, and keep
otherwise near-identical sentences apart: "The capital of Japan is Tokyo" / "... is Japan" (Jaccard
0.8). Inverted sentences agree in their predicates but not their subjects, so "Paris is the capital
of France" and "Lyon is the capital of France" stay apart.

Why: small models answer "What is the capital of France? Answer with one word." with a sentence that
repeats the question, so "Paris" and "The capital of France is Paris." (Jaccard 0.2), or "No" and
"No, fire is not cold." must group, while "... is Paris" and "... is Lyon" must not (Jaccard 0.67).
A shared-word measure over whole answers (the overlap coefficient) joins those two, and joins a
bare echo "hot" to "The opposite of hot is cold."; the request is not known here, so its echo
cannot be stripped, but the span is where such sentences put the answer. Everything is
symmetric, costs O(words) and needs no model (difflib's ratio is not symmetric).

Groups are the connected components of the "similar" graph over the distinct keys, each named by its
smallest key. Similarity is a symmetric relation on two keys alone (never on the other answers), so
the grouping is a function of the set of answers, never of their order, and a new answer can only
merge groups, never split one: the early-stop bound in `strategies.vote_settled`, which lets one
outstanding answer bridge every other text group ("Paris and Lyon" agrees with both), stays sound.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from consensus.sentences import (
    FUNCTION_WORDS,
    NEGATIONS,
    SENTENCE_BREAK,
    WORD,
    answer_span,
    copula_split,
    first_sentence,
    normalize_text,
)
from swarm.engine.toolcalls import read_answer

TEXT_SIMILARITY = 0.8

_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])|[-+]?\.\d+")
_ANSWER_MARKER = re.compile(r"answer|####", re.IGNORECASE)
_MARKER = re.compile(r"result|total|equals?|=", re.IGNORECASE)
_LETTER_MARKED = re.compile(
    r"(?i:answer)\s*(?:(?i:is)\s*)?(?:(?i:option)\s*)?[:\-]?\s*"
    r"(?:\(([A-HJa-hj])\)|([A-HJ])\b|([a-hj])(?=\W*$))"
)
_LETTER_LEADING = re.compile(r"^\s*\(?([A-HJ])[).:](?:\s|$)")
_LETTER_ALONE = re.compile(r"^\W*([A-HJa-hj])\W*$")
_LEADING_WORD = re.compile(r"\W*([^\W\d_]+)\b")


@dataclass(frozen=True, order=True)
class AnswerKey:
    """A normalised answer: its kind ("json", "letter", "number", "text") and canonical value;
    text keys also carry the short answer their first sentence gives (`answer_span`)."""

    kind: str
    value: str
    span: str = ""
    subject: str = ""

    def __str__(self) -> str:
        return self.value


def strip_fences(text: str) -> str:
    """The body of the first ``` fenced block in `text`, or `text` stripped when there is none."""
    match = _FENCE.search(text)
    return (match.group(1) if match else text).strip()


def canonical_json(text: str) -> str | None:
    """`text` as a JSON object or array re-serialised with sorted keys, or None if it is not one."""
    body = strip_fences(text)
    if not body.startswith(("{", "[")):
        return None
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # nested too deep to be an answer worth grouping
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def option_letter(text: str) -> str | None:
    """The multiple-choice letter `text` answers with (uppercase), or None."""
    for pattern in (_LETTER_ALONE, _LETTER_LEADING):
        match = pattern.search(text)
        if match:
            return match.group(1).upper()
    marked = list(_LETTER_MARKED.finditer(text))
    if marked:
        last = marked[-1]
        return next(g for g in last.groups() if g).upper()
    return None


def canonical_number(token: str) -> str:
    """A number token without separators, trailing zeros or exponent: "1,234.50" -> "1234.5"."""
    value = Decimal(token.replace(",", "")).normalize()
    if value == 0:
        return "0"
    return format(value, "f")


def _first_after_last(marker: re.Pattern[str], text: str,
                      numbers: list[re.Match[str]]) -> re.Match[str] | None:
    for found in reversed(list(marker.finditer(text))):
        after = [m for m in numbers if m.start() >= found.end()]
        if after:
            return after[0]
    return None


def _marked_number(text: str, numbers: list[re.Match[str]]) -> re.Match[str] | None:
    for found in reversed(list(_ANSWER_MARKER.finditer(text))):
        brk = SENTENCE_BREAK.search(text, found.end())
        end = brk.start() if brk else len(text)
        inside = [m for m in numbers if m.start() >= found.end() and m.end() <= end]
        if inside:  # "The answer is 24. A day is equal to 24 hours." -> 24, not 1
            return _first_after_last(_MARKER, text[:end], inside) or inside[0]
    return _first_after_last(_MARKER, text, numbers)


def _predicate_number(text: str) -> str | None:
    split = copula_split(first_sentence(text.casefold()))
    if split is None:
        return None
    rest = split[1]
    while (word := _LEADING_WORD.match(rest)) and word.group(1) in FUNCTION_WORDS:
        rest = rest[word.end():]
    match = _NUMBER.match(rest.lstrip(" \t\"'*\u201c\u2018("))
    return match.group(0) if match else None


def final_number(text: str) -> str | None:
    """The number `text` answers with (see the module docstring), canonicalised, or None."""
    numbers = list(_NUMBER.finditer(text))
    if not numbers:
        return None
    chosen = _marked_number(text, numbers)
    token = chosen.group(0) if chosen else None
    if token is None:
        tail = text[numbers[-1].end():]
        if not WORD.search(tail):
            token = numbers[-1].group(0)
        elif len(numbers) == 1 and len(WORD.findall(text)) <= 4:
            token = numbers[0].group(0)
        else:
            token = _predicate_number(text)
    if token is None:
        return None
    try:
        return canonical_number(token)
    except InvalidOperation:
        return None


def canonical_calls(text: str) -> str | None:
    """The calls of a tool-call answer as canonical JSON (sorted), or None for a text answer."""
    content, calls, complete = read_answer(text, new_id=str)
    if content is not None or not calls:
        return None
    entries = []
    for call in calls:
        try:
            arguments = json.loads(call.arguments) if complete or call is not calls[-1] else None
        except ValueError:
            arguments = None
        entries.append(json.dumps({"name": call.name, "arguments": arguments
                                   if arguments is not None else call.arguments},
                                  sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    return "[" + ",".join(sorted(entries)) + "]"


def normalize_answer(text: str) -> AnswerKey:
    """The voting key of an answer: tool calls, else JSON, else option letter, else final
    number, else text."""
    calls = canonical_calls(text)
    if calls is not None:
        return AnswerKey("tool_call", calls)
    as_json = canonical_json(text)
    if as_json is not None:
        return AnswerKey("json", as_json)
    letter = option_letter(text)
    if letter is not None:
        return AnswerKey("letter", letter)
    number = final_number(text)
    if number is not None:
        return AnswerKey("number", number)
    return AnswerKey("text", normalize_text(text), *answer_span(text))


def similarity(a: str, b: str) -> float:
    """Jaccard index of the word sets of two normalised texts (1.0 when both are empty)."""
    words_a, words_b = set(a.split()), set(b.split())
    if not words_a and not words_b:
        return 1.0
    return len(words_a & words_b) / len(words_a | words_b)


def _span_relation(a: AnswerKey, b: AnswerKey) -> str:
    """"agree", "conflict" or "" (no evidence) between the answer spans of two text keys."""
    words_a, words_b = set(a.span.split()), set(b.span.split())
    negated = bool(words_a & NEGATIONS), bool(words_b & NEGATIONS)
    words_a -= NEGATIONS
    words_b -= NEGATIONS
    subject_a, subject_b = set(a.subject.split()), set(b.subject.split())
    if not words_a or not words_b or (subject_a and subject_b and not subject_a & subject_b):
        return ""
    nested = words_a <= words_b or words_b <= words_a
    return "agree" if nested and negated[0] == negated[1] else "conflict"


def similar(a: AnswerKey, b: AnswerKey, threshold: float = TEXT_SIMILARITY) -> bool:
    """Whether two text keys belong together (see the module docstring): their spans agree, or
    the spans give no evidence and the texts are paraphrases (`similarity` at least `threshold`,
    the same negations). Symmetric, and a function of the two keys alone."""
    relation = _span_relation(a, b)
    if relation:
        return relation == "agree"
    same_negations = set(a.value.split()) & NEGATIONS == set(b.value.split()) & NEGATIONS
    return same_negations and similarity(a.value, b.value) >= threshold


def group_keys(
    keys: Iterable[AnswerKey], threshold: float = TEXT_SIMILARITY
) -> dict[AnswerKey, AnswerKey]:
    """Map each distinct key to its group's representative (the group's smallest key).

    Keys of kind "text" join when they are `similar` (transitively); other kinds group only with
    equal keys.
    """
    distinct = sorted(set(keys))
    parent = {key: key for key in distinct}

    def root(key: AnswerKey) -> AnswerKey:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    texts = [k for k in distinct if k.kind == "text"]
    for i, a in enumerate(texts):
        for b in texts[i + 1:]:
            if similar(a, b, threshold):
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return {key: root(key) for key in distinct}
