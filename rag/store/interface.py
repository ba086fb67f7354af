"""What the rest of the package uses of an index store: `Store`, met by `IndexStore` (FAISS files,
rag/store/faiss_index.py) and `PgStore` (PostgreSQL + pgvector, rag/store/postgres.py).

Readers (RAG, the retrievers, WholeCorpus, scope, evaluation) use `manifest` (generation, next_id, chunk
settings, stamp), `docs` ({doc id: DocRecord with chunk_ids}), `chunks` (a mapping {chunk id: Chunk}: len,
[id], values), `search` (dense), `lexical_search` (full text: BM25 in memory for FAISS, ts_rank in
PostgreSQL), `vectors`, `documents`, `counts`, `corpus_words`, `refresh` and `directory` (where llama.cpp
prompt states are kept). Writers change it only inside `writing()`: `reserve_ids`, `doc_for_source`,
`remove`, `add`, `set_content_hash`, `rekey` (a sync's moves, rag/store/moves.py), then `save`.
Everything outside `rag/store/` is typed against this protocol: no isinstance on a concrete store, no
private field, no file name of the FAISS layout.
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

    def set_content_hash(self, doc_id: str, digest: str) -> None:
        """Keep the hash of a just-added document's file, so a later sync can re-key it when it moves."""
        ...

    def rekey(self, old_id: str, new_id: str, new_source: str) -> DocRecord:
        """Give a document (which the store holds) a new id (which it does not) and source, on its record
        and every chunk; chunk ids and vectors are kept. Returns the new record."""
        ...

    def doc_for_source(self, source: str) -> str | None: ...

    def search(self, query: np.ndarray, k: int, within: frozenset[int] | None = None) -> list[tuple[Chunk, float]]: ...

    def vectors(self, ids: list[int]) -> np.ndarray | None: ...

    def lexical_search(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Chunk]:
        """Up to k chunks ranked by full text against the question, best first, only chunks sharing a
        word with it; with `within` (chunk ids), only those, filtered before ranking."""
        ...

    def documents(self) -> list[DocumentInfo]: ...

    def counts(self) -> tuple[int, int]:
        """(documents, chunks) the store holds."""
        ...

    @property
    def corpus_words(self) -> int:
        """Words of all documents, each chunk overlap counted once (`covered_words`): what WholeCorpus
        compares with corpus_max_words before reading any chunk."""
        ...


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
