"""Ingest executors: the load + chunk (+ embed) step of `RAG.add`, pluggable.

`RAG.add` is the one writer: it takes `PreparedFile`s from an executor, in file order, and applies and
saves them under the store's lock. `RAG.add` hands an executor only the files whose id (path + bytes,
`loading.file_id`) is not in the store already. `LocalExecutor` loads and chunks in this process and
leaves embedding to `RAG.add`'s batches; `ProcessExecutor` (setting `load_workers` > 1, the default on
a machine of 3 or more cores) does the same in worker processes, a few files queued on each;
`RayExecutor` (rag/ingest/distributed.py, `ray_address`) loads, chunks and embeds on the workers of a
Ray cluster. All go through `prepare_file`, so a file gets the same document, chunks and failure
reason whichever runs it. `executor_for(settings)` (in distributed.py) picks one.
"""
from __future__ import annotations

import logging
import multiprocessing
import signal
from collections import deque
from collections.abc import Container, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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

log = logging.getLogger(__name__)


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


# Files queued per worker process, so that none waits for this process between files.
IN_FLIGHT_PER_WORKER = 4
_worker: dict = {}  # in a worker process: what every file needs (set once, by _start_worker)


def _start_worker(known: frozenset[str], ocr_dir: Path | None, ocr: bool) -> None:
    """A worker process ignores Ctrl-C (the terminal sends it to the whole process group): the parent
    decides what happens, keeps the files already read and ends the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from rag.ingest.ocr import OcrEngine

    _worker["known"] = known
    _worker["ocr"] = OcrEngine(cache_dir=ocr_dir) if ocr else None


def _prepare_in_worker(path: Path, limits: loading.Limits, chunker: SentenceChunker, max_chunks: int) -> PreparedFile:
    return prepare_file(path, limits, chunker, _worker["known"], max_chunks, _worker["ocr"])


def crashed(path: Path, exc: BaseException) -> PreparedFile:
    return PreparedFile(str(path), failure=FileFailure(
        path=str(path), reason=f"the loader crashed on it (its worker process died: {exc or type(exc).__name__})"))


class ProcessExecutor:
    """Load and chunk in `workers` processes, results in the order of the files (setting `load_workers`).

    Each worker reads whole files (`prepare_file`), a few queued per worker; this process yields them
    in file order as they come, so `RAG.add` applies, embeds and saves exactly what `LocalExecutor`
    would. A bad file is a failure as in process; a worker that dies (a crash in a parser's C code,
    the OOM killer) breaks the pool: the file it was waiting for is run again alone in a new pool,
    and if that dies too the file is named as a failure; the files queued after it are run again in
    a new pool. Workers ignore Ctrl-C; the parent ends them when it stops early (Ctrl-C, an error, or
    `RAG.add` closing the generator), and `RAG.add` keeps the files already read. Workers start by
    forkserver, not fork: this process holds torch's and faiss's threads, which fork does not copy
    safely. A single file is read in this process (a pool costs ~1 s to start)."""

    def __init__(self, workers: int, ocr: "OcrEngine | None" = None) -> None:
        self.workers = max(1, workers)
        self.ocr = ocr

    def _pool(self, known: Container[str], workers: int) -> ProcessPoolExecutor:
        ocr_dir = self.ocr.cache_dir if self.ocr is not None else None
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["rag.ingest.executors", "pypdfium2", "pypdf"])  # imported once, by the server
        return ProcessPoolExecutor(workers, mp_context=context,
                                   initializer=_start_worker,
                                   initargs=(frozenset(known), ocr_dir, self.ocr is not None))

    def prepare(self, files: Sequence[Path], limits: loading.Limits, chunker: SentenceChunker,
                known: Container[str], max_chunks: int) -> Iterator[PreparedFile]:
        if len(files) < 2 or self.workers < 2:
            yield from LocalExecutor(self.ocr).prepare(files, limits, chunker, known, max_chunks)
            return
        workers = min(self.workers, len(files))
        pool = self._pool(known, workers)
        queue: deque[tuple[Path, Future]] = deque()
        todo = iter(files)
        finished = False

        def submit(n: int) -> None:
            for path in todo:
                try:
                    future = pool.submit(_prepare_in_worker, path, limits, chunker, max_chunks)
                except BrokenProcessPool as exc:  # a worker died while these were being queued: the loop
                    future = Future()             # below reads the file again in a new pool
                    future.set_exception(exc)
                queue.append((path, future))
                n -= 1
                if n <= 0:
                    return

        try:
            submit(workers * IN_FLIGHT_PER_WORKER)
            while queue:
                path, future = queue.popleft()
                try:
                    item = future.result()
                except BrokenProcessPool as exc:
                    log.warning("a loader process died while %s was queued (%s); reading it again alone", path, exc)
                    _end(pool)
                    item = self._alone(path, limits, chunker, known, max_chunks)
                    rest = [p for p, _ in queue]
                    queue.clear()
                    pool = self._pool(known, workers)
                    todo = iter(rest + list(todo))
                    submit(workers * IN_FLIGHT_PER_WORKER - 1)
                submit(1)
                yield item
            finished = True
        finally:
            if finished:
                pool.shutdown()
            else:  # Ctrl-C, an error, or closed early: nothing more is wanted from the workers
                _end(pool)

    def _alone(self, path: Path, limits: loading.Limits, chunker: SentenceChunker, known: Container[str],
               max_chunks: int) -> PreparedFile:
        pool = self._pool(known, 1)
        try:
            return pool.submit(_prepare_in_worker, path, limits, chunker, max_chunks).result()
        except BrokenProcessPool as exc:
            return crashed(path, exc)
        finally:
            _end(pool)


def _end(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: queued files dropped, running ones killed (a page of OCR can take 30 s)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public way to kill them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(5)
