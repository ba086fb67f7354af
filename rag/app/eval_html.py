"""HTML of the Evaluate tab (rag/app/ui_evaluate.py): a run's progress, its metrics, its items with the
filters. Every piece of text from a test set, an answer or a report goes through `esc`."""
from __future__ import annotations

from typing import Any

from rag.app.render import error_html, esc
from rag.errors import InputError
from rag.evaluation.jobs import CANCELLED, DONE, FAILED, Progress
from rag.evaluation.report import cited_where, fmt
from rag.evaluation.scoring import COUNT_METRICS, LATENCY_METRICS, RATE_METRICS

FILTERS = ("all", "wrong", "refused", "false refusal", "unsupported")

EVAL_CSS = """
.rag-eval-items { border-collapse: collapse; width: 100%; font-size: 0.9em; }
.rag-eval-items td, .rag-eval-items th { vertical-align: top; padding: 4px 8px; text-align: left;
  border-bottom: 1px solid var(--border-color-primary, #ddd); }
.rag-eval-bad { color: #b91c1c; font-weight: 600; }
.rag-eval-good { color: #15803d; font-weight: 600; }
.rag-eval-draft pre, .rag-eval-compare { white-space: pre-wrap; font-size: 0.9em; margin: 0; }
.rag-eval-waiting { color: #b45309; font-weight: 600; }
"""


def progress_html(p: Progress) -> str:
    head = {DONE: "Finished", CANCELLED: "Cancelled", FAILED: "Failed"}.get(p.state, "Running")
    parts = [f'<div id="rag-eval-status" data-state="{esc(p.state)}"><b>{head}</b>: '
             f'{p.done} / {p.total} items done in {esc(p.collection)} · right {p.right}']
    for key in ("contains", "refusal_recall", "false_refusal_rate"):
        if p.metrics.get(key) is not None:
            parts.append(f" · {esc(key)} {fmt(p.metrics[key])}")
    if p.waiting:
        parts.append(' · <span class="rag-eval-waiting">waiting for the model: a chat question goes first</span>')
    if p.state != "running" and p.done:
        parts.append(f' · run <code>{esc(p.run_id)}</code> kept')
    parts.append("</div>")
    if p.error:
        parts.append(error_html(p.error))
    if p.problems:
        parts.append('<div class="rag-muted">Skipped test items: ' + esc("; ".join(p.problems[:5])) +
                     (f" and {len(p.problems) - 5} more" if len(p.problems) > 5 else "") + "</div>")
    return "".join(parts)



def metrics_html(metrics: dict[str, Any], partial: bool = False) -> str:
    rows = "".join(f"<tr><td>{esc(k)}</td><td>{esc(fmt(metrics.get(k)))}</td><td class=\"rag-muted\">{esc(over)}</td></tr>"
                   for k, over in {**RATE_METRICS, **LATENCY_METRICS}.items())
    counts = " · ".join(f"{esc(k)} = {esc(metrics.get(k))}" for k in COUNT_METRICS)
    note = '<div class="rag-eval-bad">Partial run: cancelled; the numbers cover the items done.</div>' if partial else ""
    return (f'{note}<table class="rag-eval-items" id="rag-eval-metrics"><tr><th>metric</th><th>value</th>'
            f'<th>over</th></tr>{rows}</table><div class="rag-muted">{counts}</div>')


def item_matches(item: dict[str, Any], which: str | None) -> bool:
    """The item filters: wrong (scored wrong, refusals included), refused, false refusal, unsupported
    (answered with a sentence no passage backs)."""
    if not which or which == "all":
        return True
    if which == "wrong":
        return item.get("correct") is False
    if which == "refused":
        return bool(item.get("abstained"))
    if which == "false refusal":
        return item.get("verdict") == "false refusal"
    if which == "unsupported":
        supported = (item.get("signals") or {}).get("supported")
        return not item.get("abstained") and supported is not None and supported < 1.0
    raise InputError(f"bad filter {which!r}; choose one of: {', '.join(FILTERS)}")


def items_html(report: dict[str, Any], which: str | None = "all") -> str:
    items = [i for i in report.get("items", []) if item_matches(i, which)]
    if not items:
        return f'<div class="rag-muted" id="rag-eval-items">No items ({esc(which)}).</div>'
    rows = []
    for i in items:
        good = i.get("correct")
        cls = "rag-eval-good" if good else ("rag-eval-bad" if good is False else "")
        gold = "(must refuse)" if i.get("must_refuse") else " / ".join(i.get("gold_answers") or [])
        said = i.get("error") or i.get("answer") or ""
        cites = cited_where(i.get("citations") or [])
        reason = i.get("refusal_reason") or ""
        draft = i.get("model_text") or ""
        rows.append(
            f'<tr class="rag-eval-item" data-id="{esc(i.get("id"))}"><td>{esc(i.get("id"))}</td>'
            f'<td class="{cls}">{esc(i.get("verdict"))}</td><td>{esc(i.get("question"))}</td><td>{esc(gold)}</td>'
            f'<td>{esc(said)}' + (f'<div class="rag-muted">cited: {esc(cites)}</div>' if cites else "") +
            (f'<div class="rag-muted">refusal reason: {esc(reason)}</div>' if reason else "") +
            (f'<details class="rag-eval-draft"><summary>model draft</summary><pre>{esc(draft)}</pre></details>'
             if draft else "") + "</td></tr>")
    return (f'<div id="rag-eval-items"><div class="rag-muted">{len(items)} item(s) ({esc(which)})</div>'
            '<table class="rag-eval-items"><tr><th>id</th><th>verdict</th><th>question</th><th>gold</th>'
            f'<th>answer</th></tr>{"".join(rows)}</table></div>')
