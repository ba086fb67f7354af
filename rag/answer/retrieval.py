"""Retrieval: question -> top-k Passages, best first.

`Passage.score` is always the cosine similarity of the question and the chunk, whatever decided the
order, so the refusal gate reads one calibrated number.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from rag.errors import ConfigError
from rag.models.embedding import Embedder
from rag.store.interface import Store
from rag.types import Chunk, Passage


class Retriever(Protocol):
    def retrieve(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Passage]:
        """The top k passages, best first; with `within`, only among those chunk ids (filtered before
        ranking, so the k come from them)."""
        ...


def stored_vectors(store: Store, embedder: Embedder, chunks: list[Chunk]) -> np.ndarray:
    """The chunks' vectors from the index; re-embedded only where FAISS cannot reconstruct (IVF)."""
    vectors = store.vectors([c.id for c in chunks])
    if vectors is None:
        vectors = embedder.embed([c.text for c in chunks])
    return np.asarray(vectors, np.float32)


class DenseRetriever:
    """Cosine similarity over the store's vectors (inner product of normalised vectors)."""

    def __init__(self, store: Store, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    def retrieve(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Passage]:
        vector = self.embedder.embed_query([question])[0]
        return [Passage.of(chunk, score) for chunk, score in self.store.search(vector, k, within)]


def reciprocal_rank_fusion(rankings: list[list[int]], k: int, rrf_k: int = 60) -> list[int]:
    """Fuse ranked id lists: score(id) = sum of 1 / (rrf_k + rank). Ties keep first-list order."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (rrf_k + rank)
    order: dict[int, int] = {}
    for ranking in rankings:
        for item in ranking:
            order.setdefault(item, len(order))
    return sorted(scores, key=lambda i: (-scores[i], order[i]))[:k]


class HybridRetriever:
    """Dense results fused with the store's full-text ranking (`Store.lexical_search`: BM25 for FAISS,
    ts_rank in PostgreSQL) by reciprocal rank. Full text finds what embeddings blur: names, numbers,
    rare terms."""

    def __init__(self, store: Store, embedder: Embedder, pool: int = 3, rrf_k: int = 60) -> None:
        self.store = store
        self.embedder = embedder
        self.pool = pool
        self.rrf_k = rrf_k

    def retrieve(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Passage]:
        if not self.store.chunks or (within is not None and not within):
            return []
        qv = self.embedder.embed_query([question])[0]
        pool = k * self.pool
        dense = self.store.search(qv, pool, within)
        cosine = {c.id: s for c, s in dense}
        rankings = [[c.id for c, _ in dense], [c.id for c in self.store.lexical_search(question, pool, within)]]
        fused = reciprocal_rank_fusion(rankings, k, self.rrf_k)
        missing = [i for i in fused if i not in cosine]
        if missing:  # full-text-only hits: score them on the same cosine scale as the rest
            vectors = stored_vectors(self.store, self.embedder, [self.store.chunks[i] for i in missing])
            cosine.update({i: float(np.dot(v, qv)) for i, v in zip(missing, vectors)})
        chunks: list[Chunk] = [self.store.chunks[i] for i in fused]
        return [Passage.of(c, cosine[c.id]) for c in chunks]


def mmr_order(relevance: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> list[int]:
    """Maximal marginal relevance: pick, one at a time, the candidate with the best
    (1 - diversity) * relevance - diversity * (highest cosine to a candidate already picked)."""
    n = len(relevance)
    if n == 0:
        return []
    picked = [int(np.argmax(relevance))]
    sims = vectors @ vectors.T
    while len(picked) < min(k, n):
        closest = sims[:, picked].max(axis=1)
        score = (1.0 - diversity) * relevance - diversity * closest
        score[picked] = -np.inf
        picked.append(int(np.argmax(score)))
    return picked


class DiverseRetriever:
    """MMR over a larger pool from another retriever, so near-duplicate passages (overlapping chunks,
    repeated boilerplate) do not fill all k slots.

    Relevance is the pool's own order (1 for the first, falling linearly to 0 for the last), not the
    cosine, so a hybrid pool keeps what BM25 contributed; `diversity` 0 returns the pool's top k."""

    def __init__(self, base: Retriever, store: Store, embedder: Embedder, diversity: float, pool: int = 3) -> None:
        if not 0.0 <= diversity < 1.0:
            raise ConfigError(f"diversity={diversity} is out of range; use 0 (off) up to below 1")
        self.base = base
        self.store = store
        self.embedder = embedder
        self.diversity = diversity
        self.pool = pool

    def retrieve(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Passage]:
        candidates = self.base.retrieve(question, k * self.pool, within)
        if len(candidates) <= 1 or self.diversity == 0.0:
            return candidates[:k]
        vectors = stored_vectors(self.store, self.embedder, [p.chunk for p in candidates])
        n = len(candidates)
        relevance = 1.0 - np.arange(n, dtype=np.float32) / (n - 1)
        return [candidates[i] for i in mmr_order(relevance, vectors, k, self.diversity)]


class RewritingRetriever:
    """Searches with a rewritten query (e.g. HyDE's question + hypothetical answer), then scores the
    passages against the question as typed, so `Passage.score` stays the question's cosine."""

    def __init__(self, base: Retriever, rewrite: Callable[[str], str], store: Store, embedder: Embedder) -> None:
        self.base = base
        self.rewrite = rewrite
        self.store = store
        self.embedder = embedder

    def retrieve(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Passage]:
        passages = self.base.retrieve(self.rewrite(question), k, within)
        if not passages:
            return passages
        scores = stored_vectors(self.store, self.embedder, [p.chunk for p in passages]) @ self.embedder.embed_query([question])[0]
        return [Passage.of(p.chunk, float(s)) for p, s in zip(passages, scores)]
