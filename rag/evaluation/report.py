"""A run's report: the JSON that keeps every item (with the model's draft and the refusal signals), a
printed table, Markdown with PNG plots, and the side-by-side comparison of two reports."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import InputError
from rag.evaluation import metrics as M
from rag.evaluation.scoring import (
    COUNT_METRICS,
    LATENCY_METRICS,
    LOWER_IS_BETTER,
    RATE_METRICS,
    ItemResult,
    refusals_by_reason,
)
from rag.evaluation.testsets import read_json

if TYPE_CHECKING:  # pragma: no cover

    pass

@dataclass
class Report:
    """What `evaluate` returns: aggregate metrics, the run's configuration and every item's result."""

    metrics: dict[str, float | int | None]
    config: dict[str, Any]
    items: list[ItemResult]
    partial: bool = False  # interrupted: only the items done so far are in it
    problems: list[str] = field(default_factory=list)  # test-set lines/items that could not be used

    def to_json(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "config": self.config, "partial": self.partial,
                "problems": self.problems, "items": [r.to_json() for r in self.items]}

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        tmp.replace(path)
        return path

    def table(self) -> str:
        reasons = refusals_by_reason(self.items)
        lines = [metrics_table(self.metrics, partial=self.partial)]
        if reasons:
            lines.append("refusals by reason: " + "; ".join(f"{k}: {v}" for k, v in reasons.items()))
        return "\n".join(lines)

    def write_markdown(self, path: str | Path, *, max_items: int = 300) -> list[Path]:
        """Write the Markdown report and its PNG plots beside it; returns every file written."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        metrics_png = path.with_name(f"{path.stem}-metrics.png")
        latency_png = path.with_name(f"{path.stem}-latency.png")
        plot_metrics(self.metrics, metrics_png, title=_title(self.config))
        plot_latency(self.items, latency_png)
        path.write_text(self._markdown(metrics_png.name, latency_png.name, max_items), encoding="utf-8")
        return [path, metrics_png, latency_png]

    def _markdown(self, metrics_png: str, latency_png: str, max_items: int) -> str:
        m, c = self.metrics, self.config
        lines = [f"# Evaluation: {c.get('testset_name', 'test set')}", ""]
        if self.partial:
            lines += [f"**Partial run**: interrupted after {m['n_items']} of {c.get('n_items_planned')} items; "
                      "the numbers cover only those.", ""]
        lines += ["## Configuration", "", "| setting | value |", "| --- | --- |"]
        lines += [f"| {k} | {_md(v)} |" for k, v in c.items()]
        lines += ["", "## Metrics", "", "| metric | value | over |", "| --- | ---: | --- |"]
        lines += [f"| {k} | {fmt(m.get(k))} | {over} |" for k, over in {**RATE_METRICS, **LATENCY_METRICS}.items()]
        lines += ["", " · ".join(f"{k} = {m.get(k)}" for k in COUNT_METRICS), "",
                  f"![metrics]({metrics_png})", "", f"![latency]({latency_png})", ""]
        reasons = refusals_by_reason(self.items)
        if reasons:
            lines += ["## Refusals by reason", "", "| reason | answers |", "| --- | ---: |"]
            lines += [f"| {_md(k)} | {v} |" for k, v in reasons.items()] + [""]
        if self.problems:
            lines += ["## Test-set problems (items skipped)", ""] + [f"- {_md(p)}" for p in self.problems] + [""]
        lines += ["## Items", "", "| id | verdict | F1 | answer | gold | cited |", "| --- | --- | ---: | --- | --- | --- |"]
        order = sorted(self.items, key=lambda r: (r.correct is not False, r.correct is None))  # misses first
        for r in order[:max_items]:
            gold = "(refuse)" if r.must_refuse else " / ".join(r.gold_answers[:3])
            said = r.error or (f"{r.answer} ({r.refusal_reason})" if r.abstained and r.refusal_reason else r.answer)
            lines.append(f"| {_md(r.id)} | {r.verdict} | {fmt(r.f1)} | {_md(_cut(said, 140))} "
                         f"| {_md(_cut(gold, 60))} | {_md(cited_where(r.citations))} |")
        if len(order) > max_items:
            lines += ["", f"{len(order) - max_items} more items are in the JSON report."]
        return "\n".join(lines) + "\n"


