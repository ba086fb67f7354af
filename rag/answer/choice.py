"""The context decision: for one question, which passages the model is shown, and in what order.

    small corpus (WholeCorpus fits)  -> every relevant passage, fixed order (source, position)
    otherwise                        -> Retriever.retrieve(top k, within the scope)
                                        -> [SentenceSelector] -> passage_order

`ContextChoice` also owns the number of passages retrieved (`top_k`): its default comes from the
settings, and one call may ask for another (`resolve_top_k`, checked against the setting's bounds).
The store is expected to be synced and the scope resolved by the caller (rag/asker.py), under its lock.
"""
from __future__ import annotations

from dataclasses import dataclass

from rag.answer.context import SentenceSelector, WholeCorpus
from rag.answer.retrieval import Retriever
from rag.answer.scope import Scope
from rag.config import PassageOrder, Settings
from rag.errors import ConfigError, InputError
from rag.types import Passage


@dataclass(frozen=True)
class Context:
    """What the model is shown for one question."""

    ranked: list[Passage]  # best first: the gate and hit@k read these
    shown: list[Passage]  # the same passages in prompt order
    whole_corpus: bool  # the whole corpus, unscoped: its prompt prefix is the same for every question


def top_k_bounds() -> tuple[int, int]:
    """The allowed passages per question, as the setting `top_k` declares them (rag/config.py)."""
    low, high = 1, 50
    for bound in Settings.model_fields["top_k"].metadata:
        low = getattr(bound, "ge", low)
        high = getattr(bound, "le", high)
    return low, high


class ContextChoice:
    """Chooses the context of a question from the settings `context`, `corpus_max_words`, `top_k`,
    `context_words`, `passage_order` and `min_score` (the gate WholeCorpus applies per document)."""

    def __init__(self, retriever: Retriever, *, top_k: int, corpus: WholeCorpus | None,
                 selector: SentenceSelector | None, order: PassageOrder, min_score: float,
                 corpus_only: bool = False) -> None:
        self.retriever = retriever
        self.top_k = top_k
        self.corpus = corpus
        self.selector = selector
        self.order = order
        self.min_score = min_score
        self.corpus_only = corpus_only  # context=corpus: a corpus too big for the prompt is an error

    def resolve_top_k(self, top_k: int | None) -> int:
        """The passages to retrieve: `top_k` if given (checked), else this context's default."""
        if top_k is None:
            return self.top_k
        low, high = top_k_bounds()
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not low <= top_k <= high:
            raise InputError(f"top_k must be a whole number from {low} to {high}, not {top_k!r}")
        return top_k

    def retrieve(self, question: str, top_k: int, scope: Scope | None) -> list[Passage]:
        """The top k passages (within the scope, if any)."""
        return self.retriever.retrieve(question, top_k, None if scope is None else scope.chunk_ids)

    def choose(self, question: str, top_k: int, scope: Scope | None) -> Context:
        if self.corpus is not None:
            if self.corpus.fits():
                shown = self.corpus.passages(question, self.min_score, None if scope is None else scope.doc_ids)
                return Context(sorted(shown, key=lambda p: -p.score), shown,
                               whole_corpus=bool(shown) and scope is None)
            if self.corpus_only:
                raise ConfigError(f"context=corpus, but the corpus has {self.corpus.words:,} words, more than "
                                  f"corpus_max_words={self.corpus.max_words:,}; use context=auto or chunk")
        passages = self.retrieve(question, top_k, scope)
        if self.selector is not None and passages:
            passages = self.selector.select(question, passages)
        return Context(passages, self._ordered(passages), whole_corpus=False)

    def _ordered(self, passages: list[Passage]) -> list[Passage]:
        if self.order == "best_last":
            return passages[::-1]
        if self.order == "document":
            return sorted(passages, key=lambda p: (p.chunk.source, p.start))
        return passages
