"""Citations: parse [n] markers, check each answer sentence against passages, decide support.

The support check is lexical and deterministic: a sentence is backed by a passage when the passage
holds every number in the sentence and most of its content words. This is what stops a small model's
"Paris" (from memory) from passing as an answer drawn from passages about something else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from rag.chunking import split_sentences
from rag.types import AnswerSentence, Passage

_MARKER = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:[.,]\d+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being it its this that
    these those there their they them he she his her we you your i our not no yes do does did done has have had
    which who whom whose what when where why how than then so such also about into over after before during
    while can could would should will may might must shall very more most other some any all each both only
    said says say according would based passage passages document documents text mentioned stated states""".split()
)
SUPPORT_THRESHOLD = 0.6


def _norm(token: str) -> str:
    token = token.lower().strip("'-")
    if _NUMBER.fullmatch(token):
        return token.replace(",", "")
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def content_words(text: str) -> set[str]:
    return {_norm(w) for w in _WORD.findall(text) if w.lower() not in STOPWORDS}


def numbers(text: str) -> set[str]:
    return {n.replace(",", "") for n in _NUMBER.findall(text)}


@dataclass(frozen=True)
class Support:
    passage: int  # 1-based passage number
    score: float


def names(text: str) -> set[str]:
    """Capitalised words that do not start a sentence: names of people, places, organisations."""
    found = set()
    for span in split_sentences(text):
        words = _WORD.findall(text[span.start:span.end])
        found |= {_norm(w) for w in words[1:] if w[0].isupper() and w.lower() not in STOPWORDS}
    return found


def support(sentence: str, passage_text: str, question: str = "") -> float:
    """How well a passage backs the new information of an answer sentence, 0..1.

    Words the sentence repeats from the question prove nothing, so only the rest is checked: every
    new number and name must be in the passage (else 0), and the score is the share of the new
    content words found there. "Paris" in reply to "What is the capital of France?" has one new
    word, absent from passages about Niger, and scores 0."""
    qwords = content_words(question)
    words = content_words(sentence) - qwords or content_words(sentence)
    if not words:
        return 0.0
    if not numbers(sentence) - numbers(question) <= numbers(passage_text):
        return 0.0
    pwords = content_words(passage_text)
    if not names(sentence) - qwords <= pwords:
        return 0.0
    return len(words & pwords) / len(words)


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


def parse_markers(text: str) -> list[int]:
    return [int(n) for group in _MARKER.findall(text) for n in re.split(r"\s*,\s*", group)]


def attribute(answer: str, passages: list[Passage], question: str = "",
              threshold: float = SUPPORT_THRESHOLD) -> tuple[str, list[AnswerSentence]]:
    """Clean the answer's markers and attach every sentence to the passages that support it.

    Markers pointing at no passage are dropped. A marked sentence keeps the cited passages that
    support it; when none of them does, or it has no marker, the best supporting passage is attached;
    when no passage supports it, it is kept but flagged unsupported."""
    sentences: list[AnswerSentence] = []
    pieces: list[str] = []
    for span in split_sentences(answer):
        raw = answer[span.start:span.end]
        plain = strip_markers(raw)
        if not plain or not content_words(plain):
            continue
        cited = [n for n in dict.fromkeys(parse_markers(raw)) if 1 <= n <= len(passages)]
        scores = {n: support(plain, passages[n - 1].text, question) for n in range(1, len(passages) + 1)}
        backed = tuple(n for n in cited if scores[n] >= threshold)
        if not backed:
            best = max(scores, key=lambda n: scores[n], default=None)
            backed = (best,) if best is not None and scores[best] >= threshold else ()
        sentences.append(AnswerSentence(text=plain, citations=backed, supported=bool(backed)))
        marks = "".join(f" [{n}]" for n in backed)
        pieces.append(plain[:-1] + marks + plain[-1] if plain[-1] in ".!?" else plain + marks)
    return " ".join(pieces), sentences
