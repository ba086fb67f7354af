"""Context selection: keep only the sentences of each retrieved chunk that bear on the question.

A short prompt is the cheapest speed-up on a CPU (prompt evaluation dominates time to first token)
and keeps a small model from being distracted. Each selected passage is still one contiguous span of
the source document, so citations keep exact character offsets.
"""
from __future__ import annotations

import numpy as np

from rag.chunking import split_sentences
from rag.embedding import Embedder
from rag.types import Passage


class SentenceSelector:
    """For each passage: the sentence most similar to the question, widened with its neighbours up to
    `max_words`."""

    def __init__(self, embedder: Embedder, max_words: int = 60) -> None:
        self.embedder = embedder
        self.max_words = max_words

    def select(self, question: str, passages: list[Passage]) -> list[Passage]:
        spans = [split_sentences(p.text, offset=p.start) for p in passages]
        texts = [p.chunk.text[s.start - p.chunk.start:s.end - p.chunk.start] for p, ss in zip(passages, spans) for s in ss]
        if not texts:
            return passages
        vectors = self.embedder.embed([question] + texts)
        sims = vectors[1:] @ vectors[0]
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
