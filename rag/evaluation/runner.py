"""Running an evaluation: open (or build) the index for a test set, ask every question, score, report.

    test set (rag.evaluation.testsets) -> for each item: RAG.ask -> score_item -> Report

Python:
    from rag.evaluation.runner import evaluate
    from rag.evaluation.testsets import load_testset
    report = evaluate(rag, load_testset("seeds/testset.jsonl"))
    report.metrics["contains"], report.write_json("out.json"), report.write_markdown("out.md")
"""
from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import PROJECT_ROOT, Settings
from rag.errors import InputError
from rag.evaluation.report import Report
from rag.evaluation.scoring import ItemResult, compute_metrics, score_item
from rag.evaluation.testsets import TestItem, TestSet, load_testset

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.llms import LLM

    from rag.models.embedding import Embedder
    from rag.pipeline import RAG
    from rag.types import IngestReport

def evaluate(rag: "RAG", testset: TestSet | Iterable[TestItem] | str | Path, *, limit: int | None = None,
             sample: int | None = None, progress: bool = False, top_k: int | None = None,
             checkpoint: Callable[[Report], None] | None = None, checkpoint_every: int = 25,
             on_item: Callable[[list[ItemResult]], None] | None = None,
             stop: Callable[[], bool] | None = None) -> Report:
    """Ask every question (the first `limit` in file order, or a fixed seeded `sample` of them kept in
    file order: the same items on every run), score, and return the Report.

    The index must already hold the documents (see `open_rag_for` for SQuAD contexts and --docs).
    Ctrl-C stops the loop and returns a valid report of the items done so far, with `partial=True`.
    An item whose question raises an error is recorded with `error` and left out of the scores.
    `checkpoint`, if given, receives a partial Report every `checkpoint_every` items (long runs).
    `on_item` gets the results so far after every item (progress); `stop()` true before an item ends
    the run there, like Ctrl-C (a partial report)."""
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
            if stop is not None and stop():
                partial = True
                break
            try:
                answer = rag.ask(item.question, top_k=top_k)
            except Exception as exc:  # one failing question must not end the run; it is reported
                results.append(ItemResult(id=item.id, question=item.question, must_refuse=item.must_refuse,
                                          gold_answers=list(item.answers), answer="", abstained=False,
                                          error=f"{type(exc).__name__}: {exc}"))
                if on_item is not None:
                    on_item(results)
                continue
            results.append(score_item(item, answer))
            if on_item is not None:
                on_item(results)
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
    n_documents, n_chunks = rag.store.counts()
    # Every setting, so a new one can never drop out of the reports; then what this run adds.
    settings = s.to_json()
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
        "n_documents": n_documents,
        "n_chunks": n_chunks,
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
                 embedder: "Embedder | None" = None, llm: "LLM | None" = None, progress: bool = False,
                 on_ingest: "Callable[[IngestReport], None] | None" = None) -> "RAG":
    """Build or reuse the index a test set is asked against.

    SQuAD: its contexts, in `index` or a folder derived from the test set's path (contexts are written
    under `<index>/contexts/`). JSONL with `docs` a SQuAD JSON file: that file's contexts, in the same
    index its own run uses. JSONL with other `docs`: those documents, in `index` or a folder derived from
    the docs path. JSONL without docs: the configured index (by default index/, built from seeds/).
    The test set file itself is never ingested. `on_ingest` is given the report of each ingest (the CLI
    prints it)."""
    from rag.pipeline import RAG
    from rag.types import IngestReport

    if testset.format == "squad":
        if docs is not None:
            raise InputError("--docs is for JSONL test sets; a SQuAD file brings its own documents (its contexts)")
        return _open_squad_contexts(testset, settings, index, embedder, llm, progress, on_ingest)
    if docs is not None and docs.suffix.lower() == ".json" and docs.is_file():
        # A JSONL set asked over a SQuAD file's contexts (the near-miss set over SQuAD and COVID-QA): the same
        # index the SQuAD file's own run builds and reuses.
        squad = load_testset(docs)
        if squad.format != "squad":
            raise InputError(f"--docs {docs}: a .json file must be a SQuAD file (an object with 'data')")
        return _open_squad_contexts(squad, settings, index, embedder, llm, progress, on_ingest)
    if docs is not None:
        directory = index or derived_index_dir(settings, docs, "docs")
        if testset.path is not None:
            from rag.ingest.loading import SUPPORTED_EXTENSIONS, discover

            own = testset.path.resolve()
            # realpath: discover also yields link loops (for load to name them), on which resolve() raises
            if any(Path(os.path.realpath(f)) == own for f in discover([docs])
                   if f.suffix.lower() in SUPPORTED_EXTENSIONS):
                raise InputError(f"the test set {testset.path} is inside --docs and would be indexed as a document; "
                                 "move it out or give it a .jsonl name")
        rag = RAG.open(directory, settings, embedder=embedder, llm=llm, seed=False)
        report = rag.add([docs], progress=progress, only_supported=True)
        if on_ingest is not None:
            on_ingest(report)
        return rag
    return RAG.open(settings=settings, embedder=embedder, llm=llm)


def _open_squad_contexts(squad: TestSet, settings: Settings, index: Path | None, embedder: "Embedder | None",
                         llm: "LLM | None", progress: bool,
                         on_ingest: "Callable[[IngestReport], None] | None") -> "RAG":
    from rag.pipeline import RAG
    from rag.types import IngestReport

    directory = index or derived_index_dir(settings, squad.path or Path("squad"), "squad")
    rag = RAG.open(directory, settings, embedder=embedder, llm=llm, seed=False)
    files = write_contexts(squad, directory / "contexts" / _stem(squad))
    report = rag.add(files, progress=progress, only_supported=True)
    if on_ingest is not None:
        on_ingest(report)
    return rag


def _stem(testset: TestSet) -> str:
    return testset.path.stem if testset.path else "testset"


def default_output(settings: Settings, testset: TestSet) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return settings.cache_dir / "eval" / f"{_stem(testset)}-{stamp}" / "report.json"
