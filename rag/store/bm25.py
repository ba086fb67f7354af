"""The FAISS store's full-text ranking (`IndexStore.lexical_search`): llama-index's BM25 retriever
(bm25s) over the store's chunks, built in memory and rebuilt when they change. PostgreSQL ranks full
text itself (`PgStore.lexical_search`, ts_rank); the hybrid retriever uses either through `Store`.

BM25 finds what embeddings blur: names, numbers, rare terms."""
from __future__ import annotations

from collections.abc import Hashable, Mapping

from rag.types import Chunk


class Bm25:
    """BM25 over a mapping of chunks, rebuilt lazily when `key` (the store's generation, next id and
    size) changes."""

    def __init__(self) -> None:
        self._bm25 = None
        self._key: Hashable | None = None
        self._ids: list[int] = []  # chunk id of each BM25 corpus row

    def search(self, chunks: Mapping[int, Chunk], key: Hashable, question: str, k: int,
               within: frozenset[int] | None = None) -> list[int]:
        """Ids of up to k chunks with a positive BM25 score for `question`, best first; with `within`,
        only among those ids (filtered before ranking)."""
        if k <= 0 or not chunks or (within is not None and not within):
            return []
        if self._bm25 is None or self._key != key:
            from llama_index.core.schema import TextNode
            from llama_index.retrievers.bm25 import BM25Retriever

            nodes = [TextNode(id_=str(c.id), text=c.text) for c in chunks.values()]
            self._bm25 = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=min(k, len(nodes)))
            self._ids = [c.id for c in chunks.values()]
            self._key = key
        self._bm25.similarity_top_k = min(k, len(chunks))
        # Scoped: bm25s multiplies each row's score by this mask before taking the top k, so the chunks
        # outside score 0 (dropped below) and the k come from the chosen ones; no rebuild, and the term
        # statistics stay the whole corpus's.
        self._bm25.corpus_weight_mask = None if within is None else [int(i in within) for i in self._ids]
        hits = [int(n.node.node_id) for n in self._bm25.retrieve(question) if (n.score or 0) > 0]
        return [i for i in hits if within is None or i in within]
