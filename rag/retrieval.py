"""Retrieval: question -> top-k Passages from the store, best first."""
from __future__ import annotations

from rag.embedding import Embedder
from rag.store import IndexStore
from rag.types import Passage


class DenseRetriever:
    """Cosine similarity over the FAISS index (inner product of normalised MiniLM vectors)."""

    def __init__(self, store: IndexStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    def retrieve(self, question: str, k: int) -> list[Passage]:
        vector = self.embedder.embed([question])[0]
        return [Passage.of(chunk, score) for chunk, score in self.store.search(vector, k)]
