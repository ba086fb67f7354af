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
from rag.text import content_words, names, normal_form, numbers, split_sentences, word_tokens
from rag.types import AnswerSentence, Chunk, Passage

if TYPE_CHECKING:  # pragma: no cover
    from rag.models.embedding import Embedder

_MARKER = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")
# A marker put after the sentence's end ("... Niger. [2]") belongs to that sentence: moved before the stop.
_MARKER_AFTER_STOP = re.compile(r"([.!?])((?:\s*\[\d+(?:\s*,\s*\d+)*\])+)")
SUPPORT_THRESHOLD = 0.6


@dataclass(frozen=True)
class Evidence:
    """The words a support check compares: one passage, or the union of the passages a sentence cites."""

    words: frozenset[str]
    numbers: frozenset[str]

    @classmethod
    def of(cls, *texts: str) -> "Evidence":
        joined = "\n".join(texts)
        return cls(words=frozenset(content_words(joined)), numbers=frozenset(numbers(joined)))

    def __or__(self, other: "Evidence") -> "Evidence":
        return Evidence(self.words | other.words, self.numbers | other.numbers)


@dataclass(frozen=True)
class Check:
    """Why a sentence is or is not backed by some evidence."""

    share: float  # share of the sentence's new content words (not echoed from the question) found
    missing: tuple[str, ...]  # names and numbers of the sentence that the evidence lacks

    @property
    def gates_ok(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class SupportRules:
    """How strict the support check is. `threshold`: share of the sentence's new content words the
    evidence must hold. `whole_share`: share of all its content words, question words included, the
    evidence must hold (0 = not checked), so an answer that pins the question's subject on a passage
    about something else ("The name of the president is Ali Lamine Zeine", cited to a passage about the
    prime minister) fails. `question_names`: where a name the question used may be found when the cited
    passage lacks it: "cited" (only the cited passages, the default) or "shown" (any passage the model
    was shown). The defaults are the best of `bench/support_ablation.py` over the seed, SQuAD and COVID
    runs (docs/evaluation.md)."""

    threshold: float = SUPPORT_THRESHOLD
    whole_share: float = 0.0
    question_names: str = "cited"
    # A sentence nearly all of whose words the evidence holds is backed even when one of its few new
    # words is missing ("built" where the passage says "establish"): new-word share max'ed with the
    # whole share at or above this (> 1 = off).
    whole_enough: float = 0.75

    def __post_init__(self) -> None:
        if self.question_names not in ("shown", "cited"):
            raise ValueError(f"question_names={self.question_names!r}; use shown or cited")


class SupportChecker:
    """Checks answer sentences against passages for one question.

    A sentence is backed by evidence when (1) every number and name in it is in the evidence (the
    cited passages), also those it repeats from the question: "Nigeria" for "Niger", after a bad
    follow-up rewrite, is never backed; and (2) most of its new content words are. Words repeated from
    the question prove nothing, so the share counts only the rest; a sentence that adds nothing new is
    judged on all its words. `SupportRules` sets how strict each part is."""

    def __init__(self, passages: list[Passage], question: str = "", rules: SupportRules = SupportRules()) -> None:
        self.rules = rules
        self.threshold = rules.threshold
        self.passages = [Evidence.of(p.text) for p in passages]
        self.everything = Evidence.of(*(p.text for p in passages)) if passages else Evidence(frozenset(), frozenset())
        self.qwords = content_words(question)
        self.qnumbers = numbers(question)
        self.qnames = names(question) | {normal_form(w) for w in word_tokens(question) if w[0].isupper()}

    def check(self, sentence: str, evidence: Evidence) -> Check:
        words = content_words(sentence)
        new = words - self.qwords or words
        share = len(new & evidence.words) / len(new) if new else 0.0
        # A sentence that brings a new name or number found in the evidence ("In October, ...") is
        # anchored: its rephrased words ("formally called" for "officially declared") are then judged
        # among all its words, not only the few new ones.
        anchors = (numbers(sentence) - self.qnumbers) | (names(sentence, self.qnames) - self.qwords)
        whole = len(words & evidence.words) / len(words) if words else 0.0
        if anchors and anchors <= (evidence.numbers | evidence.words):
            share = max(share, whole)
        if whole >= self.rules.whole_enough and new & evidence.words:
            share = max(share, whole)
        if whole < self.rules.whole_share:
            share = min(share, whole)
        elsewhere = self.everything if self.rules.question_names == "shown" else evidence
        missing = []
        for n in sorted(numbers(sentence)):
            if n not in evidence.numbers and not (n in self.qnumbers and n in elsewhere.numbers):
                missing.append(n)
        for name in sorted(names(sentence, self.qnames)):
            if not _has_name(name, evidence.words) and not (name in self.qwords and _has_name(name, elsewhere.words)):
                missing.append(name)
        return Check(share=share, missing=tuple(missing))

    def score(self, sentence: str, evidence: Evidence) -> float:
        check = self.check(sentence, evidence)
        return check.share if check.gates_ok else 0.0


def _has_name(name: str, words: frozenset[str]) -> bool:
    """The name, or its place/people pair by the regular -n/-an suffix (Russia/Russian,
    America/American, Africa/African); "Nigeria" never matches "Niger"."""
    if name in words:
        return True
    return any(w in words for w in (name[:-1], name[:-2]) if len(w) >= 4 and name.endswith(("n",)) ) or \
        any(name + suffix in words for suffix in ("n", "an"))


def support(sentence: str, passage_text: str, question: str = "") -> float:
    """How well one passage backs the new information of an answer sentence, 0..1 (0 when a number
    or name of the sentence is not in the passage). "Paris" in reply to "What is the capital of
    France?" has one new word, absent from passages about Niger, and scores 0."""
    passage = Passage.of(Chunk(id=0, doc_id="", source="", text=passage_text, start=0, end=len(passage_text)), 0.0)
    checker = SupportChecker([passage], question)
    return checker.score(sentence, checker.passages[0])


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


def markers_before_stops(text: str) -> str:
    """A marker put after a sentence's stop ("... Niger. [2]") moved before it ("... Niger [2].") so it
    stays with that sentence; the length is unchanged, so offsets into the text still hold."""
    return _MARKER_AFTER_STOP.sub(lambda m: m.group(2) + m.group(1), text)


def parse_markers(text: str) -> list[int]:
    return [int(n) for group in _MARKER.findall(text) for n in re.split(r"\s*,\s*", group)]


def attribute(answer: str, passages: list[Passage], question: str = "",
              rules: SupportRules = SupportRules(),
              semantic: SemanticSupport | None = None) -> tuple[str, list[AnswerSentence]]:
    """Attach every sentence of the answer to the passages that support it, and write the markers.

    The text the user reads is the model's own, cut only at real sentence ends (the same
    abbreviation-aware splitter as the documents, so "U.S." stays whole): its markers are removed
    and the verified ones are put back before each sentence's final stop. A sentence keeps the cited
    passages that back it; when none does, or it has no marker, the best backing passage is attached;
    failing that, two passages together (a sentence may join two facts). With no backing it is kept
    but flagged unsupported. With `semantic`, a sentence whose numbers and names check out and whose
    word share is near the threshold is also backed by a passage holding a sentence close in meaning."""
    checker = SupportChecker(passages, question, rules)
    answer = markers_before_stops(answer.strip())
    sentences: list[AnswerSentence] = []
    out: list[str] = []
    cursor = 0
    for span in split_sentences(answer):
        raw = answer[span.start:span.end]
        plain = strip_markers(raw)
        out.append(answer[cursor:span.start] if out else "")
        cursor = span.end
        if not plain or not content_words(plain):
            continue  # a bare marker, or talk about the passages ("This is stated in the passage.")
        cited = [n for n in dict.fromkeys(parse_markers(raw)) if 1 <= n <= len(passages)]
        backed = _backing(plain, cited, checker, passages, semantic)
        sentence = AnswerSentence(text=plain, citations=backed, supported=bool(backed))
        sentences.append(sentence)
        out.append(marked(sentence))
    return re.sub(r"[ \t]{2,}", " ", "".join(out)).strip(), sentences


def marked(sentence: AnswerSentence) -> str:
    """The sentence as the reader sees it: its verified markers before its final stop."""
    plain = sentence.text
    marks = "".join(f" [{n}]" for n in sentence.citations)
    return plain[:-1].rstrip() + marks + plain[-1] if plain and plain[-1] in ".!?" else plain + marks


def _backing(sentence: str, cited: list[int], checker: SupportChecker, passages: list[Passage],
             semantic: SemanticSupport | None) -> tuple[int, ...]:
    """The passage numbers that back `sentence`: the cited ones that do, else the best single one,
    else the best pair; () when nothing does."""
    threshold = checker.threshold

    def score(n: int) -> float:
        ev = checker.passages[n - 1]
        check = checker.check(sentence, ev)
        share = check.share
        if check.gates_ok and share < threshold and semantic is not None and share >= semantic.floor \
                and semantic.similarity(sentence, passages[n - 1].text) >= semantic.min_cosine:
            share = threshold
        return share if check.gates_ok else 0.0

    scores = {n: score(n) for n in range(1, len(passages) + 1)}
    backed = tuple(n for n in cited if scores[n] >= threshold)
    if backed:
        return backed
    best = max(scores, key=lambda n: scores[n], default=None)
    if best is not None and scores[best] >= threshold:
        return (best,)
    # Two passages together: the cited ones first, then the best-scoring candidates.
    candidates = list(dict.fromkeys([*cited, *sorted(scores, key=lambda n: -scores[n])[:4]]))
    for i, a in enumerate(candidates):
        for b in candidates[i + 1:]:
            if checker.score(sentence, checker.passages[a - 1] | checker.passages[b - 1]) >= threshold:
                return tuple(sorted((a, b)))
    return ()
