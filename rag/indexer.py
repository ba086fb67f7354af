"""Indexing, the half of `RAG` that writes the index: files added, folders synced, documents deleted.

    add:  paths -> executor.prepare (load, chunk, maybe embed) -> Embedder.embed (~EMBED_BATCH_CHUNKS
          chunks of many files at once) -> under store.writing(): ids handed out, applied, saved
    sync: folders -> folders.scan -> moves.retire (removed, re-keyed) -> save -> add (new, changed files)
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from rag.config import Settings
from rag.ingest import loading
from rag.ingest.chunking import SentenceChunker
from rag.ingest.distributed import executor_for
from rag.ingest.executors import IngestExecutor
from rag.ingest.folders import file_hashes
from rag.ingest.folders import scan as folders_scan
from rag.ingest.ocr import OcrEngine
from rag.models.embedding import Embedder
from rag.store import moves
from rag.store.interface import Store
from rag.types import (
    Chunk,
    Document,
    DocumentInfo,
    FileFailure,
    IngestEvent,
    IngestReport,
    PreparedFile,
    SyncReport,
)

# Chunks embedded per model call while ingesting many files (a few full batches of 64).
EMBED_BATCH_CHUNKS = 256

Pending = tuple[Document, list[Chunk], "np.ndarray | None"]


@dataclass
class IngestRun:
    """The bookkeeping of one `add`: the report, the files counted so far, the events told, and the
    files read but not yet embedded and saved."""

    report: IngestReport
    total: int
    on_event: Callable[[IngestEvent], None] | None
    done: int = 0
    pending: list[Pending] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)  # documents read in this run (the same file given twice)

    def tell(self, step: str, path: str, reason: str = "", info: DocumentInfo | None = None) -> None:
        if self.on_event is not None:
            self.on_event(IngestEvent(step, path, self.done, self.total, reason, info))  # type: ignore[arg-type]

    def failed(self, path: str, reason: str) -> None:
        self.report.failed.append(FileFailure(path=path, reason=reason))
        self.done += 1
        self.tell("failed", path, reason)

    def unchanged(self, doc_id: str, path: str) -> None:
        self.report.unchanged.append(doc_id)
        self.done += 1
        self.tell("unchanged", path)

    def stored(self, outcomes: list[tuple[str, DocumentInfo]]) -> None:
        """Count the files just saved (only now: after a Ctrl-C, those told as added are the ones kept)."""
        for step, info in outcomes:
            if step == "unchanged":  # another process saved the same file meanwhile
                self.report.unchanged.append(info.id)
            else:
                getattr(self.report, step).append(info)
            self.done += 1
            self.tell(step, info.source, info=info)

    def pending_chunks(self) -> int:
        return sum(len(chunks) for _, chunks, _ in self.pending)


class Indexer:
    """Writes one store. `lock`: serialises this process's writers and readers of the store (shared
    with the asker, rag/asker.py); another process is kept out by `store.writing()`."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, *,
                 lock: threading.RLock | None = None) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        m = store.manifest
        # The index's own chunk settings win over the current config, so one index is chunked one way.
        self.chunker = SentenceChunker(m.chunk_size, m.chunk_overlap)
        self.lock = lock or threading.RLock()
        # its models load on the first scanned page; pages read are kept for the UI's page view
        self.ocr = OcrEngine.of(settings) if settings.ocr else None
        self.executor: IngestExecutor = executor_for(settings, self.ocr)  # load+chunk(+embed): here, or on Ray

    def refresh(self) -> None:
        """Serve what another process has saved (`rag ingest` while `rag serve` runs): one small file
        read before each read of the store, and a reload in place when it names a newer generation.
        In place, so the retrievers and WholeCorpus holding the store see it. Call under `lock`."""
        if self.store.refresh():
            m = self.store.manifest
            self.chunker = SentenceChunker(m.chunk_size, m.chunk_overlap)

    def documents(self) -> list[DocumentInfo]:
        with self.lock:
            self.refresh()
            return self.store.documents()

    # -- add ----------------------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path], *, progress: bool = False, only_supported: bool = False,
            on_event: Callable[[IngestEvent], None] | None = None,
            executor: IngestExecutor | None = None) -> IngestReport:
        """See RAG.add."""
        return self.add_files(list(loading.discover(paths)), IngestReport(), progress, only_supported, on_event,
                              executor)

    def add_files(self, files: list[Path], report: IngestReport, progress: bool, only_supported: bool,
                  on_event: Callable[[IngestEvent], None] | None,
                  executor: IngestExecutor | None = None) -> IngestReport:
        """`add` on files already found (a file gone meanwhile is named as failed, not an InputError)."""
        if only_supported:
            files = [f for f in files if f.suffix.lower() in loading.SUPPORTED_EXTENSIONS]
        limits = replace(loading.Limits.of(self.settings), table_words=self.chunker.size)  # a table block, one chunk
        run = IngestRun(report, len(files), on_event)
        with self.lock:
            self.refresh()  # what other processes saved counts as unchanged too
            known = self._known_ids(files, limits.max_bytes)
            prepared = (executor or self.executor).prepare([f for f, i in zip(files, known) if i is None], limits,
                                                           self.chunker, self.store.docs, self.settings.max_file_chunks)
            try:
                for path, known_id in zip(files, known):
                    self._take(run, path, known_id, prepared, progress)
                self._flush(run, progress)
            finally:
                getattr(prepared, "close", lambda: None)()  # a distributed executor frees its workers
            if not self.store.persisted:
                with self.store.writing():
                    self.store.save()
        return report

    def _known_ids(self, files: list[Path], max_bytes: int) -> list[str | None]:
        """Each file's id if the store holds it already (unchanged: never handed to the executor, so
        nothing is parsed, chunked or embedded for it), else None. The id needs only path and bytes."""
        ids = [loading.file_id(f, max_bytes) for f in files]
        return [i if i is not None and i in self.store.docs else None for i in ids]

    def _take(self, run: IngestRun, path: Path, known_id: str | None, prepared: Iterator[PreparedFile],
              progress: bool) -> None:
        """One file, in file order: unchanged, failed, or read (pending; embedded and saved per batch)."""
        run.tell("reading", str(path))
        if known_id is not None:
            run.unchanged(known_id, str(path))
            return
        try:
            item = next(prepared)  # chunk ids 0..n-1 until _apply numbers them
        except BaseException:  # Ctrl-C or a crash on this file: keep the files read before it
            self._flush(run, progress)
            raise
        if item.failure is not None:
            run.failed(item.failure.path, item.failure.reason)
            return
        doc = item.doc
        assert doc is not None
        if doc.id in self.store.docs or doc.id in run.seen:
            run.unchanged(doc.id, str(path))
            return
        run.seen.add(doc.id)
        if doc.partial:  # e.g. its OCR budget ran out: the pages read are indexed, and it is named
            run.report.partial.append(FileFailure(path=str(path), reason=doc.partial))
        run.pending.append((doc, list(item.chunks), item.vectors))
        if run.pending_chunks() >= EMBED_BATCH_CHUNKS:
            self._flush(run, progress)

    def _flush(self, run: IngestRun, progress: bool) -> None:
        """Embed the pending files, apply and save them under the lock, and only then count them."""
        embedded = self._embed(run.pending, progress)
        if not embedded:
            return
        with self.store.writing():
            stored = self._apply(embedded)
            if any(step != "unchanged" for step, _ in stored):
                self.store.save()
        run.stored(stored)

    # -- sync ---------------------------------------------------------------------------------
    def sync(self, folders: Iterable[str | Path], *, changed: Iterable[str | Path] | None = None,
             progress: bool = False, only_supported: bool = False,
             on_event: Callable[[IngestEvent], None] | None = None) -> SyncReport:
        """Make the index match `folders`: new and changed files added (add), documents of files gone
        from them removed, a moved or renamed file re-keyed to its new path without re-embedding (same
        bytes and type). Documents outside the folders are never touched. With `changed` (paths from a
        watcher), only those paths are looked at. Removals and moves are saved first, under the lock."""
        found = folders_scan(folders, changed, skip_under=self.store.directory.resolve())
        report = SyncReport()
        with self.lock:
            self.refresh()
            hashes = {}
            if any(r.content_hash for r in moves.vanished(self.store, found)):  # else no move to find
                hashes = file_hashes((f for f in found.files if self.store.doc_for_source(str(f.resolve())) is None),
                                     loading.Limits.of(self.settings).max_bytes)
            with self.store.writing():
                report.moved, report.removed = moves.retire(self.store, found, hashes)
                if report.moved or report.removed:
                    self.store.save()
            for m in report.moved:
                if on_event is not None:
                    on_event(IngestEvent("moved", m.info.source, 0, 0, info=m.info, previous=m.old_source))
            for info in report.removed:
                if on_event is not None:
                    on_event(IngestEvent("removed", info.source, 0, 0, info=info))
            kept, at = {m.info.id for m in report.moved}, {m.info.source for m in report.moved}

            def tell(event: IngestEvent) -> None:  # a moved file is found unchanged at its new path
                if on_event is not None and not (event.step == "unchanged" and event.path in at):
                    on_event(event)

            self.add_files(found.files, report, progress, only_supported, tell)
        report.unchanged = [i for i in report.unchanged if i not in kept]
        return report

    def _embed(self, pending: list[tuple[Document, list[Chunk], np.ndarray | None]], progress: bool
               ) -> list[tuple[Document, list[Chunk], np.ndarray]]:
        """Embed the chunks of several files in one call (the model is ~99% of ingest time and works
        best on full, length-sorted batches); files the executor embedded keep their vectors. Empties `pending`."""
        if not pending:
            return []
        texts = [c.text for _, chunks, given in pending if given is None for c in chunks]
        vectors = self.embedder.embed(texts, progress=progress) if any(g is None for *_, g in pending) else None
        out, at = [], 0
        for doc, chunks, given in pending:
            if given is None:
                given = vectors[at:at + len(chunks)]
                at += len(chunks)
            out.append((doc, chunks, given))
        pending.clear()
        return out

    def _apply(self, embedded: list[tuple[Document, list[Chunk], np.ndarray]]) -> list[tuple[str, DocumentInfo]]:
        """Add embedded documents to the store, which writing() has just brought up to date: fresh ids
        for their chunks; a document with the same source replaced; one that another process added
        meanwhile left as it is. Returns ("added" | "replaced" | "unchanged", info) for each document."""
        stored: list[tuple[str, DocumentInfo]] = []
        for doc, chunks, vectors in embedded:
            info = DocumentInfo(id=doc.id, source=doc.source, chunks=len(chunks), chars=len(doc.text))
            if doc.id in self.store.docs:
                stored.append(("unchanged", info))
                continue
            first = self.store.reserve_ids(len(chunks))
            chunks = [replace(c, id=first + i) for i, c in enumerate(chunks)]
            old = self.store.doc_for_source(doc.source)
            if old is not None:
                self.store.remove(old)
            self.store.add(doc.id, doc.source, len(doc.text), chunks, vectors)
            moves.remember_hash(self.store, doc.id, doc.content_hash)  # lets RAG.sync re-key it when moved
            stored.append(("replaced" if old is not None else "added", info))
        return stored

    # -- remove -------------------------------------------------------------------------------
    def delete(self, doc_id: str) -> DocumentInfo:
        with self.lock, self.store.writing():
            record = self.store.remove(doc_id)
            self.store.save()
        return DocumentInfo(id=record.id, source=record.source, chunks=len(record.chunk_ids), chars=record.chars)
