"""Scoring one answer against its test item, without an LLM judge, and the metrics of a run.

What is scored (see docs/evaluation.md):
* answers (answerable items; a refusal counts as wrong): exact match, token F1, `contains`, after the
  citation markers are stripped, SQuAD-normalised, max over the acceptable answers;
* refusals: precision/recall on the items that must be refused, false-refusal rate on the others;
* citations: a cited passage is right when it holds a gold answer or evidence string;
* retrieval: hit@k and MRR of the first retrieved passage holding one;
* latency: p50/p95 of retrieval, time to first token and the whole answer.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rag.answer.citations import strip_markers
from rag.evaluation import metrics as M
from rag.evaluation.testsets import TestItem
from rag.types import Answer, short_source

if TYPE_CHECKING:  # pragma: no cover

    pass

# Metrics in [0, 1], in report order, with what each is computed over.
RATE_METRICS: dict[str, str] = {
    "exact_match": "answerable items",
    "f1": "answerable items",
    "contains": "answerable items",
    "refusal_precision": "refused items",
    "refusal_recall": "items that must be refused",
    "false_refusal_rate": "answerable items (lower is better)",
    "citation_precision": "cited passages of answered items",
    "citation_recall": "answerable items",
    "hit_at_k": "answerable items",
    "mrr": "answerable items",
}


LATENCY_METRICS: dict[str, str] = {
    "latency_p50_s": "whole answer",
    "latency_p95_s": "whole answer",
    "ttft_p50_s": "first token, from the start of generation",
    "ttft_p95_s": "first token, from the start of generation",
    "first_verified_p50_s": "first verified sentence shown, from the start of generation (answers)",
    "first_verified_p95_s": "first verified sentence shown, from the start of generation (answers)",
    "claim_check_p50_s": "claim check of an answer (items it ran on)",
    "claim_check_p95_s": "claim check of an answer (items it ran on)",
    "retrieve_p50_s": "retrieval",
    "retrieve_p95_s": "retrieval",
}


COUNT_METRICS = ("n_items", "n_answerable", "n_must_refuse", "n_refused", "n_errors")


LOWER_IS_BETTER = {"false_refusal_rate", *LATENCY_METRICS}


@dataclass
class ItemResult:
    """One question asked and scored. Answer scores are None for items that must be refused."""

    id: str
    question: str
    must_refuse: bool
    gold_answers: list[str]
    answer: str
    abstained: bool
    refusal_reason: str = ""
    model_text: str = ""  # the model's draft, kept for refused items too (why was it refused?)
    signals: dict[str, Any] = field(default_factory=dict)  # RefusalSignals: the evidence and the gates
    citations: list[dict[str, Any]] = field(default_factory=list)  # n, source, start, end, score, supports
    retrieved: list[dict[str, Any]] = field(default_factory=list)  # rank, source, start, end, score, supports
    exact_match: float | None = None
    f1: float | None = None
    contains: float | None = None
    first_hit_rank: int | None = None  # rank of the first retrieved passage holding gold (answerable items)
    timings: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def correct(self) -> bool | None:
        """Refused when it must be, or answered with a gold answer in it; None if asking failed."""
        if self.error is not None:
            return None
        return self.abstained if self.must_refuse else bool(self.contains)

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "error"
        if self.must_refuse:
            return "refused (right)" if self.abstained else "answered (should refuse)"
        if self.abstained:
            return "false refusal"
        return "correct" if self.contains else "wrong"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answer": self.answer,
            "abstained": self.abstained,
            "citations": self.citations,
            "must_refuse": self.must_refuse,
            "gold_answers": self.gold_answers,
            "correct": self.correct,
            "verdict": self.verdict,
            "exact_match": self.exact_match,
            "f1": _round(self.f1),
            "contains": self.contains,
            "citation_hits": sum(1 for c in self.citations if c["supports"]),
            "first_hit_rank": self.first_hit_rank,
            "retrieved": self.retrieved,
            "refusal_reason": self.refusal_reason,
            "model_text": self.model_text,
            "signals": self.signals,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "error": self.error,
        }


def score_item(item: TestItem, answer: Answer) -> ItemResult:
    """Score one Answer against its TestItem (pure: no model, no index)."""
    gold = item.gold
    citations = [
        {"n": c.n, "source": short_source(c.source), "page": c.page, "location": c.location, "start": c.start, "end": c.end,
         "score": round(float(c.score), 4), "ocr": c.ocr, "supports": M.text_contains(c.text, gold)}
        for c in answer.citations
    ]
    retrieved = [
        {"rank": rank, "source": short_source(p.chunk.source), "page": p.chunk.page, "location": p.chunk.location,
         "start": p.start, "end": p.end,
         "score": round(float(p.score), 4), "supports": M.text_contains(p.text, gold)}
        for rank, p in enumerate(answer.passages, start=1)
    ]
    result = ItemResult(
        id=item.id, question=item.question, must_refuse=item.must_refuse, gold_answers=list(item.answers),
        answer=answer.text, abstained=answer.abstained, refusal_reason=answer.refusal_reason,
        model_text=answer.model_text, signals=answer.signals.to_json(),
        citations=citations, retrieved=retrieved, timings=dict(answer.timings),
    )
    if not item.must_refuse:
        text = "" if answer.abstained else strip_markers(answer.text)
        result.exact_match = M.exact_match(text, item.answers) if text else 0.0
        result.f1 = M.f1_score(text, item.answers) if text else 0.0
        result.contains = M.contains(text, item.answers) if text else 0.0
        result.first_hit_rank = M.first_hit_rank([r["supports"] for r in retrieved])
    return result


def compute_metrics(results: Iterable[ItemResult]) -> dict[str, float | int | None]:
    """Aggregate scores; items whose question failed with an error are counted but not scored."""
    results = list(results)
    ok = [r for r in results if r.error is None]
    answerable = [r for r in ok if not r.must_refuse]
    out: dict[str, float | int | None] = {
        "exact_match": M.mean(r.exact_match or 0.0 for r in answerable),
        "f1": M.mean(r.f1 or 0.0 for r in answerable),
        "contains": M.mean(r.contains or 0.0 for r in answerable),
    }
    out.update(M.refusal_scores([r.must_refuse for r in ok], [r.abstained for r in ok]))
    out.update(M.citation_scores([[c["supports"] for c in r.citations] if not r.abstained else [] for r in ok],
                                 [not r.must_refuse for r in ok]))
    out.update(M.retrieval_scores([r.first_hit_rank for r in answerable]))
    total = [r.timings["total"] for r in ok if "total" in r.timings]
    first = [r.timings["first_token"] for r in ok if "first_token" in r.timings]
    retrieve = [r.timings["retrieve"] for r in ok if "retrieve" in r.timings]
    verified = [r.timings["first_verified"] for r in ok if "first_verified" in r.timings]
    claim = [r.timings["claim_check"] for r in ok if "claim_check" in r.timings]
    out.update({
        "latency_p50_s": M.percentile(total, 50), "latency_p95_s": M.percentile(total, 95),
        "ttft_p50_s": M.percentile(first, 50), "ttft_p95_s": M.percentile(first, 95),
        "first_verified_p50_s": M.percentile(verified, 50), "first_verified_p95_s": M.percentile(verified, 95),
        "claim_check_p50_s": M.percentile(claim, 50), "claim_check_p95_s": M.percentile(claim, 95),
        "retrieve_p50_s": M.percentile(retrieve, 50), "retrieve_p95_s": M.percentile(retrieve, 95),
    })
    out = {k: _round(v) for k, v in out.items()}
    out.update({
        "n_items": len(results), "n_answerable": len(answerable), "n_must_refuse": len(ok) - len(answerable),
        "n_refused": sum(1 for r in ok if r.abstained), "n_errors": len(results) - len(ok),
    })
    return out


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def reason_kind(reason: str) -> str:
    """A refusal reason without its numbers: "no passage is relevant enough (best score 0.21 < 0.3)"
    counts as "no passage is relevant enough"."""
    return reason.split(" (")[0].strip() or "(no reason recorded)"


def refusals_by_reason(results: Iterable[ItemResult]) -> dict[str, int]:
    """How many answers were refused for each reason, most frequent first."""
    counts: dict[str, int] = {}
    for r in results:
        if r.error is None and r.abstained:
            kind = reason_kind(r.refusal_reason)
            counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
