"""What the rest of the package uses of an index store: `Store`, met by `IndexStore` (FAISS files,
rag/store/faiss_index.py) and `PgStore` (PostgreSQL + pgvector, rag/store/postgres.py).

Readers (RAG, the retrievers, WholeCorpus, scope) use `manifest` (generation, next_id, chunk settings,
stamp), `docs` ({doc id: DocRecord with chunk_ids}), `chunks` (a mapping {chunk id: Chunk}: len, [id],
values), `search`, `vectors`, `documents`, `refresh` and `directory` (where llama.cpp prompt states are
kept). Writers change it only inside `writing()`: `reserve_ids`, `doc_for_source`, `remove`, `add`, then
`save`. A store may also rank full text itself (`lexical_search`, PostgreSQL); the hybrid retriever then
uses that instead of building BM25 in memory.
"""
from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.store.generations import DocRecord, Manifest
from rag.types import Chunk, DocumentInfo


class Store(Protocol):
    directory: Path
    manifest: Manifest
    docs: Mapping[str, DocRecord]
    chunks: Mapping[int, Chunk]

    @property
    def persisted(self) -> bool:
        """Whether the store exists outside this process yet (FAISS: a first save wrote the manifest)."""
        ...

    def refresh(self) -> bool: ...

    def writing(self) -> AbstractContextManager["Store"]: ...

    def save(self) -> None: ...

    def reserve_ids(self, count: int) -> int: ...

    def add(self, doc_id: str, source: str, chars: int, chunks: list[Chunk], vectors: np.ndarray) -> None: ...

    def remove(self, doc_id: str) -> DocRecord: ...

    def doc_for_source(self, source: str) -> str | None: ...

    def search(self, query: np.ndarray, k: int, within: frozenset[int] | None = None) -> list[tuple[Chunk, float]]: ...

    def vectors(self, ids: list[int]) -> np.ndarray | None: ...

    def documents(self) -> list[DocumentInfo]: ...


def covered_words(chunks: list[Chunk]) -> int:
    """Words of a document's chunks, each overlap counted once (what WholeCorpus compares with
    corpus_max_words); chunks in position order."""
    words, done = 0, -1
    for c in sorted(chunks, key=lambda c: c.start):
        if c.end > done:
            words += len(c.text[max(0, done - c.start):].split())
        done = max(done, c.end)
    return words


__all__ = ["Store", "covered_words"]
