"""Ingest executors: the load + chunk (+ embed) step of `RAG.add`, pluggable.

`RAG.add` is the one writer: it takes `PreparedFile`s from an executor, in file order, and applies and
saves them under the store's lock. `LocalExecutor` (the default) loads and chunks in this process and
leaves embedding to `RAG.add`'s batches; `RayExecutor` (rag/ingest/distributed.py, `ray_address`) loads,
chunks and embeds on the workers of a Ray cluster. Both go through `prepare_file`, so a file gets the
same document, chunks and failure reason either way. `executor_for(settings)` (in distributed.py) picks one.
"""
from __future__ import annotations

from collections.abc import Container, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from rag.errors import LoadError
from rag.ingest import loading
from rag.ingest.chunking import SentenceChunker
from rag.types import FileFailure, PreparedFile

if TYPE_CHECKING:  # pragma: no cover
    from rag.ingest.ocr import OcrEngine
    from rag.models.embedding import Embedder


class IngestExecutor(Protocol):
    def prepare(self, files: Sequence[Path], limits: loading.Limits, chunker: SentenceChunker,
                known: Container[str], max_chunks: int) -> Iterator[PreparedFile]:
        """One PreparedFile per file, in the order of `files`, lazily. A document whose id is in
        `known` comes back without chunks (RAG.add counts it unchanged)."""
        ...


def prepare_file(path: Path, limits: loading.Limits, chunker: SentenceChunker, known: Container[str],
                 max_chunks: int, ocr: "OcrEngine | None" = None) -> PreparedFile:
    """Load and chunk one file; a LoadError or too many chunks is a failure naming the file and why.
    `ocr` reads PDF pages without a text layer (None: such pages are not read)."""
    try:
        doc = loading.load(path, limits, ocr)
        if doc.id in known:
            return PreparedFile(str(path), doc)
        chunks = chunker.split(doc)
    except LoadError as exc:
        return PreparedFile(str(path), failure=FileFailure(path=exc.path, reason=exc.reason))
    if len(chunks) > max_chunks:
        return PreparedFile(str(path), failure=FileFailure(
            path=str(path), reason=f"splits into {len(chunks):,} chunks, more than the "
                                   f"{max_chunks:,} limit (setting max_file_chunks)"))
    return PreparedFile(str(path), doc, tuple(chunks))


def prepare_and_embed(files: Sequence[Path], limits: loading.Limits, chunker: SentenceChunker,
                      known: Container[str], max_chunks: int, embedder: "Embedder",
                      ocr: "OcrEngine | None" = None) -> list[PreparedFile]:
    """`prepare_file` for each file, then the chunks of all of them embedded in one call (what a
    distributed worker does with its share of the files)."""
    prepared = [prepare_file(Path(f), limits, chunker, known, max_chunks, ocr) for f in files]
    texts = [c.text for p in prepared for c in p.chunks]
    vectors = embedder.embed(texts) if texts else np.zeros((0, embedder.dim), dtype=np.float32)
    out, at = [], 0
    for p in prepared:
        if p.chunks:
            p = PreparedFile(p.path, p.doc, p.chunks, vectors[at:at + len(p.chunks)].copy(), p.failure)
            at += len(p.chunks)
        out.append(p)
    return out


class LocalExecutor:
    """In this process, one file at a time; `RAG.add` embeds the chunks of several files per call."""

    def __init__(self, ocr: "OcrEngine | None" = None) -> None:
        self.ocr = ocr

    def prepare(self, files: Sequence[Path], limits: loading.Limits, chunker: SentenceChunker,
                known: Container[str], max_chunks: int) -> Iterator[PreparedFile]:
        for path in files:
            yield prepare_file(path, limits, chunker, known, max_chunks, self.ocr)

