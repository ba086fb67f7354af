"""Answering, the half of `RAG` that reads the index: one conversation entry (`Asker.chat`) that every
face calls (the CLI's `rag ask`, the web UI's chat, `/v1/chat/completions`), and the steps under it.

    chat(question, history, top_k, documents)
      check the question (once, here) -> top_k resolved (ContextChoice: its default, or this call's)
      -> [QuestionCondenser: a follow-up rewritten as a standalone question]
      -> Reply: streams context (rag/answer/choice.py) -> Answerer.stream -> Answer
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from llama_index.core.llms import LLM

from rag.answer.answerer import REFUSAL, Answerer
from rag.answer.choice import Context, ContextChoice
from rag.answer.citations import SemanticSupport
from rag.answer.claims import ClaimJudge
from rag.answer.context import SentenceSelector, WholeCorpus
from rag.answer.query_rewriting import HydeRewriter, QuestionCondenser, Turn
from rag.answer.retrieval import (
    DenseRetriever,
    DiverseRetriever,
    HybridRetriever,
    Retriever,
    RewritingRetriever,
)
from rag.answer.scope import resolve_scope
from rag.config import Settings
from rag.errors import InputError
from rag.models.embedding import Embedder, sentence_embedder
from rag.models.model_lock import ModelLock
from rag.store.interface import Store
from rag.types import Answer, Passage

if TYPE_CHECKING:
    from rag.models.llama_state import LlamaHelpers

# Saved llama.cpp prompt states (rag/models/llama_state.PromptCache), inside the index directory.
PROMPT_STATE_DIR = "llama-state"
# Hybrid retrieval fuses the dense and BM25 rankings of CANDIDATE_POOL x top_k candidates each, and MMR
# (diversity > 0) picks top_k from that many; one number for both, set here where they are built.
CANDIDATE_POOL = 3


@dataclass
class Reply:
    """One turn of a conversation, as `Asker.chat` hands it to a face: the question as asked, the
    standalone question that is searched (the same unless a follow-up was rewritten), and the answer's
    stream: text deltas, then the `Answer` (always last), whose timings include the rewrite's."""

    question: str
    standalone: str
    items: Iterator[str | Answer]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def rewritten(self) -> bool:
        return self.standalone != self.question

    def __iter__(self) -> Iterator[str | Answer]:
        try:
            for item in self.items:
                if isinstance(item, Answer) and "rewrite" in self.timings:
                    item.timings.setdefault("rewrite", self.timings["rewrite"])
                    item.timings["total"] = item.timings.get("total", 0.0) + self.timings["rewrite"]
                yield item
        finally:
            self.close()  # however the face stops reading, the stream's model lock is let go

    def answer(self) -> Answer:
        """Read the whole stream; the final Answer."""
        for item in self:
            if isinstance(item, Answer):
                return item
        raise AssertionError("Answerer.stream ended without an Answer")  # a bug, not a user error

    def close(self) -> None:
        """Stop the generation (a client went away): the stream's model lock is released."""
        close = getattr(self.items, "close", None)
        if close is not None:
            close()


def check_question(question: object, max_chars: int, what: str = "the question") -> str:
    """The question, stripped; an InputError if it is empty or longer than `max_chars`."""
    if not isinstance(question, str) or not question.strip():
        raise InputError(f"{what} is empty")
    if len(question) > max_chars:
        raise InputError(f"{what} is {len(question):,} characters; the limit is {max_chars:,} (RAG_MAX_QUESTION_CHARS)")
    return question.strip()


