"""Calibrating the retrieval gate of the refusal: what each `min_score` would have done, from one run.

An evaluation run made with a low `min_score` (ideally 0) records, per item, the best retrieval
score, whether the answer was refused for another reason (model, support check) and whether it
was right. Raising the gate to t refuses every item whose best score is below t and leaves the
others as they were, so one run gives the whole trade-off curve (refusal recall against
false-refusal rate) without asking the model again. Thresholds below the run's own `min_score`
cannot be simulated (those items were never sent to the model) and are left out.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rag.errors import InputError
from rag.evaluation.scoring import ItemResult, compute_metrics


@dataclass(frozen=True)
class CurvePoint:
    threshold: float
    refusal_recall: float  # must-refuse items refused
    false_refusal_rate: float  # answerable items refused
    contains: float  # answerable items answered with a gold answer in the text
    f1: float  # mean token F1 over answerable items (a refusal scores 0)
    correct: float  # all items: refused when they must be, right answer otherwise


def refusal_curve(report: dict[str, Any], thresholds: Sequence[float] | None = None) -> list[CurvePoint]:
    """The curve over `thresholds` (default: 0.00..0.70 in steps of 0.02) for a JSON report's items."""
    run_min = float(report.get("config", {}).get("min_score") or 0.0)
    items = [i for i in report.get("items", []) if i.get("error") is None]
    refuse = [i for i in items if i["must_refuse"]]
    answerable = [i for i in items if not i["must_refuse"]]
    if not refuse or not answerable:
        raise InputError("the report needs both answerable and must-refuse items to draw a refusal curve")
    if thresholds is None:
        thresholds = [round(0.02 * k, 2) for k in range(36)]
    points = []
    for t in thresholds:
        if t < run_min - 1e-9:
            continue

        def refused(item: dict[str, Any]) -> bool:
            return bool(item["abstained"]) or gated(item, t)

        rr = sum(refused(i) for i in refuse) / len(refuse)
        frr = sum(refused(i) for i in answerable) / len(answerable)
        hits = sum(1 for i in answerable if not refused(i) and i.get("contains"))
        f1 = sum(i.get("f1") or 0.0 for i in answerable if not refused(i)) / len(answerable)
        correct = (sum(refused(i) for i in refuse) + hits) / len(items)
        points.append(CurvePoint(threshold=t, refusal_recall=round(rr, 4), false_refusal_rate=round(frr, 4),
                                 contains=round(hits / len(answerable), 4), f1=round(f1, 4),
                                 correct=round(correct, 4)))
    if not points:
        raise InputError(f"the run used min_score={run_min}; give thresholds at or above it")
    return points


def best_score(item: dict[str, Any]) -> float:
    scores = [r["score"] for r in item.get("retrieved", [])]
    return max(scores) if scores else 0.0


def gated(item: dict[str, Any], min_score: float) -> bool:
    """Would a gate at `min_score` have refused this answered item (its best passage scores below it)?"""
    return not item["abstained"] and best_score(item) < min_score


def choose_threshold(points: Sequence[CurvePoint], max_false_refusal: float = 0.15) -> CurvePoint:
    """The highest refusal recall whose false-refusal rate stays within the budget. When no
    threshold is within it, the highest refusal recall among those with the lowest false-refusal
    rate: whatever the gate adds there comes at no extra cost. Ties go to the lower threshold."""
    within = [p for p in points if p.false_refusal_rate <= max_false_refusal]
    if not within:
        lowest = min(p.false_refusal_rate for p in points)
        within = [p for p in points if p.false_refusal_rate == lowest]
    return max(within, key=lambda p: (p.refusal_recall, p.correct, -p.threshold))


