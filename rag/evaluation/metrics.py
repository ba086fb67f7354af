"""Metric functions for `rag eval`: plain functions over strings and lists, no model, no judge.

Answers use the SQuAD normalisation (lowercase, drop punctuation and the articles a/an/the, squeeze
whitespace); every score over gold strings is the maximum over the acceptable variants. A metric that
has nothing to be computed over (no answerable items, nothing refused, no citation) is `None`, never 0,
so "not measured" cannot be mistaken for "always wrong".
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lowercase, remove punctuation, articles and extra whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Iterable[str]) -> float:
    """1.0 if the normalised prediction equals a normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in golds))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: Iterable[str]) -> float:
    """SQuAD token F1 between prediction and the best-matching gold answer (0.0 with no golds)."""
    pred = normalize_answer(prediction).split()
    return max((_f1(pred, normalize_answer(g).split()) for g in golds), default=0.0)


def text_contains(text: str, needles: Iterable[str]) -> bool:
    """True if some normalised needle occurs in the normalised text as whole tokens.

    Token boundaries matter: "1" is not in "2019", "russia" is not in "russian"."""
    hay = f" {normalize_answer(text)} "
    for needle in needles:
        norm = normalize_answer(needle)
        if norm and f" {norm} " in hay:
            return True
    return False


def contains(prediction: str, golds: Iterable[str]) -> float:
    """1.0 if a normalised gold answer appears (as whole tokens) in the normalised prediction."""
    return float(text_contains(prediction, golds))


def ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return None if not values else sum(values) / len(values)


def refusal_scores(must_refuse: Sequence[bool], refused: Sequence[bool]) -> dict[str, float | None]:
    """Precision/recall of refusals on the items that must be refused, and the false-refusal rate.

    precision: of the items refused, the share that had to be; recall: of the items that had to be
    refused, the share that were; false_refusal_rate: of the answerable items, the share refused."""
    if len(must_refuse) != len(refused):
        raise ValueError("must_refuse and refused differ in length")
    both = sum(1 for m, r in zip(must_refuse, refused) if m and r)
    n_refused = sum(1 for r in refused if r)
    n_must = sum(1 for m in must_refuse if m)
    n_answerable = len(must_refuse) - n_must
    false_refusals = sum(1 for m, r in zip(must_refuse, refused) if not m and r)
    return {
        "refusal_precision": ratio(both, n_refused),
        "refusal_recall": ratio(both, n_must),
        "false_refusal_rate": ratio(false_refusals, n_answerable),
    }


def citation_scores(cited: Sequence[Sequence[bool]], answerable: Sequence[bool]) -> dict[str, float | None]:
    """Citation precision and recall.

    `cited[i]` holds, for each passage item i cites (empty when it refused), whether that passage
    contains a gold answer or evidence string. precision: share of all cited passages that do;
    recall: share of answerable items with at least one such citation."""
    if len(cited) != len(answerable):
        raise ValueError("cited and answerable differ in length")
    flat = [ok for item in cited for ok in item]
    good_items = sum(1 for item, a in zip(cited, answerable) if a and any(item))
    return {
        "citation_precision": ratio(sum(flat), len(flat)),
        "citation_recall": ratio(good_items, sum(1 for a in answerable if a)),
    }


def first_hit_rank(hits: Sequence[bool]) -> int | None:
    """1-based rank of the first retrieved passage that holds gold evidence, or None."""
    return next((i for i, hit in enumerate(hits, start=1) if hit), None)


def retrieval_scores(ranks: Sequence[int | None]) -> dict[str, float | None]:
    """hit@k (share of items with a gold passage among the k retrieved) and MRR (mean of 1/rank, 0 if none)."""
    return {
        "hit_at_k": mean(1.0 if r is not None else 0.0 for r in ranks),
        "mrr": mean(1.0 / r if r is not None else 0.0 for r in ranks),
    }


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    data = sorted(v for v in values if v is not None and not math.isnan(v))
    if not data:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100")
    pos = (len(data) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def sign_test(wins: int, losses: int) -> float | None:
    """Two-sided exact sign test on paired outcomes (items right in only one of two runs): the chance of a
    split at least this uneven if both runs were equally good. None when no item differs."""
    n = wins + losses
    if n == 0:
        return None
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)
