"""A collection's evaluation runs, kept in its folder with their settings, for the history and comparisons:

    <collection folder>/eval-runs/<run id>/report.json    the whole report (`Report.to_json`: metrics,
                                                           the run's settings, every item)
                                          /report.md       Markdown with its PNG plots beside it

Run ids sort by time (UTC `YYYYmmdd-HHMMSS-ffff`, ffff: tenths of a millisecond).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rag.errors import InputError
from rag.evaluation.report import Report, load_report

RUNS_DIR = "eval-runs"
HEADLINE = ("contains", "f1", "refusal_recall", "false_refusal_rate", "citation_precision", "latency_p50_s")
_RUN_ID = re.compile(r"\d{8}-\d{6}-[0-9a-f]{4}")


@dataclass(frozen=True)
class RunSummary:
    """One kept run: its id, when, on which test set, and its headline metrics."""

    run_id: str
    started_at: str
    testset: str
    n_items: int
    partial: bool
    model: str
    metrics: dict[str, Any]

    def label(self) -> str:
        return f"{self.run_id} · {self.testset} · {self.n_items} items" + (" (partial)" if self.partial else "")


def runs_dir(directory: str | Path) -> Path:
    return Path(directory) / RUNS_DIR


def new_run_id() -> str:
    """A new id that sorts by time (to a tenth of a millisecond), as the history lists runs."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + f"{now.microsecond // 100:04d}"


def save_run(directory: str | Path, report: Report, run_id: str | None = None, *, plots: bool = True) -> str:
    """Keep `report` among the collection's runs (JSON, and Markdown with plots); returns its id."""
    run_id = run_id or new_run_id()
    folder = runs_dir(directory) / check_run_id(run_id)
    report.config["run_id"] = run_id
    report.write_json(folder / "report.json")
    if plots:
        report.write_markdown(folder / "report.md")
    return run_id


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise InputError(f"bad run id {run_id!r}: expected YYYYmmdd-HHMMSS-ffff")
    return run_id


def run_files(directory: str | Path, run_id: str) -> tuple[Path, Path]:
    """The JSON and Markdown report of a kept run."""
    folder = runs_dir(directory) / check_run_id(run_id)
    if not (folder / "report.json").is_file():
        raise InputError(f"no run {run_id!r} in this collection; runs: {', '.join(list_ids(directory)[-5:]) or 'none'}")
    return folder / "report.json", folder / "report.md"


def load_run(directory: str | Path, run_id: str) -> dict[str, Any]:
    return load_report(run_files(directory, run_id)[0])


def list_ids(directory: str | Path) -> list[str]:
    root = runs_dir(directory)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if _RUN_ID.fullmatch(p.name) and (p / "report.json").is_file())


def list_runs(directory: str | Path) -> list[RunSummary]:
    """The collection's kept runs, oldest first (an unreadable one is left out)."""
    out = []
    for run_id in list_ids(directory):
        try:
            data = load_report(runs_dir(directory) / run_id / "report.json")
        except InputError:
            continue
        c, m = data.get("config", {}), data.get("metrics", {})
        out.append(RunSummary(run_id=run_id, started_at=str(c.get("started_at", "")),
                              testset=str(c.get("testset_name", "")), n_items=int(m.get("n_items") or 0),
                              partial=bool(data.get("partial")), model=str(c.get("model", "")),
                              metrics={k: m.get(k) for k in HEADLINE}))
    return out


def delete_run(directory: str | Path, run_id: str) -> None:
    import shutil

    json_path, _ = run_files(directory, run_id)
    shutil.rmtree(json_path.parent)


def plot_history(runs: list[RunSummary], path: Path) -> Path:
    """A PNG of the headline rates (in [0, 1]) over `runs`, oldest first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = list(range(len(runs)))
    for key in HEADLINE:
        if key.endswith("_s"):  # seconds, not a rate
            continue
        ys = [r.metrics.get(key) for r in runs]
        if any(y is not None for y in ys):
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", label=key)
    ax.set_xticks(xs, [r.run_id[4:13] for r in runs], fontsize=7, rotation=30)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, loc="best")
    ax.set_title("headline metrics per run", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return path
