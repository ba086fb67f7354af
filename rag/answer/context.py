"""Context: what the model is shown. `SentenceSelector` keeps only the sentences of each retrieved
chunk that bear on the question; `WholeCorpus` shows a small corpus whole, in a fixed order.

A short prompt is the cheapest speed-up on a CPU (prompt evaluation dominates time to first token)
and keeps a small model from being distracted. Each selected passage is still one contiguous span of
the source document, so citations keep exact character offsets.
"""
from __future__ import annotations

import numpy as np

from rag.errors import ConfigError
from rag.models.embedding import Embedder
from rag.store.interface import Store
from rag.text import content_words, split_sentences
from rag.types import Passage


class SentenceSelector:
    """For each passage: the sentence most similar to the question, widened with its neighbours up to
    `max_words`.

    A sentence's score is its cosine to the question plus `word_weight` times the share of the question's
    content words (stemmed, no stop words: `rag.text.content_words`) that it contains. Embeddings blur the
    names and rare terms a question asks about, as in retrieval (hence hybrid retrieval). Measured reason for
    the default 0.2: the gold answer is in the shown windows for 43 of COVID-59's items against 41 with cosine
    alone, 76 of SQuAD-150's 78 against 75, and answers are paired better (docs/notes/2026-12-05-document-piles-2.md).
    The embedder may be the index's own or its int8 copy (setting `sentence_embedder`)."""

    def __init__(self, embedder: Embedder, max_words: int = 60, word_weight: float = 0.0) -> None:
        if word_weight < 0:
            raise ConfigError(f"word_weight={word_weight} must be 0 or more")
        self.embedder = embedder
        self.max_words = max_words
        self.word_weight = word_weight

    def select(self, question: str, passages: list[Passage]) -> list[Passage]:
        spans = [split_sentences(p.text, offset=p.start) for p in passages]
        texts = [p.chunk.text[s.start - p.chunk.start:s.end - p.chunk.start] for p, ss in zip(passages, spans) for s in ss]
        if not texts:
            return passages
        sims = self.embedder.embed(texts) @ self.embedder.embed_query([question])[0]
        asked = content_words(question) if self.word_weight else set()
        if asked:
            sims = sims + self.word_weight * np.array([len(asked & content_words(t)) / len(asked) for t in texts],
                                                      dtype=np.float32)
        out: list[Passage] = []
        i = 0
        for p, ss in zip(passages, spans):
            local = sims[i:i + len(ss)]
            i += len(ss)
            if not ss:
                out.append(p)
                continue
            lo = hi = int(np.argmax(local))
            words = _words(p, ss[lo])
            while True:  # grow towards the more similar neighbour while the budget allows
                options = [j for j in (lo - 1, hi + 1) if 0 <= j < len(ss) and words + _words(p, ss[j]) <= self.max_words]
                if not options:
                    break
                j = max(options, key=lambda j: local[j])
                words += _words(p, ss[j])
                lo, hi = min(lo, j), max(hi, j)
            start, end = ss[lo].start, ss[hi].end
            text = p.chunk.text[start - p.chunk.start:end - p.chunk.start]
            out.append(Passage(chunk=p.chunk, score=p.score, text=text, start=start, end=end))
        return out


def _words(p: Passage, span) -> int:
    return len(p.chunk.text[span.start - p.chunk.start:span.end - p.chunk.start].split())


class WholeCorpus:
    """A corpus small enough for the prompt, shown whole: every relevant document as numbered passages
    of a few sentences, in a fixed order (by source, then position).

    The prompt then starts with the same long prefix for every question about the same documents, so
    llama.cpp evaluates them once and reuses its KV cache: later questions cost only their own tokens
    before the first word. Each passage is scored against the question (cosine, like retrieval) for
    the refusal gate and for reporting; the prompt keeps the fixed order whatever the scores.

    A document none of whose passages reaches `min_score` (the retrieval gate) is left out of the
    prompt, as retrieval would leave it out. Measured reason: with two unrelated uploads beside the
    seed article, the 1.5B model refused a question answered plainly in the article (refusal
    probability 0.27 -> 0.41); see docs/evaluation.md, "Unrelated documents beside the corpus"."""

    def __init__(self, store: Store, embedder: Embedder, max_words: int, passage_words: int = 50) -> None:
        self.store = store
        self.embedder = embedder
        self.max_words = max_words
        self.passage_words = passage_words
        self._key: tuple[int, int, int] | None = None
        self._passages: list[Passage] = []
        self._vectors: np.ndarray | None = None
        self._words = 0

    def _refresh(self) -> None:
        key = (self.store.manifest.generation, self.store.manifest.next_id, len(self.store.chunks))
        if key == self._key:
            return
        self._key = key
        self._words = 0
        self._passages, self._vectors = [], None
        # Size check first, before any chunk is read: the corpus counted without the chunks' overlap
        # (a database store keeps the count as it adds).
        self._words = self.store.corpus_words
        if self._words > self.max_words or not self.store.chunks:
            return
        chunks = sorted(self.store.chunks.values(), key=lambda c: (c.source, c.doc_id, c.start))
        covered: dict[str, int] = {}
        for c in chunks:
            done = covered.get(c.doc_id, -1)
            fresh = [s for s in split_sentences(c.text, offset=c.start) if s.start >= done]
            covered[c.doc_id] = max(done, c.end)
            group: list = []
            words = 0
            for s in fresh + [None]:
                n = 0 if s is None else len(c.text[s.start - c.start:s.end - c.start].split())
                if group and (s is None or words + n > self.passage_words):
                    start, end = group[0].start, group[-1].end
                    self._passages.append(Passage(chunk=c, score=0.0, text=c.text[start - c.start:end - c.start],
                                                  start=start, end=end))
                    group, words = [], 0
                if s is not None:
                    group.append(s)
                    words += n
        self._vectors = self.embedder.embed([p.text for p in self._passages])

    @property
    def words(self) -> int:
        self._refresh()
        return self._words

    def fits(self) -> bool:
        self._refresh()
        return bool(self._passages)

    def passages(self, question: str, min_score: float = 0.0, within: frozenset[str] | None = None) -> list[Passage]:
        """The passages of every document with one reaching `min_score`, in the fixed prompt order,
        each scored against the question. If no document has one, all of them: the gate refuses then.
        With `within` (doc ids), only those documents' passages, as if the corpus were only them."""
        self._refresh()
        if not self._passages:
            return []
        keep = [i for i, p in enumerate(self._passages) if within is None or p.chunk.doc_id in within]
        if not keep:
            return []
        scores = self._vectors[keep] @ self.embedder.embed_query([question])[0]
        scored = [Passage(chunk=p.chunk, score=float(s), text=p.text, start=p.start, end=p.end)
                  for p, s in zip((self._passages[i] for i in keep), scores)]
        relevant = {p.chunk.doc_id for p in scored if p.score >= min_score}
        return [p for p in scored if p.chunk.doc_id in relevant] or scored
