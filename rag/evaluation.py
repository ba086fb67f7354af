"""`rag eval`: ask every question of a test set, score the answers without an LLM judge, report.

    test set (rag.testsets) -> for each item: RAG.ask -> score (rag.metrics) -> Report
    Report -> printed table, JSON, Markdown with PNG plots; two JSON reports -> side-by-side comparison

Python:
    from rag.evaluation import evaluate
    from rag.testsets import load_testset
    report = evaluate(rag, load_testset("seeds/testset.jsonl"))
    report.metrics["contains"], report.write_json("out.json"), report.write_markdown("out.md")

What is scored (see docs/evaluation.md):
* answers (answerable items; a refusal counts as wrong): exact match, token F1, `contains`, after the
  citation markers are stripped, SQuAD-normalised, max over the acceptable answers;
* refusals: precision/recall on the items that must be refused, false-refusal rate on the others;
* citations: a cited passage is right when it holds a gold answer or evidence string;
* retrieval: hit@k and MRR of the first retrieved passage holding one;
* latency: p50/p95 of retrieval, time to first token and the whole answer.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag import metrics as M
from rag.citations import strip_markers
from rag.config import PROJECT_ROOT, Settings
from rag.errors import InputError
from rag.testsets import TestItem, TestSet, load_testset, read_json
from rag.types import Answer, short_source

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.llms import LLM

    from rag.embedding import Embedder
    from rag.pipeline import RAG

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 3, 130

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
    "retrieve_p50_s": "retrieval",
    "retrieve_p95_s": "retrieval",
}
COUNT_METRICS = ("n_items", "n_answerable", "n_must_refuse", "n_refused", "n_errors")
LOWER_IS_BETTER = {"false_refusal_rate", *LATENCY_METRICS}


# -- per-item results -------------------------------------------------------------------------

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
        {"n": c.n, "source": short_source(c.source), "start": c.start, "end": c.end,
         "score": round(float(c.score), 4), "supports": M.text_contains(c.text, gold)}
        for c in answer.citations
    ]
    retrieved = [
        {"rank": rank, "source": short_source(p.chunk.source), "start": p.start, "end": p.end,
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
    out.update({
        "latency_p50_s": M.percentile(total, 50), "latency_p95_s": M.percentile(total, 95),
        "ttft_p50_s": M.percentile(first, 50), "ttft_p95_s": M.percentile(first, 95),
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


# -- the report ---------------------------------------------------------------------------------

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
        return metrics_table(self.metrics, partial=self.partial)

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
        lines += [f"| {k} | {_fmt(m.get(k))} | {over} |" for k, over in {**RATE_METRICS, **LATENCY_METRICS}.items()]
        lines += ["", " · ".join(f"{k} = {m.get(k)}" for k in COUNT_METRICS), "",
                  f"![metrics]({metrics_png})", "", f"![latency]({latency_png})", ""]
        if self.problems:
            lines += ["## Test-set problems (items skipped)", ""] + [f"- {_md(p)}" for p in self.problems] + [""]
        lines += ["## Items", "", "| id | verdict | F1 | answer | gold |", "| --- | --- | ---: | --- | --- |"]
        order = sorted(self.items, key=lambda r: (r.correct is not False, r.correct is None))  # misses first
        for r in order[:max_items]:
            gold = "(refuse)" if r.must_refuse else " / ".join(r.gold_answers[:3])
            said = r.error or (f"{r.answer} ({r.refusal_reason})" if r.abstained and r.refusal_reason else r.answer)
            lines.append(f"| {_md(r.id)} | {r.verdict} | {_fmt(r.f1)} | {_md(_cut(said, 140))} "
                         f"| {_md(_cut(gold, 60))} |")
        if len(order) > max_items:
            lines += ["", f"{len(order) - max_items} more items are in the JSON report."]
        return "\n".join(lines) + "\n"


def _title(config: dict[str, Any]) -> str:
    llm = config.get("llm")
    model = llm if llm and "/" not in str(llm) else config.get("model", "")  # a fake's name, else the setting
    return f"{config.get('testset_name', '')} · {model} · top_k={config.get('top_k', '')}"


def _fmt(value: Any) -> str:
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
    rows += [(k, _fmt(metrics.get(k)), over) for k, over in {**RATE_METRICS, **LATENCY_METRICS}.items()]
    width = max(len(r[0]) for r in rows)
    lines = [f"{a:<{width}}  {b:>7}  {c}" for a, b, c in rows]
    lines.insert(1, "-" * (width + 2 + 7 + 2 + 30))
    lines.append("  ".join(f"{k}={metrics.get(k)}" for k in COUNT_METRICS))
    if partial:
        lines.append("PARTIAL: interrupted; only the items done so far are scored")
    return "\n".join(lines)


# -- plots (matplotlib's Agg canvas directly: no pyplot global state, no display) ---------------

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
              for name, key in (("retrieve", "retrieve"), ("first token", "first_token"), ("total", "total"))}
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


# -- running --------------------------------------------------------------------------------------

def evaluate(rag: "RAG", testset: TestSet | Iterable[TestItem] | str | Path, *, limit: int | None = None,
             sample: int | None = None, progress: bool = False, top_k: int | None = None,
             checkpoint: Callable[[Report], None] | None = None, checkpoint_every: int = 25) -> Report:
    """Ask every question (the first `limit` in file order, or a fixed seeded `sample` of them kept in
    file order: the same items on every run), score, and return the Report.

    The index must already hold the documents (see `open_rag_for` for SQuAD contexts and --docs).
    Ctrl-C stops the loop and returns a valid report of the items done so far, with `partial=True`.
    An item whose question raises an error is recorded with `error` and left out of the scores.
    `checkpoint`, if given, receives a partial Report every `checkpoint_every` items (long runs)."""
    if isinstance(testset, (str, Path)):
        testset = load_testset(testset)
    elif not isinstance(testset, TestSet):
        testset = TestSet(path=None, format="items", items=list(testset))
    if limit is not None and limit < 1:
        raise InputError(f"limit={limit} must be at least 1")
    if sample is not None and sample < 1:
        raise InputError(f"sample={sample} must be at least 1")
    items = sample_items(testset.items, sample) if sample else list(testset.items)
    items = items[:limit] if limit else items
    config = run_config(rag, testset, limit=limit, n_planned=len(items), top_k=top_k)
    config["sample"] = sample
    results: list[ItemResult] = []
    partial = False
    started = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(items, desc="eval", unit="q", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for item in bar:
            try:
                answer = rag.ask(item.question, top_k=top_k)
            except Exception as exc:  # one failing question must not end the run; it is reported
                results.append(ItemResult(id=item.id, question=item.question, must_refuse=item.must_refuse,
                                          gold_answers=list(item.answers), answer="", abstained=False,
                                          error=f"{type(exc).__name__}: {exc}"))
                continue
            results.append(score_item(item, answer))
            if checkpoint is not None and len(results) % checkpoint_every == 0 and len(results) < len(items):
                checkpoint(_report(results, config, testset, started, rag, partial=True))
            if progress:
                right = sum(1 for r in results if r.correct)
                last = answer.timings.get("total", 0.0)
                bar.set_postfix_str(f"right {right}/{len(results)}, last {last:.1f}s", refresh=False)
    except KeyboardInterrupt:
        partial = True
    finally:
        bar.close()
    return _report(results, config, testset, started, rag, partial=partial)


def _report(results: list[ItemResult], config: dict[str, Any], testset: TestSet, started: float, rag: "RAG",
            *, partial: bool) -> Report:
    config = {**config, "duration_s": round(time.perf_counter() - started, 2), "n_items": len(results)}
    if getattr(rag, "_llm", None) is not None:  # only if it was loaded; never load a model just to name it
        config["llm"] = getattr(rag._llm.metadata, "model_name", None)
    return Report(metrics=compute_metrics(results), config=config, items=list(results), partial=partial,
                  problems=[str(p) for p in testset.problems])


def sample_items(items: list[TestItem], n: int, seed: int = 0) -> list[TestItem]:
    """A fixed subset: n items drawn with a seeded RNG, in file order (comparable across runs)."""
    if n >= len(items):
        return list(items)
    keep = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in keep]


def run_config(rag: "RAG", testset: TestSet, *, limit: int | None, n_planned: int,
               top_k: int | None = None) -> dict[str, Any]:
    s = rag.settings
    manifest = rag.store.manifest
    # Every setting, so a new one can never drop out of the reports; then what this run adds.
    settings = {f.name: (str(v) if isinstance(v, Path) else v)
                for f in dataclasses.fields(s) if f.name not in ("api_key",) for v in [getattr(s, f.name)]}
    return {
        **settings,
        "testset": str(testset.path) if testset.path else None,
        "testset_name": testset.path.name if testset.path else "items",
        "testset_format": testset.format,
        "n_items_in_testset": len(testset.items),
        "limit": limit,
        "n_items_planned": n_planned,
        "n_items": 0,
        "top_k": top_k or s.top_k,
        "context_used": "corpus" if rag.corpus is not None and rag.corpus.fits() else "retrieval",
        "embed_model": manifest.embed_model,
        "embed_backend": s.embed_backend,
        "chunk_size": manifest.chunk_size,
        "chunk_overlap": manifest.chunk_overlap,
        "index_dir": str(rag.store.directory),
        "n_documents": len(rag.store.docs),
        "n_chunks": len(rag.store.chunks),
        "git_commit": git_commit(),
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def git_commit() -> str | None:
    """HEAD of the project's checkout (with '-dirty' if it has local changes), or None."""
    try:
        head = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


