"""The context decision (rag/answer/choice.py): top_k resolved once, passages ordered as the setting says."""
from __future__ import annotations

import pytest

from rag.answer.choice import ContextChoice, top_k_bounds
from rag.config import Settings
from rag.errors import InputError
from rag.types import Chunk, Passage


def passage(i: int, source: str, start: int, score: float) -> Passage:
    return Passage.of(Chunk(id=i, doc_id=source, source=source, text=f"text {i}", start=start, end=start + 6), score)


class RecordingRetriever:
    """Returns its passages best first and records each call's k and scope."""

    def __init__(self, passages: list[Passage]) -> None:
        self.passages = passages
        self.calls: list[tuple[int, frozenset[int] | None]] = []

    def retrieve(self, question: str, k: int, within: frozenset[int] | None = None) -> list[Passage]:
        self.calls.append((k, within))
        return self.passages[:k]


PASSAGES = [passage(1, "b.txt", 0, 0.9), passage(2, "a.txt", 10, 0.8), passage(3, "a.txt", 50, 0.7)]


def choice(order: str, retriever: RecordingRetriever, top_k: int = 3) -> ContextChoice:
    return ContextChoice(retriever, top_k=top_k, corpus=None, selector=None, order=order, min_score=0.0)


def test_top_k_bounds_are_the_settings_own():
    field = Settings.model_fields["top_k"]
    low, high = top_k_bounds()
    assert (low, high) == (1, 50)
    assert any(getattr(m, "ge", None) == low for m in field.metadata)


def test_top_k_is_the_default_unless_a_call_asks_for_another_and_a_bad_one_names_itself():
    c = choice("best_first", RecordingRetriever(PASSAGES), top_k=4)
    assert c.resolve_top_k(None) == 4 and c.resolve_top_k(2) == 2
    for bad in (0, 51, True, 2.5, "3"):
        with pytest.raises(InputError, match=r"top_k must be a whole number from 1 to 50, not"):
            c.resolve_top_k(bad)


@pytest.mark.parametrize("order, expected", [("best_first", [1, 2, 3]), ("best_last", [3, 2, 1]),
                                             ("document", [2, 3, 1])])
def test_passages_are_ranked_best_first_and_shown_in_the_chosen_order(order, expected):
    retriever = RecordingRetriever(PASSAGES)
    context = choice(order, retriever).choose("q", 3, None)
    assert [p.chunk.id for p in context.ranked] == [1, 2, 3]
    assert [p.chunk.id for p in context.shown] == expected
    assert context.whole_corpus is False and retriever.calls == [(3, None)]


def test_the_k_given_reaches_the_retriever():
    retriever = RecordingRetriever(PASSAGES)
    assert [p.chunk.id for p in choice("best_first", retriever).choose("q", 2, None).ranked] == [1, 2]
    assert retriever.calls == [(2, None)]
