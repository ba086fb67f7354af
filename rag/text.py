"""The ground floor's text helpers, shared by ingestion, answering, evaluation and the faces:
sentence spans with exact character offsets (`split_sentences`) and the word forms the support and
claim checks compare (`content_words`, `numbers`, `names`).

We split sentences ourselves (rather than llama-index's SentenceSplitter) because every chunk must
carry its exact start/end in the source text; the splitter recovers offsets with `str.find`,
which points at the wrong place when a passage repeats.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from nltk.stem.porter import PorterStemmer

# A sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace and a capital, digit
# or opening quote, or at a blank line. A period that ends an abbreviation, an initial or a list number
# is not an end (`_false_stop`). Why our own splitter rather than llama-index's SentenceSplitter or
# pysbd: every span must be an exact char offset into the source (theirs are recovered with str.find
# or rebuilt from cleaned text), and this runs on every chunk, passage and answer sentence.
_SENTENCE_END = re.compile(
    r"(?<=[.!?])[\"')\]\u201d\u2019]*\s+(?=[\"'(\[\u201c\u2018]?[A-Z0-9])"
    r"|(?<=[.!?])[ \t]*\n\s*(?=(?:\d{1,3}|[ivxlcdm]{1,5}|[a-z])[.)]\s)"  # a lower-case list item on a new line
    r"|\n\s*\n")
# Words that take a period but seldom end a sentence, compared as written: titles, months and days
# only capitalised ("the sun. Then" ends a sentence, "Sun. 5 May" does not), a few forms also lower-case.
ABBREVIATIONS = frozenset("""
    Mr Mrs Ms Dr Gen Col Sgt Lt Capt Maj Adm Cmdr Cpl Pvt Sen Rep Gov Pres Prof Jr Sr Rev Hon Messrs Mme
    St Mt Ft Ave Blvd Rd Dept Univ No Nos Fig Figs Eq Eqs Vol Vols Ch Chap Sec Art Para Ref Refs Ed Eds
    Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec Mon Tue Tues Wed Thu Thur Thurs Fri Sat Sun
    fig figs eq eqs vol vols pp ch chap para approx cf al vs viz
""".split())
_CLOSERS = "\"')]\u201d\u2019"
_DOTTED = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")  # U.S, e.g, a.m (the final period is outside)
_LIST_NUMBER = re.compile(r"\d{1,3}|[ivxlcdm]{1,5}|[A-Za-z]", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    """A piece of a text, as character offsets: text[start:end]."""

    start: int
    end: int


def _false_stop(text: str, stop: int) -> bool:
    """True if the period at `stop` ends an abbreviation ("Sen.", "Jan.", "U.S."), an initial ("J.",
    "U. S."), or a list number at the start of a line ("1.", "iv.") rather than a sentence."""
    if text[stop] != ".":
        return False
    start = stop
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:stop].lstrip("\"'([{\u201c\u2018")
    if not word or word.endswith("."):  # an ellipsis or "?." ends the sentence
        return False
    if word in ABBREVIATIONS or _DOTTED.fullmatch(word) or (len(word) == 1 and word.isalpha()):
        return True
    line_start = not text[text.rfind("\n", 0, start) + 1:start].strip()
    return line_start and _LIST_NUMBER.fullmatch(word) is not None


def split_sentences(text: str, offset: int = 0) -> list[Span]:
    """Sentence spans (stripped of surrounding whitespace) as char offsets into `text` (+offset)."""
    spans: list[Span] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        gap = match.group()
        closing = len(gap) - len(gap.lstrip(_CLOSERS))
        stop = match.start() - 1  # the . ! or ? (the blank-line alternative has none)
        paragraph = re.search(r"\n[ \t]*\n", gap) is not None
        if not paragraph and stop >= 0 and _false_stop(text, stop):
            continue
        _append(spans, text, start, match.start() + closing, offset)
        start = match.end()
    _append(spans, text, start, len(text), offset)
    return spans


def _append(spans: list[Span], text: str, start: int, end: int, offset: int) -> None:
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    trail = len(piece) - len(piece.rstrip())
    if end - trail > start + lead:
        spans.append(Span(offset + start + lead, offset + end - trail))


# Dotted acronyms (U.S., U. S., e.g.) are one word; so are numbers with separators (1,000 and 3.5).
_WORD = re.compile(r"(?:[A-Za-z]\.[ ]?){1,}[A-Za-z]\.|[A-Za-z][A-Za-z'\-]*|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being it its this that
    these those there their they them he she his her we you your i our not no yes do does did done has have had
    which who whom whose what when where why how than then so such also about into over after before during
    while can could would should will may might must shall very more most other some any all each both only
    said says say according would based passage passages document documents text mentioned stated states""".split()
)
_STEMMER = PorterStemmer()


@lru_cache(maxsize=65536)
def normal_form(token: str) -> str:
    """One comparable form per word: lower-case, acronym dots and number commas dropped, number words
    as digits ("six" = "6"), and Porter-stemmed so "declared" meets "declare" and "forces" "force"."""
    token = token.lower().strip("'-")
    if _NUMBER.fullmatch(token):
        return token.replace(",", "")
    token = token.replace(".", "").replace(" ", "")
    if token in NUMBER_WORDS:
        return NUMBER_WORDS[token]
    if token.endswith("'s"):
        token = token[:-2]
    return _STEMMER.stem(token)


def word_tokens(text: str) -> list[str]:
    """The words of `text` as written: dotted acronyms and numbers with separators are one word each."""
    return _WORD.findall(text)


def content_words(text: str) -> set[str]:
    return {normal_form(w) for w in word_tokens(text) if w.lower() not in STOPWORDS}


def numbers(text: str) -> set[str]:
    found = {n.replace(",", "") for n in _NUMBER.findall(text)}
    return found | {NUMBER_WORDS[w.lower()] for w in word_tokens(text) if w.lower() in NUMBER_WORDS}


def names(text: str, known: set[str] = frozenset()) -> set[str]:
    """Capitalised words: names of people, places, organisations, months. A sentence's first word is
    a name only when it is an acronym or one of the `known` names (the question's): "Nigeria has..."
    after a question about Nigeria."""
    found = set()
    for span in split_sentences(text):
        words = word_tokens(text[span.start:span.end])
        for i, w in enumerate(words):
            if not w[0].isupper() or w.lower() in STOPWORDS:
                continue
            norm = normal_form(w)
            if i > 0 or norm in known or (len(w) > 1 and w.replace(".", "").isupper()):
                found.add(norm)
    return found


# Words of a question that name what kind of answer it wants, not the fact asked about.
QUESTION_WORDS = frozenset("name named many much kind type sort year percentage number".split())


def missing_words(question: str, evidence: str) -> list[str]:
    """The question's content words (in its order, once each) that the evidence sentence does not use,
    compared as content_words compares them (stemmed): where a near miss's swapped term shows ("president"
    against a passage naming the prime minister), and a paraphrase too, which the claim judge is left to tell."""
    have = content_words(evidence)
    out: list[str] = []
    for word in re.findall(r"[\w][\w'’.-]*[\w]|\w", question):
        stems = content_words(word)
        if stems and not stems <= have and word.lower() not in QUESTION_WORDS and word not in out:
            out.append(word)
    return out