class Asker:
    """Answers questions over one store. `lock` and `refresh`: the store's lock and its "serve what
    another process saved" step, both shared with the indexer (rag/indexer.py)."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, llm: LLM | None = None, *,
                 llm_source: Callable[[Settings], LLM] | None = None, llm_lock: ModelLock | None = None,
                 claim_judge: ClaimJudge | None = None, lock: threading.RLock | None = None,
                 refresh: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        retriever: Retriever = (HybridRetriever(store, embedder, pool=CANDIDATE_POOL) if settings.retrieval == "hybrid"
                                else DenseRetriever(store, embedder))
        if settings.query_rewrite == "hyde":
            retriever = RewritingRetriever(retriever, self._hyde, store, embedder)
        if settings.diversity > 0:
            retriever = DiverseRetriever(retriever, store, embedder, settings.diversity, pool=CANDIDATE_POOL)
        # auto: a corpus too big for the prompt gets tight passages (the sentences near the question)
        selector = (SentenceSelector(sentence_embedder(embedder, settings.sentence_embedder), settings.context_words,
                                     settings.context_word_weight)
                    if settings.context in ("sentences", "auto") else None)
        corpus = (WholeCorpus(store, embedder, settings.corpus_max_words)
                  if settings.context in ("auto", "corpus") else None)
        self.choice = ContextChoice(retriever, top_k=settings.top_k, corpus=corpus, selector=selector,
                                    order=settings.passage_order, min_score=settings.min_score,
                                    corpus_only=settings.context == "corpus")
        self.semantic = SemanticSupport(embedder) if settings.support == "embedding" else None
        self._llm = llm
        self._llm_source = llm_source
        self._helpers: LlamaHelpers | None = None
        self.claim_judge = claim_judge
        self.llm_lock = llm_lock or ModelLock()
        self._load_lock = threading.Lock()
        self._lock = lock or threading.RLock()
        self._refresh = refresh or (lambda: None)

    # -- the model --------------------------------------------------------------------------
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

    def use_model(self, model: str) -> None:
        """Switch the LLM (bundled name, .gguf path or server URL); it loads on the next question."""
        settings = self.settings.with_(model=model)  # validates the name
        with self.llm_lock, self._load_lock:
            self.settings, self._llm = settings, None

    def llama_helpers(self, llm: LLM) -> LlamaHelpers:
        """The llama.cpp helpers of the current LLM (each None for servers and fakes), made once per LLM."""
        if self._helpers is None or self._helpers.llm is not llm:
            from rag.models.llama_state import llama_helpers_for

            self._helpers = llama_helpers_for(llm, REFUSAL, self.store.directory / PROMPT_STATE_DIR, self.claim_judge)
        return self._helpers

    def _hyde(self, question: str) -> str:
        llm = self.llm
        with self.llm_lock:
            return HydeRewriter(llm).expand(question)

    # -- the conversation entry -------------------------------------------------------------
    def check(self, question: object, what: str = "the question") -> str:
        return check_question(question, self.settings.max_question_chars, what)

    def chat(self, question: str, history: Sequence[Turn] = (), top_k: int | None = None,
             documents: Sequence[str] | None = None) -> Reply:
        """One turn of a conversation: the question checked, top_k resolved, a follow-up rewritten
        into a standalone question (with `history`; this takes the model), and the answer's stream
        (`Reply`, iterated by the face). With `documents` (ids or path globs), from those only."""
        question = self.check(question)
        for i, turn in enumerate(history, 1):
            self.check(turn.question, f"question {i} of the history")
        k = self.choice.resolve_top_k(top_k)
        timings: dict[str, float] = {}
        standalone = question
        if history:
            start = time.perf_counter()
            standalone = self._condense(question, history)
            timings["rewrite"] = time.perf_counter() - start
        return Reply(question, standalone, self._stream(standalone, k, documents), timings)

    # -- the steps, for callers that need one (evaluation, benchmarks, tests) ---------------
    def condense(self, question: str, history: Sequence[Turn]) -> str:
        """Rewrite a follow-up into a standalone question using the conversation (no-op without history)."""
        return self._condense(self.check(question), history)

    def retrieve(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None) -> list[Passage]:
        """The top k passages for `question`; with `documents` (ids or path globs), from those only."""
        question, k = self.check(question), self.choice.resolve_top_k(top_k)
        with self._lock:
            self._refresh()
            return self.choice.retrieve(question, k, resolve_scope(self.store, documents))

    def context(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None) -> Context:
        """What the model is shown for `question`; with `documents` (ids or path globs), only passages
        of those documents."""
        return self._context(self.check(question), self.choice.resolve_top_k(top_k), documents)

    def stream(self, question: str, top_k: int | None = None, documents: Sequence[str] | None = None
               ) -> Iterator[str | Answer]:
        """Yield answer text as it is generated, then the final Answer (always last)."""
        return self._stream(self.check(question), self.choice.resolve_top_k(top_k), documents)

    # -- unchecked: the question and top_k are checked at the entry that called these --------
    def _condense(self, question: str, history: Sequence[Turn]) -> str:
        if not history:
            return question
        condenser = QuestionCondenser(self.llm)
        with self.llm_lock:
            return condenser.condense(question, history)

    def _context(self, question: str, top_k: int, documents: Sequence[str] | None) -> Context:
        with self._lock:  # one sync and one scope for whichever context is shown
            self._refresh()
            scope = resolve_scope(self.store, documents)  # fail fast on an unknown entry
            return self.choice.choose(question, top_k, scope)

    def _stream(self, question: str, top_k: int, documents: Sequence[str] | None) -> Iterator[str | Answer]:
        start = time.perf_counter()
        context = self._context(question, top_k, documents)
        timings = {"retrieve": time.perf_counter() - start}
        llm = self.llm
        helpers = self.llama_helpers(llm)
        settings = self.settings
        # A scoped prompt's prefix differs per selection; saving its state would evict the whole corpus's.
        answerer = Answerer(llm, min_score=settings.min_score, style=settings.answer_style,
                            semantic=self.semantic, refusal_prob=settings.refusal_prob,
                            retry_below=settings.retry_below,
                            probe=helpers.probe, prompt_state=helpers.prompt_state if context.whole_corpus else None,
                            judge=helpers.judge if settings.claim_check else None,
                            claim_threshold=settings.claim_threshold)
        with self.llm_lock:
            helpers.fit_threads(settings)  # fewer threads while other processes hold the cores
            for item in answerer.stream(question, context.ranked, timings, context.shown):
                if isinstance(item, Answer):
                    item.timings["total"] = time.perf_counter() - start
                yield item