def cited_where(citations: list[dict[str, Any]]) -> str:
    """Where each citation points: "[1] deck.pptx, slide 3 (supports)"; page and location when known."""
    out = []
    for c in citations:
        where = ", ".join(str(x) for x in (c.get("source"), f"page {c['page']}" if c.get("page") else None,
                                            c.get("location")) if x)
        out.append(f"[{c.get('n')}] {where}" + (" (supports)" if c.get("supports") else ""))
    return "; ".join(out)


def _title(config: dict[str, Any]) -> str:
    llm = config.get("llm")
    model = llm if llm and "/" not in str(llm) else config.get("model", "")  # a fake's name, else the setting
    return f"{config.get('testset_name', '')} · {model} · top_k={config.get('top_k', '')}"


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _cut(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def metrics_table(metrics: dict[str, Any], *, partial: bool = False) -> str:
    rows = [("metric", "value", "over")]
    rows += [(k, fmt(metrics.get(k)), over) for k, over in {**RATE_METRICS, **LATENCY_METRICS}.items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b:>7}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * (width + 2 + 7 + 2 + 30))
    lines.append("  ".join(f"{k}={metrics.get(k)}" for k in COUNT_METRICS))
    if partial:
        lines.append("PARTIAL: interrupted; only the items done so far are scored")
    return "\n".join(lines)


