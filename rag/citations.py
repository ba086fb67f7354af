"""Citations: parse [n] markers, check each answer sentence against passages, decide support.

The support check is lexical and deterministic: a sentence is backed by a passage when the passage
holds every number in the sentence and most of its content words. Optionally (`SemanticSupport`),
a paraphrase with somewhat fewer shared words is accepted when it is close in meaning to a sentence
of the passage; numbers and names are still checked exactly. This is what stops a small model's
"Paris" (from memory) from passing as an answer drawn from passages about something else.
"""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rag.chunking import split_sentences
from rag.types import AnswerSentence, Passage

if TYPE_CHECKING:  # pragma: no cover
    from rag.embedding import Embedder

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
    gates_ok, share = _lexical(sentence, passage_text, question)
    return share if gates_ok else 0.0


def _lexical(sentence: str, passage_text: str, question: str) -> tuple[bool, float]:
    """(every new number and name is in the passage, share of new content words found there)."""
    qwords = content_words(question)
    words = content_words(sentence) - qwords or content_words(sentence)
    if not words:
        return False, 0.0
    pwords = content_words(passage_text)
    share = len(words & pwords) / len(words)
    if not numbers(sentence) - numbers(question) <= numbers(passage_text):
        return False, share
    if not names(sentence) - qwords <= pwords:
        return False, share
    return True, share


class SemanticSupport:
    """The embedding half of the support check: a paraphrase shares fewer words with its passage
    than a copy does, so a sentence whose numbers and names all check out but whose word share is
    between `floor` and the lexical threshold still counts as supported when it is close in meaning
    (cosine >= `min_cosine`) to one sentence of the passage. It never overrides a wrong number or name."""

    CACHE_PASSAGES = 256  # passages' sentence vectors kept; the same passages come back question after question

    def __init__(self, embedder: "Embedder", min_cosine: float = 0.75, floor: float = 0.34) -> None:
        self.embedder = embedder
        self.min_cosine = min_cosine
        self.floor = floor
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def _passage_vectors(self, passage_text: str) -> np.ndarray:
        vectors = self._cache.get(passage_text)
        if vectors is None:
            spans = split_sentences(passage_text)
            vectors = self.embedder.embed([passage_text[sp.start:sp.end] for sp in spans] or [passage_text])
            self._cache[passage_text] = vectors
            if len(self._cache) > self.CACHE_PASSAGES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(passage_text)
        return vectors

    def similarity(self, sentence: str, passage_text: str) -> float:
        passage = self._passage_vectors(passage_text)
        return float((passage @ self.embedder.embed([sentence])[0]).max())


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text).strip()


def parse_markers(text: str) -> list[int]:
    return [int(n) for group in _MARKER.findall(text) for n in re.split(r"\s*,\s*", group)]


def attribute(answer: str, passages: list[Passage], question: str = "",
              threshold: float = SUPPORT_THRESHOLD,
              semantic: SemanticSupport | None = None) -> tuple[str, list[AnswerSentence]]:
    """Clean the answer's markers and attach every sentence to the passages that support it.

    Markers pointing at no passage are dropped. A marked sentence keeps the cited passages that
    support it; when none of them does, or it has no marker, the best supporting passage is attached;
    when no passage supports it, it is kept but flagged unsupported. With `semantic`, a sentence
    whose numbers and names check out and whose word share is near the threshold is also supported
    by a passage that holds a sentence close to it in meaning."""
    sentences: list[AnswerSentence] = []
    pieces: list[str] = []
    for span in split_sentences(answer):
        raw = answer[span.start:span.end]
        plain = strip_markers(raw)
        if not plain or not content_words(plain):
            continue
        cited = [n for n in dict.fromkeys(parse_markers(raw)) if 1 <= n <= len(passages)]
        scores = {}
        for n in range(1, len(passages) + 1):
            gates_ok, share = _lexical(plain, passages[n - 1].text, question)
            if gates_ok and share < threshold and semantic is not None and share >= semantic.floor \
                    and semantic.similarity(plain, passages[n - 1].text) >= semantic.min_cosine:
                share = threshold
            scores[n] = share if gates_ok else 0.0
        backed = tuple(n for n in cited if scores[n] >= threshold)
        if not backed:
            best = max(scores, key=lambda n: scores[n], default=None)
            backed = (best,) if best is not None and scores[best] >= threshold else ()
        sentences.append(AnswerSentence(text=plain, citations=backed, supported=bool(backed)))
        marks = "".join(f" [{n}]" for n in backed)
        pieces.append(plain[:-1] + marks + plain[-1] if plain[-1] in ".!?" else plain + marks)
    return " ".join(pieces), sentences
