"""The wiring: one place where settings pick the parts and the data flows stage to stage.

    ingest: paths -> loading.load -> SentenceChunker.split -> Embedder.embed -> IndexStore (atomic save)
    ask:    question -> WholeCorpus (a small corpus, whole, in a fixed order)
                        or Dense|HybridRetriever [in RewritingRetriever (HyDE)] [in DiverseRetriever (MMR)]
                           .retrieve -> [SentenceSelector] -> passage order
            -> Answerer.stream (prompt, LLM, citations, refusal) -> Answer
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from llama_index.core.llms import LLM

from rag.answer.answerer import REFUSAL, Answerer
from rag.answer.claims import ClaimJudge
from rag.answer.citations import SemanticSupport
from rag.answer.context import SentenceSelector, WholeCorpus
from rag.answer.query_rewriting import HydeRewriter, QuestionCondenser, Turn
from rag.answer.retrieval import (
    DenseRetriever,
    DiverseRetriever,
    HybridRetriever,
    Retriever,
    RewritingRetriever,
)
from rag.answer.scope import Scope, resolve_scope
from rag.config import DEFAULT_INDEX_DIR, SEEDS_DIR, Settings
from rag.errors import ConfigError, InputError
from rag.ingest import loading
from rag.ingest.chunking import SentenceChunker
from rag.ingest.folders import file_hashes
from rag.ingest.folders import scan as folders_scan
from rag.ingest.ocr import OcrEngine
from rag.ingest.distributed import executor_for
from rag.ingest.executors import IngestExecutor
from rag.models.embedding import Embedder, build_embedder
from rag.models.model_lock import ModelLock
from rag.store import moves
from rag.store.faiss_index import IndexStore
from rag.store.interface import Store
from rag.types import (
    Answer,
    Chunk,
    Document,
    DocumentInfo,
    FileFailure,
    IngestEvent,
    IngestReport,
    Passage,
    SyncReport,
)


if TYPE_CHECKING:
    from rag.models.llama_state import LlamaHelpers
# Saved llama.cpp prompt states (rag/llama_state.PromptCache), inside the index directory.
PROMPT_STATE_DIR = "llama-state"
# Chunks embedded per model call while ingesting many files (a few full batches of 64).
EMBED_BATCH_CHUNKS = 256


class RAG:
    """Question answering over one index directory. Thread-safe: writes and generation are serialised."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, llm: LLM | None = None, *,
                 llm_source: Callable[[Settings], LLM] | None = None, llm_lock: ModelLock | None = None,
                 claim_judge: ClaimJudge | None = None) -> None:
        """`llm_source` and `llm_lock`: where the model comes from and the lock around generating with
        it, when several RAGs share one model (rag/collections.py); default: build_llm, a lock of our own.
        `claim_judge`: the claim check's judge (rag/answer/claims.py); default: the llama.cpp model's
        own (rag.models.llama_state.LlamaClaimJudge), none for a server."""
        self.settings = settings
        self.store = store
        self.embedder = embedder
        m = store.manifest
        # The index's own chunk settings win over the current config, so one index is chunked one way.
        self.chunker = SentenceChunker(m.chunk_size, m.chunk_overlap)
        self.retriever: Retriever = (HybridRetriever(store, embedder) if settings.retrieval == "hybrid"
                                     else DenseRetriever(store, embedder))
        if settings.query_rewrite == "hyde":
            self.retriever = RewritingRetriever(self.retriever, self._hyde, store, embedder)
        if settings.diversity > 0:
            self.retriever = DiverseRetriever(self.retriever, store, embedder, settings.diversity)
        # auto: a corpus too big for the prompt gets tight passages (the sentences near the question)
        self.selector = (SentenceSelector(embedder, settings.context_words)
                         if settings.context in ("sentences", "auto") else None)
        self.corpus = (WholeCorpus(store, embedder, settings.corpus_max_words)
                       if settings.context in ("auto", "corpus") else None)
        self.semantic = SemanticSupport(embedder) if settings.support == "embedding" else None
        self._llm = llm
        self._llm_source = llm_source
        self._helpers: LlamaHelpers | None = None
        self.claim_judge = claim_judge
        self._write_lock = threading.RLock()
        self._llm_lock = llm_lock or ModelLock()
        self._load_lock = threading.Lock()
        # its models load on the first scanned page; pages read are kept for the UI's page view
        self.ocr = OcrEngine.of(settings) if settings.ocr else None
        self.executor: IngestExecutor = executor_for(settings, self.ocr)  # load+chunk(+embed): here, or on Ray

    @classmethod
    def open(cls, index_dir: str | Path | None = None, settings: Settings | None = None, *,
             embedder: Embedder | None = None, llm: LLM | None = None, seed: bool | None = None,
             **shared: object) -> "RAG":
        """Open (or create) the index at `index_dir`; the default index is built from seeds/ on first use.
        `shared`: llm_source and llm_lock, passed to the constructor."""
        settings = settings or Settings.load()
        if index_dir is not None:
            settings = settings.with_(index_dir=Path(index_dir).expanduser())
        embedder = embedder or build_embedder(settings)
        directory = settings.index_dir
        if settings.store:  # PostgreSQL (rag/store/postgres.py); seeded only when asked (seed=True)
            from rag.store.postgres import PgStore

            store = PgStore.connect(settings.store, embedder.name, embedder.dim, settings.chunk_size,
                                    settings.chunk_overlap, directory)
            rag = cls(settings, store, embedder, llm, **shared)  # type: ignore[arg-type]
            if seed and not store.docs:
                rag.add([SEEDS_DIR], only_supported=True)
            return rag
        if IndexStore.exists(directory):
            store = IndexStore.open(directory, embedder.name, embedder.dim, index_type=settings.index_type)
            return cls(settings, store, embedder, llm, **shared)  # type: ignore[arg-type]
        store = IndexStore.create(directory, embedder.name, embedder.dim, settings.chunk_size, settings.chunk_overlap,
                                   index_type=settings.index_type)
        rag = cls(settings, store, embedder, llm, **shared)  # type: ignore[arg-type]
        if seed if seed is not None else directory.resolve() == DEFAULT_INDEX_DIR.resolve():
            rag.add([SEEDS_DIR], only_supported=True)
        return rag

    # -- ingest -------------------------------------------------------------------------------
    def add(self, paths: Iterable[str | Path], *, progress: bool = False, only_supported: bool = False,
            on_event: Callable[[IngestEvent], None] | None = None,
            executor: IngestExecutor | None = None) -> IngestReport:
        """Index files and folders. Bad files are reported and skipped. The index is saved after every
        embedding batch (~EMBED_BATCH_CHUNKS chunks), and the files already read are saved before a Ctrl-C
        or a crash while reading a file goes on up, so a late failure keeps the files before it.
        `on_event` hears each file as it is read and its outcome (added/replaced once saved).

        Loading, chunking and embedding (~99% of the time) happen outside the directory lock, so another
        process's save is not held up by our model; only applying a batch and saving hold it, on the
        latest generation on disk (IndexStore.writing). Chunk ids are handed out then, under the lock:
        ids reserved earlier could have been used meanwhile by another process. Loading and chunking
        (and embedding, if it does) are the `executor`'s (default `self.executor`: local, or Ray when
        `ray_address` is set); this process stays the one writer either way."""
        return self._add_files(list(loading.discover(paths)), IngestReport(), progress, only_supported, on_event,
                               executor)

    def _add_files(self, files: list[Path], report: IngestReport, progress: bool, only_supported: bool,
                   on_event: Callable[[IngestEvent], None] | None,
                   executor: IngestExecutor | None = None) -> IngestReport:
        """RAG.add on files already found (a file gone meanwhile is named as failed, not an InputError)."""
        if only_supported:
            files = [f for f in files if f.suffix.lower() in loading.SUPPORTED_EXTENSIONS]
        limits = replace(loading.Limits.of(self.settings), table_words=self.chunker.size)  # a table block, one chunk
        total, done = len(files), 0

        def tell(step: str, path: str, reason: str = "", info: DocumentInfo | None = None) -> None:
            if on_event is not None:
                on_event(IngestEvent(step, path, done, total, reason, info))  # type: ignore[arg-type]

        def fail(path: str, reason: str) -> None:
            nonlocal done
            report.failed.append(FileFailure(path=path, reason=reason))
            done += 1
            tell("failed", path, reason)

        def flush() -> None:
            """Embed the pending files, apply and save them under the lock, and only then count them."""
            nonlocal done
            embedded = self._embed(pending, progress)
            if not embedded:
                return
            with self.store.writing():
                stored = self._apply(embedded)
                if any(step != "unchanged" for step, _ in stored):
                    self.store.save()
            for step, info in stored:
                if step == "unchanged":  # another process saved the same file meanwhile
                    report.unchanged.append(info.id)
                else:
                    getattr(report, step).append(info)
                done += 1
                tell(step, info.source, info=info)

        with self._write_lock:
            self._sync()  # what other processes saved counts as unchanged too
            pending: list[tuple[Document, list[Chunk], np.ndarray | None]] = []
            seen: set[str] = set()
            # A file's id needs only its path and bytes: one already in the store is unchanged, and is
            # never handed to the executor (nothing parsed, chunked or embedded for it).
            known = [loading.file_id(f, limits.max_bytes) for f in files]
            known = [i if i is not None and i in self.store.docs else None for i in known]
            prepared = (executor or self.executor).prepare([f for f, i in zip(files, known) if i is None], limits,
                                                           self.chunker, self.store.docs, self.settings.max_file_chunks)
            try:
                for path, known_id in zip(files, known):
                    tell("reading", str(path))
                    if known_id is not None:
                        report.unchanged.append(known_id)
                        done += 1
                        tell("unchanged", str(path))
                        continue
                    try:
                        item = next(prepared)  # chunk ids 0..n-1 until _apply numbers them
                    except BaseException:  # Ctrl-C or a crash on this file: keep the files read before it
                        flush()
                        raise
                    if item.failure is not None:
                        fail(item.failure.path, item.failure.reason)
                        continue
                    doc = item.doc
                    assert doc is not None
                    if doc.id in self.store.docs or doc.id in seen:
                        report.unchanged.append(doc.id)
                        done += 1
                        tell("unchanged", str(path))
                        continue
                    seen.add(doc.id)
                    if doc.partial:  # e.g. its OCR budget ran out: the pages read are indexed, and it is named
                        report.partial.append(FileFailure(path=str(path), reason=doc.partial))
                    pending.append((doc, list(item.chunks), item.vectors))
                    if sum(len(c) for _, c, _ in pending) >= EMBED_BATCH_CHUNKS:
                        flush()
                flush()
            finally:
                getattr(prepared, "close", lambda: None)()  # a distributed executor frees its workers
            if not self.store.persisted:
                with self.store.writing():
                    self.store.save()
        return report

    def sync(self, folders: Iterable[str | Path], *, changed: Iterable[str | Path] | None = None,
             progress: bool = False, only_supported: bool = False,
             on_event: Callable[[IngestEvent], None] | None = None) -> SyncReport:
        """Make the index match `folders`: new and changed files added (RAG.add), documents of files gone
        from them removed, a moved or renamed file re-keyed to its new path without re-embedding (same
        bytes and type). Documents outside the folders are never touched. With `changed` (paths from a
        watcher), only those paths are looked at. Removals and moves are saved first, under the lock."""
        found = folders_scan(folders, changed, skip_under=self.store.directory.resolve())
        report = SyncReport()
        with self._write_lock:
            self._sync()
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

            self._add_files(found.files, report, progress, only_supported, tell)
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

    def delete(self, doc_id: str) -> DocumentInfo:
        with self._write_lock, self.store.writing():
            record = self.store.remove(doc_id)
            self.store.save()
        return DocumentInfo(id=record.id, source=record.source, chunks=len(record.chunk_ids), chars=record.chars)

    def _sync(self) -> None:
        """Serve what another process has saved (`rag ingest` while `rag serve` runs): one small file
        read before each read of the store, and a reload in place when it names a newer generation.
        In place, so the retrievers and WholeCorpus holding the store see it. Call under _write_lock."""
        if self.store.refresh():
            m = self.store.manifest
            self.chunker = SentenceChunker(m.chunk_size, m.chunk_overlap)

    def documents(self) -> list[DocumentInfo]:
        with self._write_lock:
            self._sync()
            return self.store.documents()

    # -- ask ----------------------------------------------------------------------------------
    @property
    def llm(self) -> LLM:
        with self._load_lock:  # two first questions at once must not load the model twice
            if self._llm is None and self._llm_source is not None:
                self._llm = self._llm_source(self.settings)
            if self._llm is None:
                # loading a model takes seconds; only when first asked
                from rag.models.llm import build_llm

                self._llm = build_llm(self.settings)
            return self._llm

    def condense(self, question: str, history: Sequence[Turn]) -> str:
        """Rewrite a follow-up into a standalone question using the conversation (no-op without history)."""
        question = self._check(question)
        if not history:
            return question
        condenser = QuestionCondenser(self.llm)
        with self._llm_lock:
            return condenser.condense(question, history)

    def _hyde(self, question: str) -> str:
        llm = self.llm
        with self._llm_lock:
            return HydeRewriter(llm).expand(question)

    def use_model(self, model: str) -> None:
        """Switch the LLM (bundled name, .gguf path or server URL); it loads on the next question."""
        settings = self.settings.with_(model=model)  # validates the name
        with self._llm_lock, self._load_lock:
            self.settings, self._llm = settings, None

    def retrieve(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None) -> list[Passage]:
        """The top k passages for `question`; with `documents` (ids or path globs), from those only."""
        question = self._check(question)
        with self._write_lock:
            self._sync()
            return self._retrieve(question, top_k, resolve_scope(self.store, documents))

    def _retrieve(self, question: str, top_k: int | None, scope: Scope | None) -> list[Passage]:
        """Retrieval on a store already synced and a scope already resolved. Call under _write_lock."""
        return self.retriever.retrieve(question, top_k or self.settings.top_k,
                                       None if scope is None else scope.chunk_ids)

    def context(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None
                ) -> tuple[list[Passage], list[Passage]]:
        """What the model is shown for `question`: (passages in rank order, the same in prompt order).
        With `documents` (ids or path globs), only passages of those documents."""
        question = self._check(question)
        with self._write_lock:  # one sync and one scope for whichever context is shown
            self._sync()
            scope = resolve_scope(self.store, documents)  # fail fast on an unknown entry
            if self.corpus is not None:
                if self.corpus.fits():
                    shown = self.corpus.passages(question, self.settings.min_score,
                                                 None if scope is None else scope.doc_ids)
                    return sorted(shown, key=lambda p: -p.score), shown
                if self.settings.context == "corpus":
                    raise ConfigError(f"context=corpus, but the corpus has {self.corpus.words:,} words, more than "
                                      f"corpus_max_words={self.settings.corpus_max_words:,}; use context=auto or chunk")
            passages = self._retrieve(question, top_k, scope)
        if self.selector is not None and passages:
            passages = self.selector.select(question, passages)
        order = self.settings.passage_order
        if order == "best_last":
            shown = passages[::-1]
        elif order == "document":
            shown = sorted(passages, key=lambda p: (p.chunk.source, p.start))
        else:
            shown = passages
        return passages, shown

    def stream(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None
               ) -> Iterator[str | Answer]:
        """Yield answer text as it is generated, then the final Answer (always last). With `documents`
        (doc ids or path globs), the answer comes from those documents only (refused if they lack it)."""
        question = self._check(question)
        start = time.perf_counter()
        passages, shown = self.context(question, top_k, documents)
        timings = {"retrieve": time.perf_counter() - start}
        llm = self.llm
        helpers = self.llama_helpers(llm)
        # A scoped prompt's prefix differs per selection; saving its state would evict the whole corpus's.
        whole_corpus = self.corpus is not None and bool(shown) and not documents and self.corpus.fits()
        answerer = Answerer(llm, min_score=self.settings.min_score, style=self.settings.answer_style,
                            semantic=self.semantic, refusal_prob=self.settings.refusal_prob,
                            retry_below=self.settings.retry_below,
                            probe=helpers.probe, prompt_state=helpers.prompt_state if whole_corpus else None,
                            judge=helpers.judge if self.settings.claim_check else None,
                            claim_threshold=self.settings.claim_threshold)
        with self._llm_lock:
            helpers.fit_threads(self.settings)  # fewer threads while other processes hold the cores
            for item in answerer.stream(question, passages, timings, shown):
                if isinstance(item, Answer):
                    item.timings["total"] = time.perf_counter() - start
                yield item

    def llama_helpers(self, llm: LLM) -> LlamaHelpers:
        """The llama.cpp helpers of the current LLM (each None for servers and fakes), made once per LLM."""
        if self._helpers is None or self._helpers.llm is not llm:
            from rag.models.llama_state import llama_helpers_for

            self._helpers = llama_helpers_for(llm, REFUSAL, self.store.directory / PROMPT_STATE_DIR, self.claim_judge)
        return self._helpers

    def ask(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None) -> Answer:
        """Answer `question` from the whole corpus, or from `documents` (doc ids or path globs) only."""
        for item in self.stream(question, top_k, documents):
            if isinstance(item, Answer):
                return item
        raise AssertionError("Answerer.stream ended without an Answer")  # a bug, not a user error

    def _check(self, question: str) -> str:
        if not isinstance(question, str) or not question.strip():
            raise InputError("the question is empty")
        if len(question) > self.settings.max_question_chars:
            raise InputError(f"the question is {len(question):,} characters; the limit is "
                             f"{self.settings.max_question_chars:,} (RAG_MAX_QUESTION_CHARS)")
        return question.strip()