def plot_metrics(metrics: dict[str, Any], path: Path, title: str = "") -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(RATE_METRICS)
    values = [metrics.get(n) for n in names]
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ys = list(range(len(names)))[::-1]
    colors = ["#c0504d" if n in LOWER_IS_BETTER else "#4f81bd" for n in names]
    ax.barh(ys, [v or 0.0 for v in values], color=colors)
    for y, v in zip(ys, values):
        ax.text((v or 0.0) + 0.01, y, "n/a" if v is None else f"{v:.2f}", va="center", fontsize=8)
    ax.set_yticks(ys, names, fontsize=8)
    ax.set_xlim(0, 1.12)
    ax.set_xlabel("score (red: lower is better)")
    ax.set_title(title or "metrics", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_latency(items: list[ItemResult], path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series = {name: [r.timings[key] for r in items if r.error is None and key in r.timings]
              for name, key in (("retrieve", "retrieve"), ("first token", "first_token"),
                                ("first verified", "first_verified"), ("total", "total"))}
    fig = Figure(figsize=(9, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    hist, box = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    total = series["total"]
    if total:
        lo = max(min(total), 1e-3)
        hi = max(max(total), lo * 2)
        n_bins = min(30, max(5, len(total) // 3))
        # log-spaced bins: early refusals take milliseconds, generated answers seconds, outliers minutes
        hist.hist(total, bins=[lo * (hi / lo) ** (i / n_bins) for i in range(n_bins + 1)], color="#4f81bd")
        hist.set_xscale("log")
        for q, style in ((50, "--"), (95, ":")):
            v = M.percentile(total, q)
            hist.axvline(v, color="black", linestyle=style, label=f"p{q} {v:.2f}s")
        hist.legend(fontsize=8)
    else:
        hist.text(0.5, 0.5, "no timings", ha="center", transform=hist.transAxes)
    hist.set_xlabel("seconds per answer (log)")
    hist.set_ylabel("questions")
    hist.set_title("answer latency", fontsize=9)
    shown = {k: v for k, v in series.items() if v}
    if shown:
        try:
            box.boxplot(list(shown.values()), orientation="horizontal", showfliers=True)
        except TypeError:  # matplotlib < 3.10
            box.boxplot(list(shown.values()), vert=False, showfliers=True)
        box.set_yticks(range(1, len(shown) + 1), list(shown), fontsize=8)
        box.set_xscale("log")
    box.set_xlabel("seconds (log)")
    box.set_title("latency by stage", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    data = read_json(path, "report", "report")
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise InputError(f"{path} is not a rag eval JSON report (no 'metrics')")
    return data


def _delta(a: Any, b: Any) -> str:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return f"{b - a:+.3f}" if isinstance(a, float) or isinstance(b, float) else f"{b - a:+d}"
    return ""


def compare_reports(a: dict[str, Any], b: dict[str, Any], *, names: tuple[str, str] = ("A", "B"),
                    markdown: bool = False, max_changes: int = 20) -> str:
    """Two JSON reports side by side: metrics with B - A, differing settings, items that changed."""
    ma, mb = a["metrics"], b["metrics"]
    keys = [k for k in (*RATE_METRICS, *LATENCY_METRICS, *COUNT_METRICS) if k in ma or k in mb]
    rows = [(k, fmt(ma.get(k)), fmt(mb.get(k)), _delta(ma.get(k), mb.get(k))) for k in keys]
    ca, cb = a.get("config", {}), b.get("config", {})
    skip = {"started_at", "duration_s", "git_commit", "index_dir"}
    config_rows = [(k, fmt(ca.get(k)), fmt(cb.get(k))) for k in dict.fromkeys([*ca, *cb])
                   if k not in skip and ca.get(k) != cb.get(k)]
    ia = {i["id"]: i for i in a.get("items", [])}
    ib = {i["id"]: i for i in b.get("items", [])}
    common = [k for k in ia if k in ib]
    better = [k for k in common if ia[k].get("correct") is False and ib[k].get("correct") is True]
    worse = [k for k in common if ia[k].get("correct") is True and ib[k].get("correct") is False]
    na, nb = names
    out: list[str] = []
    if markdown:
        out += [f"# Comparison: {na} vs {nb}", "", f"| metric | {na} | {nb} | {nb} − {na} |",
                "| --- | ---: | ---: | ---: |"]
        out += [f"| {k} | {x} | {y} | {d} |" for k, x, y, d in rows]
        if config_rows:
            out += ["", "| setting | " + na + " | " + nb + " |", "| --- | --- | --- |"]
            out += [f"| {k} | {_md(x)} | {_md(y)} |" for k, x, y in config_rows]
        out += [""]
    else:
        width = max(len(r[0]) for r in rows)
        out.append(f"{'metric':<{width}}  {na:>9}  {nb:>9}  {nb + ' - ' + na:>9}")
        out.append("-" * (width + 33))
        out += [f"{k:<{width}}  {x:>9}  {y:>9}  {d:>9}" for k, x, y, d in rows]
        if config_rows:
            out += ["", "settings that differ:"]
            out += [f"  {k}: {x} -> {y}" for k, x, y in config_rows]
        out.append("")
    for flag, label in ((a.get("partial"), na), (b.get("partial"), nb)):
        if flag:
            out.append(f"note: {label} is a partial (interrupted) run")
    p = M.sign_test(len(better), len(worse))
    chance = "" if p is None else (f"; sign test p = {p:.2f} (the chance of a split at least this uneven "
                                   "if the two runs were equally good)")
    out.append(f"items in both: {len(common)}; right in {nb} only: {len(better)}; right in {na} only: {len(worse)}{chance}")
    for title, ids in ((f"right in {nb} only", better), (f"right in {na} only", worse)):
        for k in ids[:max_changes]:
            out.append(f"{'- ' if markdown else '  '}{title}: {k}: {_cut(ib[k]['question'], 70)} "
                       f"({ia[k].get('verdict')} -> {ib[k].get('verdict')})")
    return "\n".join(out) + "\n"
