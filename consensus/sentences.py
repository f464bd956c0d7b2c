"""Reading a free-text answer: its normalised words (`normalize_text`, `content_words`), its first
statement, the copula that splits a statement into subject and predicate, and the short answer
that statement gives (`answer_span`). consensus/normalize.py keys and groups answers with these;
its docstring says why the span is read this way.
"""
from __future__ import annotations

import re
import unicodedata

ARTICLES = frozenset({"a", "an", "the"})
YES_NO = frozenset({"yes", "no"})
NEGATIONS = frozenset({"not", "never", "t", "cannot", "nor", "neither"})  # "isn't" -> "isn t"
FUNCTION_WORDS = ARTICLES | frozenset("""
    this that these those it its they them their there here he she his her him we us our you your
    i me my s re ve ll d m is are was were be been being am do does did has have had will would can
    could shall should may might must isn aren wasn weren don doesn didn won wouldn couldn hasn
    haven of in on at to for from by into onto about as than then also and or so just very quite
    really only even still either both usually typically generally often always sometimes commonly
    mostly mainly primarily predominantly indeed actually simply basically probably likely
    certainly definitely exactly approximately called known named considered referred described
    defined regarded answer question correct final
""".split())
SPAN_WORDS = 5
CLAUSE_SPAN_WORDS = 2

WORD = re.compile(r"\w+")
SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n")
_COPULA = re.compile(r"\b(?:is|are|was|were|be|equals)\b")
_BREAK_WORDS = (r"but|which|who|whom|whose|whereas|while|although|though|because|since|however|"
                r"with|without|except|unless|if|when|where|so|or")
# A comma ends a predicate only before a new clause or an apposition ("Moscow, a city on ..."), not
# inside a list of adjectives ("a deep, dark red"); it always ends a first clause ("Bünde, ...").
_CLAUSE_BREAK = re.compile(
    r"[;:()\[\]{}\u2013\u2014]|\s-\s|\b(?:" + _BREAK_WORDS + r")\b"
    r"|,(?=\s*(?:not|and|a|an|the|i|you|he|she|we|they|it|this|that|there|" + _BREAK_WORDS
    + r")\b)")
_FIRST_CLAUSE_BREAK = re.compile(_CLAUSE_BREAK.pattern + r"|(?<!\d),|,(?!\d)")
_PUNCTUATION_RUN = re.compile(r"[\W_]+")


def normalize_text(text: str) -> str:
    """Casefolded NFKC text, punctuation and articles dropped, words joined by single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    cleaned = "".join(ch if ch.isalnum() or ch.isspace() else " " for ch in folded)
    return " ".join(w for w in cleaned.split() if w not in ARTICLES)


def content_words(text: str) -> list[str]:
    """The words of `normalize_text(text)` that are not FUNCTION_WORDS, in order."""
    return [w for w in normalize_text(text).split() if w not in FUNCTION_WORDS]


def first_sentence(text: str) -> str:
    """The first sentence of `text` that is a statement (not a question), else its first."""
    sentences = [s for s in SENTENCE_BREAK.split(text.strip()) if WORD.search(s)]
    statements = [s for s in sentences if not s.rstrip().endswith("?")]
    return (statements or sentences or [""])[0]


def _skip_punctuation(text: str, pos: int) -> int:
    match = _PUNCTUATION_RUN.match(text, pos)
    return match.end() if match else pos


def _span_of(fragment: str) -> str:
    kept: list[str] = []
    count = 0
    for word in content_words(fragment):
        if word not in NEGATIONS:
            if count == SPAN_WORDS:
                break
            count += 1
        kept.append(word)
    return " ".join(kept)


def copula_split(sentence: str) -> tuple[str, str] | None:
    """(subject, predicate) around the copula of a casefolded sentence, or None without one.

    The copula is the last one before the clause break that follows the first one, so "The only
    planet that is habitable is Earth, ..." splits at the second "is", and the predicate ends there.
    """
    copulas = list(_COPULA.finditer(sentence))
    if not copulas:
        return None
    brk = _CLAUSE_BREAK.search(sentence, _skip_punctuation(sentence, copulas[0].end()))
    end = brk.start() if brk else len(sentence)
    copula = [c for c in copulas if c.end() <= end][-1]
    return sentence[:copula.start()], sentence[copula.end():end]


def answer_span(text: str) -> tuple[str, str]:
    """(span, subject) of a free-text answer as content words; see the module docstring.

    "No, fire is not cold." -> ("no", ""); "The sky is usually a deep shade of blue, but ..." ->
    ("deep shade blue", "sky"); "Venus - the hottest planet" -> ("venus", "").
    """
    sentence = first_sentence(unicodedata.normalize("NFKC", text).casefold())
    words = normalize_text(sentence).split()
    if words and words[0] in YES_NO:
        return words[0], ""
    split = copula_split(sentence)
    if split is None:
        start = _skip_punctuation(sentence, 0)
        brk = _FIRST_CLAUSE_BREAK.search(sentence, start)
        clause = sentence[start:brk.start() if brk else len(sentence)]
        short = len(set(content_words(clause)) - NEGATIONS) <= CLAUSE_SPAN_WORDS
        return (_span_of(clause) if short else ""), ""
    subject, predicate = split
    return _span_of(predicate), " ".join(w for w in content_words(subject) if w not in NEGATIONS)