def curve_table(points: Sequence[CurvePoint], marked: CurvePoint | None = None) -> str:
    lines = ["| min_score | refusal recall | false-refusal rate | contains | f1 | correct (all items) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p in points:
        mark = " **(chosen)**" if marked is not None and p == marked else ""
        lines.append(f"| {p.threshold:.2f}{mark} | {p.refusal_recall:.3f} | {p.false_refusal_rate:.3f} | "
                     f"{p.contains:.3f} | {p.f1:.3f} | {p.correct:.3f} |")
    return "\n".join(lines) + "\n"


def plot_refusal_curve(curves: dict[str, Sequence[CurvePoint]], path: str | Path,
                       marked: CurvePoint | None = None) -> Path:
    """Refusal recall against false-refusal rate, one line per run, thresholds annotated."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, points in curves.items():
        xs = [p.false_refusal_rate for p in points]
        ys = [p.refusal_recall for p in points]
        ax.plot(xs, ys, marker=".", label=name)
        for p in points[:: max(1, len(points) // 8)]:
            ax.annotate(f"{p.threshold:.2f}", (p.false_refusal_rate, p.refusal_recall), fontsize=7,
                        textcoords="offset points", xytext=(4, -8))
    if marked is not None:
        ax.scatter([marked.false_refusal_rate], [marked.refusal_recall], s=80, facecolors="none",
                   edgecolors="red", label=f"chosen min_score {marked.threshold:.2f}", zorder=3)
    ax.set_xlabel("false-refusal rate (answerable items refused)")
    ax.set_ylabel("refusal recall (unanswerable items refused)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Refusal trade-off by min_score (labels: threshold)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def curve_json(points: Sequence[CurvePoint]) -> list[dict[str, float]]:
    return [asdict(p) for p in points]


def rescore(report: dict[str, Any], min_score: float | None = None,
            ids: set[str] | None = None) -> dict[str, float | int | None]:
    """The report's metrics as if its run had used `min_score` (>= the run's own), optionally only
    over the items whose id is in `ids` (e.g. the fixed sample of another run). Gated items become
    refusals with no citations; everything else is scored exactly as the run scored it."""
    run_min = float(report.get("config", {}).get("min_score") or 0.0)
    if min_score is not None and min_score < run_min - 1e-9:
        raise InputError(f"the run used min_score={run_min}; cannot rescore at {min_score}")
    results = []
    for i in report.get("items", []):
        if ids is not None and i["id"] not in ids:
            continue
        r = ItemResult(id=i["id"], question=i["question"], must_refuse=i["must_refuse"],
                       gold_answers=list(i.get("gold_answers") or []), answer=i["answer"], abstained=i["abstained"],
                       refusal_reason=i.get("refusal_reason", ""), citations=list(i.get("citations") or []),
                       retrieved=list(i.get("retrieved") or []), exact_match=i.get("exact_match"), f1=i.get("f1"),
                       contains=i.get("contains"), first_hit_rank=i.get("first_hit_rank"),
                       timings=dict(i.get("timings") or {}), error=i.get("error"))
        if min_score is not None and gated(i, min_score):
            r.abstained, r.citations, r.answer = True, [], "Not in the documents."
            r.refusal_reason = f"no passage is relevant enough (rescored at min_score {min_score})"
            if not r.must_refuse:
                r.exact_match = r.f1 = r.contains = 0.0
        results.append(r)
    if not results:
        raise InputError("no items left to score (do the ids match?)")
    return compute_metrics(results)


# -- all the refusal gates together, across test sets ------------------------------------------

@dataclass(frozen=True)
class Gates:
    """The refusal thresholds an answer is decided by (see rag/answer/answerer.py)."""

    min_score: float  # retrieval: refuse before generating when the best passage scores below
    refusal_prob: float  # refuse an answer when the model's own refusal probability reaches this
    retry_below: float  # ask again, refusal banned, when the model refused with probability below this
    # the claim check: refuse an answer none of whose judged sentences scores this (0 = off). Re-decided
    # from signals.claims, so the run must keep every sentence (RAG_CLAIM_THRESHOLD=0); an answer
    # that keeps some sentences is scored on its whole recorded text (a dropped sentence's effect on
    # `contains` is not simulated).
    claim_threshold: float = 0.0


def decided(item: dict[str, Any], gates: Gates) -> tuple[bool, bool]:
    """(refused, right) for one item of a run made with min_score 0, refusal_prob 1 and retry_below 1,
    as if the run had used `gates`: every signal it needs is in the item."""
    signals = item.get("signals") or {}
    p = signals.get("p_refusal")
    score = signals.get("best_score")
    score = best_score(item) if score is None else score
    refused = bool(item["abstained"])
    answered_right = bool(item.get("contains"))
    if score < gates.min_score:
        refused = True
    elif signals.get("retried") and p is not None and p >= gates.retry_below:
        refused, answered_right = True, False  # the first draft, a refusal, would have stood
    elif not refused and p is not None and p >= gates.refusal_prob:
        refused = True
    elif not refused and gates.claim_threshold > 0:
        judged = [c for c in signals.get("claims") or [] if c is not None]
        if judged and max(judged) < gates.claim_threshold:
            refused = True
    right = refused if item["must_refuse"] else (not refused and answered_right)
    return refused, right


def gate_metrics(items: Sequence[dict[str, Any]], gates: Gates) -> dict[str, float]:
    """Refusal recall, false-refusal rate, contains and correct (all items) under `gates`."""
    rows = [(i["must_refuse"], *decided(i, gates)) for i in items if i.get("error") is None]
    refuse = [r for r in rows if r[0]]
    answerable = [r for r in rows if not r[0]]
    return {
        "refusal_recall": sum(r[1] for r in refuse) / len(refuse) if refuse else float("nan"),
        "false_refusal_rate": sum(r[1] for r in answerable) / len(answerable) if answerable else float("nan"),
        "contains": sum(r[2] for r in answerable) / len(answerable) if answerable else float("nan"),
        "correct": sum(r[2] for r in rows) / len(rows) if rows else float("nan"),
    }


GATE_GRID = [Gates(m, r, t, c) for m in (0.0, 0.1, 0.2, 0.3, 0.4) for r in (0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
             for t in (0.0, 0.2, 0.3, 0.4, 0.5)
             for c in (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)]


def _objective(per_set: Sequence[Sequence[dict[str, Any]]], gates: Gates) -> float:
    """The mean over test sets of `correct` (every set weighs the same, whatever its size)."""
    return sum(gate_metrics(items, gates)["correct"] for items in per_set) / len(per_set)


def cross_validate_gates(reports: dict[str, dict[str, Any]], folds: int = 5, seed: int = 0,
                         grid: Sequence[Gates] = GATE_GRID) -> dict[str, Any]:
    """Choose the gates on all test sets together, with held-out folds: each set's items are split
    into `folds` parts; for each part the gates that maximise the mean `correct` over the other parts
    of every set are applied to it. Returns the held-out metrics per set (every item is scored once,
    by gates chosen without it), the gates each fold chose, and the gates chosen on everything."""
    import random

    for name, report in reports.items():
        config = report.get("config", {})
        if float(config.get("min_score") or 0) > 0 or float(config.get("refusal_prob") or 1) < 1 \
                or float(config.get("retry_below") or 0) < 1 \
                or (config.get("claim_check") and float(config.get("claim_threshold") or 0) > 0):
            raise InputError(f"{name}: calibrate from runs made with RAG_MIN_SCORE=0 RAG_REFUSAL_PROB=1 "
                             "RAG_RETRY_BELOW=1 RAG_CLAIM_THRESHOLD=0, so every signal is recorded")
    parts: dict[str, list[list[dict[str, Any]]]] = {}
    for name, report in reports.items():
        items = [i for i in report.get("items", []) if i.get("error") is None]
        order = list(range(len(items)))
        random.Random(seed).shuffle(order)
        parts[name] = [[items[j] for j in order[k::folds]] for k in range(folds)]
    held_out: dict[str, list[tuple[dict[str, Any], Gates]]] = {name: [] for name in reports}
    chosen = []
    for k in range(folds):
        train = [[i for f, part in enumerate(ps) if f != k for i in part] for ps in parts.values()]
        best = max(grid, key=lambda g: (_objective(train, g), -g.min_score, g.refusal_prob, -g.retry_below,
                                        -g.claim_threshold))
        chosen.append(best)
        for name, ps in parts.items():
            held_out[name].extend((i, best) for i in ps[k])
    results = {}
    for name, pairs in held_out.items():
        rows = [(i["must_refuse"], *decided(i, g)) for i, g in pairs]
        refuse = [r for r in rows if r[0]]
        answerable = [r for r in rows if not r[0]]
        results[name] = {
            "refusal_recall": round(sum(r[1] for r in refuse) / len(refuse), 4) if refuse else None,
            "false_refusal_rate": round(sum(r[1] for r in answerable) / len(answerable), 4) if answerable else None,
            "contains": round(sum(r[2] for r in answerable) / len(answerable), 4) if answerable else None,
            "correct": round(sum(r[2] for r in rows) / len(rows), 4),
        }
    everything = [[i for part in ps for i in part] for ps in parts.values()]
    final = max(grid, key=lambda g: (_objective(everything, g), -g.min_score, g.refusal_prob, -g.retry_below,
                                     -g.claim_threshold))
    return {"held_out": results, "fold_gates": [asdict(g) for g in chosen], "chosen": asdict(final),
            "chosen_metrics": {name: {k: (None if v != v else round(v, 4)) for k, v in gate_metrics(items, final).items()}
                               for name, items in zip(parts, everything)}}
