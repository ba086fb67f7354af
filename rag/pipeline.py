"""The wiring: `RAG`, one index's facade over an indexer (rag/indexer.py: add, sync, delete) and an
asker (rag/asker.py: `chat`, the one conversation entry of the CLI, the web UI and /v1). Settings pick
the parts here; the data flows stage to stage in those two.

    ingest: paths -> loading.load -> SentenceChunker.split -> Embedder.embed -> Store (atomic save)
    chat:   question [+ history -> QuestionCondenser] -> ContextChoice (rag/answer/choice.py:
            WholeCorpus, or Dense|Hybrid [HyDE] [MMR] retrieval -> [SentenceSelector] -> passage order)
            -> Answerer.stream (prompt, LLM, citations, refusal) -> Answer
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from llama_index.core.llms import LLM

from rag.answer.claims import ClaimJudge
from rag.answer.query_rewriting import Turn
from rag.asker import PROMPT_STATE_DIR, Asker, Reply
from rag.config import DEFAULT_INDEX_DIR, SEEDS_DIR, Settings
from rag.indexer import EMBED_BATCH_CHUNKS, Indexer
from rag.ingest.executors import IngestExecutor
from rag.models.embedding import Embedder, build_embedder
from rag.models.model_lock import ModelLock
from rag.store.faiss_index import IndexStore
from rag.store.interface import Store
from rag.types import Answer, DocumentInfo, IngestEvent, IngestReport, Passage, SyncReport

if TYPE_CHECKING:
    from rag.models.llama_state import LlamaHelpers

__all__ = ["RAG", "Reply", "PROMPT_STATE_DIR", "EMBED_BATCH_CHUNKS"]


class RAG:
    """Question answering over one index directory. Thread-safe: writes and generation are serialised."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, llm: LLM | None = None, *,
                 llm_source: Callable[[Settings], LLM] | None = None, llm_lock: ModelLock | None = None,
                 claim_judge: ClaimJudge | None = None) -> None:
        """`llm_source` and `llm_lock`: where the model comes from and the lock around generating with
        it, when several RAGs share one model (rag/collections.py); default: build_llm, a lock of our own.
        `claim_judge`: the claim check's judge (rag/answer/claims.py); default: the llama.cpp model's
        own (rag.models.llama_state.LlamaClaimJudge), none for a server."""
        self.store = store
        self.embedder = embedder
        lock = threading.RLock()  # this process's readers and writers of the store, one at a time
        self.indexer = Indexer(settings, store, embedder, lock=lock)
        self.asker = Asker(settings, store, embedder, llm, llm_source=llm_source, llm_lock=llm_lock,
                           claim_judge=claim_judge, lock=lock, refresh=self.indexer.refresh)
        self.ocr = self.indexer.ocr  # shared with the UI's page view

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

    # -- ingest (Indexer) ---------------------------------------------------------------------
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
        return self.indexer.add(paths, progress=progress, only_supported=only_supported, on_event=on_event,
                                executor=executor)

    def sync(self, folders: Iterable[str | Path], *, changed: Iterable[str | Path] | None = None,
             progress: bool = False, only_supported: bool = False,
             on_event: Callable[[IngestEvent], None] | None = None) -> SyncReport:
        """Make the index match `folders`: new and changed files added (RAG.add), documents of files gone
        from them removed, a moved or renamed file re-keyed to its new path without re-embedding (same
        bytes and type). Documents outside the folders are never touched. With `changed` (paths from a
        watcher), only those paths are looked at. Removals and moves are saved first, under the lock."""
        return self.indexer.sync(folders, changed=changed, progress=progress, only_supported=only_supported,
                                 on_event=on_event)

    def delete(self, doc_id: str) -> DocumentInfo:
        return self.indexer.delete(doc_id)

    def documents(self) -> list[DocumentInfo]:
        return self.indexer.documents()

    @property
    def chunker(self):  # noqa: ANN201 - the index's SentenceChunker (it follows the index's settings)
        return self.indexer.chunker

    @property
    def executor(self) -> IngestExecutor:
        return self.indexer.executor

    @executor.setter
    def executor(self, executor: IngestExecutor) -> None:
        self.indexer.executor = executor

    # -- ask (Asker) ---------------------------------------------------------------------------
    def chat(self, question: str, history: Sequence[Turn] = (), top_k: int | None = None,
             documents: Sequence[str] | None = None) -> Reply:
        """The conversation entry of every face: `question` checked, `top_k` resolved (None: the
        setting), a follow-up rewritten with `history`, and the answer's stream (`Reply`: text deltas,
        then the Answer). With `documents` (doc ids or path globs), answered from those only."""
        return self.asker.chat(question, history, top_k, documents)

    def ask(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None) -> Answer:
        """Answer `question` from the whole corpus, or from `documents` (doc ids or path globs) only."""
        return self.asker.chat(question, (), top_k, documents).answer()

    def stream(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None
               ) -> Iterator[str | Answer]:
        """Yield answer text as it is generated, then the final Answer (always last). With `documents`
        (doc ids or path globs), the answer comes from those documents only (refused if they lack it)."""
        return self.asker.stream(question, top_k, documents)

    def condense(self, question: str, history: Sequence[Turn]) -> str:
        """Rewrite a follow-up into a standalone question using the conversation (no-op without history)."""
        return self.asker.condense(question, history)

    def retrieve(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None) -> list[Passage]:
        """The top k passages for `question`; with `documents` (ids or path globs), from those only."""
        return self.asker.retrieve(question, top_k, documents)

    def context(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None
                ) -> tuple[list[Passage], list[Passage]]:
        """What the model is shown for `question`: (passages in rank order, the same in prompt order).
        With `documents` (ids or path globs), only passages of those documents."""
        context = self.asker.context(question, top_k, documents)
        return context.ranked, context.shown

    def use_model(self, model: str) -> None:
        """Switch the LLM (bundled name, .gguf path or server URL); it loads on the next question."""
        self.asker.use_model(model)

    def llama_helpers(self, llm: LLM) -> LlamaHelpers:
        return self.asker.llama_helpers(llm)

    @property
    def settings(self) -> Settings:
        """The settings in use (the model can change: use_model)."""
        return self.asker.settings

    @property
    def top_k(self) -> int:
        """Passages retrieved per question unless a call asks for another number."""
        return self.asker.choice.top_k

    @property
    def llm(self) -> LLM:
        return self.asker.llm

    @property
    def _llm(self) -> LLM | None:  # the model if loaded (evaluation reports its name; tests read its prompts)
        return self.asker._llm  # noqa: SLF001

    @property
    def _llm_lock(self) -> ModelLock:  # shared with the other collections' RAGs (rag/collections.py)
        return self.asker.llm_lock

    @property
    def retriever(self):  # noqa: ANN201
        return self.asker.choice.retriever

    @property
    def corpus(self):  # noqa: ANN201 - WholeCorpus, or None when context is chunk or sentences
        return self.asker.choice.corpus

    @property
    def selector(self):  # noqa: ANN201 - SentenceSelector, or None
        return self.asker.choice.selector

    @property
    def claim_judge(self) -> ClaimJudge | None:
        return self.asker.claim_judge