# -- which index --------------------------------------------------------------------------------

def derived_index_dir(settings: Settings, source: Path, kind: str) -> Path:
    """An index folder of its own for a document set, keyed by its path and the embedding/chunk settings."""
    key = f"{source.expanduser().resolve()}|{settings.embed_model}|{settings.chunk_size}|{settings.chunk_overlap}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]
    return settings.cache_dir / "eval-index" / f"{kind}-{source.stem or 'docs'}-{digest}"


def write_contexts(testset: TestSet, folder: Path) -> list[Path]:
    """Write each SQuAD context to its own text file (unchanged files are left alone)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in testset.documents:
        path = folder / name
        data = text.encode("utf-8")
        if not (path.is_file() and path.read_bytes() == data):
            path.write_bytes(data)
        paths.append(path)
    return paths


def open_rag_for(testset: TestSet, settings: Settings, *, docs: Path | None = None, index: Path | None = None,
                 embedder: "Embedder | None" = None, llm: "LLM | None" = None, progress: bool = False) -> "RAG":
    """Build or reuse the index a test set is asked against.

    SQuAD: its contexts, in `index` or a folder derived from the test set's path (contexts are written
    under `<index>/contexts/`). JSONL with `docs`: those documents, in `index` or a folder derived from
    the docs path. JSONL without docs: the configured index (by default index/, built from seeds/).
    The test set file itself is never ingested."""
    from rag.pipeline import RAG

    if testset.format == "squad":
        if docs is not None:
            raise InputError("--docs is for JSONL test sets; a SQuAD file brings its own documents (its contexts)")
        directory = index or derived_index_dir(settings, testset.path or Path("squad"), "squad")
        rag = RAG.open(directory, settings, embedder=embedder, llm=llm, seed=False)
        files = write_contexts(testset, directory / "contexts" / _stem(testset))
        _report_ingest(rag.add(files, progress=progress, only_supported=True))
        return rag
    if docs is not None:
        directory = index or derived_index_dir(settings, docs, "docs")
        if testset.path is not None:
            from rag.loading import SUPPORTED_EXTENSIONS, discover

            own = testset.path.resolve()
            if any(f.resolve() == own for f in discover([docs]) if f.suffix.lower() in SUPPORTED_EXTENSIONS):
                raise InputError(f"the test set {testset.path} is inside --docs and would be indexed as a document; "
                                 "move it out or give it a .jsonl name")
        rag = RAG.open(directory, settings, embedder=embedder, llm=llm, seed=False)
        _report_ingest(rag.add([docs], progress=progress, only_supported=True))
        return rag
    return RAG.open(settings=settings, embedder=embedder, llm=llm)


def _stem(testset: TestSet) -> str:
    return testset.path.stem if testset.path else "testset"


def _report_ingest(report: Any) -> None:
    if report.added or report.replaced:
        n = len(report.added) + len(report.replaced)
        print(f"indexed {n} document(s) ({len(report.unchanged)} already there)", file=sys.stderr)
    for failure in report.failed:
        print(f"skipped document {failure.path}: {failure.reason}", file=sys.stderr)


# -- comparing two runs ---------------------------------------------------------------------------

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
    rows = [(k, _fmt(ma.get(k)), _fmt(mb.get(k)), _delta(ma.get(k), mb.get(k))) for k in keys]
    ca, cb = a.get("config", {}), b.get("config", {})
    skip = {"started_at", "duration_s", "git_commit", "index_dir"}
    config_rows = [(k, _fmt(ca.get(k)), _fmt(cb.get(k))) for k in dict.fromkeys([*ca, *cb])
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


# -- the command ----------------------------------------------------------------------------------

class _sigterm_as_interrupt:
    """While active (main thread only), SIGTERM raises KeyboardInterrupt, so `kill` also keeps a partial report."""

    def __enter__(self) -> None:
        self.installed = False
        try:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
            self.installed = True
        except ValueError:  # not the main thread
            pass

    def __exit__(self, *exc: Any) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt


def default_output(settings: Settings, testset: TestSet) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return settings.cache_dir / "eval" / f"{_stem(testset)}-{stamp}" / "report.json"


def run_cli(args: Any, settings: Settings, *, embedder: "Embedder | None" = None, llm: "LLM | None" = None) -> int:
    """`rag eval TESTSET [--docs PATH] [--index DIR] [--limit N] [--json OUT] [--report OUT.md]`
    and `rag eval --compare A.json B.json`. `embedder`/`llm` are for tests (fakes)."""
    if getattr(args, "compare", None):
        path_a, path_b = (Path(p) for p in args.compare)
        a, b = load_report(path_a), load_report(path_b)
        print(compare_reports(a, b, names=("A", "B")), end="")
        print(f"A = {path_a}\nB = {path_b}")
        if getattr(args, "report", None):
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            Path(args.report).write_text(compare_reports(a, b, names=(path_a.stem, path_b.stem), markdown=True),
                                         encoding="utf-8")
            print(f"comparison written to {args.report}")
        return EXIT_OK
    if getattr(args, "rescore", None):
        from rag.calibration import rescore

        subset = getattr(args, "subset_of", None)
        ids = {i["id"] for i in load_report(subset)["items"]} if subset else None
        metrics = rescore(load_report(args.rescore), getattr(args, "min_score", None), ids)
        print(metrics_table(metrics))
        if args.json_out:
            Path(args.json_out).write_text(json.dumps({"metrics": metrics, "rescored_from": str(args.rescore),
                                                       "min_score": getattr(args, "min_score", None),
                                                       "subset_of": str(subset) if subset else None}, indent=1))
        return EXIT_OK
    if getattr(args, "calibrate", None):
        from rag.calibration import cross_validate_gates

        result = cross_validate_gates({Path(p).stem: load_report(p) for p in args.calibrate})
        print("held out (each item scored by gates chosen without it):")
        print("| run | refusal recall | false-refusal rate | contains | correct |\n| --- | --- | --- | --- | --- |")
        for name, m in result["held_out"].items():
            print(f"| {name} | {_fmt(m['refusal_recall'])} | {_fmt(m['false_refusal_rate'])} | "
                  f"{_fmt(m['contains'])} | {_fmt(m['correct'])} |")
        print("gates chosen per fold:", ", ".join(
            f"({g['min_score']}, {g['refusal_prob']}, {g['retry_below']})" for g in result["fold_gates"]))
        print("gates chosen on all items (min_score, refusal_prob, retry_below):",
              f"({result['chosen']['min_score']}, {result['chosen']['refusal_prob']}, {result['chosen']['retry_below']})")
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(result, indent=1), encoding="utf-8")
        return EXIT_OK
    if getattr(args, "refusal_curve", None):
        return _refusal_curve_cli([Path(p) for p in args.refusal_curve], getattr(args, "report", None))
    if not getattr(args, "testset", None):
        raise InputError("give a test set (JSONL or SQuAD JSON), or --compare A.json B.json")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} must be at least 1")
    testset = load_testset(args.testset)
    for problem in testset.problems:
        print(f"skipped test item: {problem}", file=sys.stderr)
    if not testset.items:
        raise InputError(f"{args.testset} has no usable items")
    rag = open_rag_for(testset, settings, docs=args.docs, index=args.index, embedder=embedder, llm=llm,
                       progress=True)
    if args.json_out:
        json_out = Path(args.json_out)
    else:
        json_out = Path(args.report).with_suffix(".json") if args.report else default_output(settings, testset)
    md_out = args.report or Path(json_out).with_suffix(".md")
    # A long run writes its JSON every 25 items, and SIGTERM stops it like Ctrl-C (partial report kept).
    with _sigterm_as_interrupt():
        report = evaluate(rag, testset, limit=args.limit, sample=getattr(args, "sample", None), progress=True, checkpoint=lambda r: r.write_json(json_out))
    print(report.table())
    report.write_json(json_out)
    written = report.write_markdown(md_out)
    print(f"JSON report: {json_out}")
    print(f"Markdown report: {written[0]} (plots: {', '.join(p.name for p in written[1:])})")
    if report.partial:
        print(f"interrupted: the report holds the {len(report.items)} item(s) done so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    if report.metrics["n_errors"]:
        print(f"{report.metrics['n_errors']} question(s) failed; see 'error' in the JSON report", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_PARTIAL if testset.problems else EXIT_OK


def _refusal_curve_cli(paths: list[Path], report_md: Path | None) -> int:
    """`rag eval --refusal-curve CALIBRATION.json [OTHER.json ...] [--report OUT.md]`: the min_score
    trade-off of each run; the threshold is chosen on the first run only and marked on all."""
    from rag import calibration as C

    curves = {p.stem if p.name != "report.json" else p.parent.name: C.refusal_curve(load_report(p)) for p in paths}
    names = list(curves)
    chosen = C.choose_threshold(curves[names[0]])
    out = []
    for name in names:
        marked = next((q for q in curves[name] if q.threshold == chosen.threshold), None)
        out.append(f"## {name}\n\n" + C.curve_table(curves[name], marked))
    out.append(f"Chosen on {names[0]} (highest refusal recall with false-refusal rate <= 0.15, or else at "
               "the lowest false-refusal rate the run reaches): "
               f"min_score {chosen.threshold:.2f} (refusal recall {chosen.refusal_recall:.3f}, "
               f"false-refusal rate {chosen.false_refusal_rate:.3f}).\n")
    text = "\n".join(out)
    print(text, end="")
    target = Path(report_md) if report_md else paths[0].with_name(paths[0].stem + "-refusal-curve.md")
    png = C.plot_refusal_curve(curves, target.with_suffix(".png"), chosen)
    target.write_text(f"# Refusal trade-off\n\n![curve]({png.name})\n\n{text}", encoding="utf-8")
    print(f"written: {target}, {png}")
    return EXIT_OK
