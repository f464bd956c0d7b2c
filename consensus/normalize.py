"""Answer normalisation for voting: one comparable key per answer, and similarity groups of keys.

An answer is keyed by the first of these that applies, in this order:
  json    a JSON object or array (``` fences stripped), re-serialised with sorted keys;
  letter  a multiple-choice option: "(B)", "B)", "Answer: b", "the answer is C", or just "b.";
  number  the number after the last answer marker ("answer", "=", "####", ...), else a number that
          ends the text, else the only number of a short text; "1,234" -> "1234", "3.50" -> "3.5";
  text    casefolded NFKC text without punctuation, extra whitespace or articles (a, an, the).

Similarity (free text only): the Jaccard index of the two answers' word sets, grouped when it is at
least `TEXT_SIMILARITY` (0.8). Word-set Jaccard is symmetric, ignores word order, costs O(words),
and needs no model; difflib's ratio is none of the first three (`ratio(a, b)` can differ from
`ratio(b, a)`). The high threshold prefers splitting a vote over merging different answers such as
"capital of france is paris" / "... is lyon" (4 of 6 words shared: 0.67). Groups are the connected
components of the "similar" graph over the distinct keys, each named by its smallest key: a
function of the set of answers alone, so never of their order, and a new answer can only merge
groups, never split one (which the early-stop bound in `strategies.vote_settled` relies on).
"""
from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

TEXT_SIMILARITY = 0.8
ARTICLES = frozenset({"a", "an", "the"})

_FENCE = re.compile(r"```[\w+-]*[ \t]*\n?(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w])|[-+]?\.\d+")
_MARKER = re.compile(r"answer|result|total|equals?|=|####", re.IGNORECASE)
_LETTER_MARKED = re.compile(
    r"(?i:answer)\s*(?:(?i:is)\s*)?(?:(?i:option)\s*)?[:\-]?\s*"
    r"(?:\(([A-HJa-hj])\)|([A-HJ])\b|([a-hj])(?=\W*$))"
)
_LETTER_LEADING = re.compile(r"^\s*\(?([A-HJ])[).:](?:\s|$)")
_LETTER_ALONE = re.compile(r"^\W*([A-HJa-hj])\W*$")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, order=True)
class AnswerKey:
    """A normalised answer: its kind ("json", "letter", "number", "text") and canonical value."""

    kind: str
    value: str

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
    except ValueError:
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


def final_number(text: str) -> str | None:
    """The number `text` answers with (see the module docstring), canonicalised, or None."""
    numbers = list(_NUMBER.finditer(text))
    if not numbers:
        return None
    markers = list(_MARKER.finditer(text))
    chosen = None
    for marker in reversed(markers):
        after = [m for m in numbers if m.start() >= marker.end()]
        if after:
            chosen = after[0]
            break
    if chosen is None:
        tail = text[numbers[-1].end():]
        if not _WORD.search(tail):
            chosen = numbers[-1]
        elif len(numbers) == 1 and len(_WORD.findall(text)) <= 4:
            chosen = numbers[0]
    if chosen is None:
        return None
    try:
        return canonical_number(chosen.group(0))
    except InvalidOperation:
        return None


def normalize_text(text: str) -> str:
    """Casefolded NFKC text, punctuation and articles dropped, words joined by single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    cleaned = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in folded)
    return " ".join(w for w in cleaned.split() if w not in ARTICLES)


def normalize_answer(text: str) -> AnswerKey:
    """The voting key of an answer: JSON, else option letter, else final number, else text."""
    as_json = canonical_json(text)
    if as_json is not None:
        return AnswerKey("json", as_json)
    letter = option_letter(text)
    if letter is not None:
        return AnswerKey("letter", letter)
    number = final_number(text)
    if number is not None:
        return AnswerKey("number", number)
    return AnswerKey("text", normalize_text(text))


def similarity(a: str, b: str) -> float:
    """Jaccard index of the word sets of two normalised texts (1.0 when both are empty)."""
    words_a, words_b = set(a.split()), set(b.split())
    if not words_a and not words_b:
        return 1.0
    return len(words_a & words_b) / len(words_a | words_b)


def group_keys(
    keys: Iterable[AnswerKey], threshold: float = TEXT_SIMILARITY
) -> dict[AnswerKey, AnswerKey]:
    """Map each distinct key to its group's representative (the group's smallest key).

    Keys of kind "text" join when their `similarity` is at least `threshold` (transitively);
    other kinds group only with equal keys.
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
            if similarity(a.value, b.value) >= threshold:
                ra, rb = root(a), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return {key: root(key) for key in distinct}
