"""A benchmark corpus of long multi-page PDFs, and what reading it costs.

The corpus: the longest COVID-QA papers (Apache-2.0, /work/shared/datasets/covid-qa, or --source), each
rendered to a PDF of wrapped Helvetica lines by `write_pdf` (one text object per page; a word that does
not fit at a line end is hyphenated, as typeset papers are). Written to --out (default: a temp folder);
nothing is committed. Then, each optional:

  --compare   per file and in total: characters and seconds of pypdf's text, of raw pdfium (open,
              each page's whole text, close: the floor), and of the project's loader (loading.load:
              read, hash, pdfium, clean, join pages). Retention of pypdf's characters by the loader:
              the multiset of non-space characters, sum over c of min(n_loader(c), n_pypdf(c)) divided
              by pypdf's count (spacing and line breaks differ by design, so they are not counted).
  --ingest    `RAG.add` of the corpus into a new FAISS index with the real MiniLM, in this process
              (load_workers=1), timed by stage (load, chunk, embed, store), then again (all unchanged).
  --workers N load+chunk of the corpus in process (load_workers=1) and by `ProcessExecutor` with N
              worker processes, seconds; also of the same papers as HTML, four times over each (HTML is
              parsed in Python, so loading weighs more there).

    python bench/pdf_corpus.py --compare --ingest --workers 2 --json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import textwrap
import time
import unicodedata
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, log, machine, table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.filemakers import make_text_pdf  # noqa: E402

COVID_QA = Path("/work/shared/datasets/covid-qa/covidqa-200423.json")
PAGE_H, MARGIN = 792, 72
FONT_SIZE, LEADING = 10, 14
LINE_CHARS = 88  # Helvetica 10 pt averages ~5 pt a character: 88 fill the 468 pt between the margins
LINES_PER_PAGE = (PAGE_H - 2 * MARGIN) // LEADING  # 46


def papers(source: Path, count: int) -> list[tuple[str, str]]:
    """(document id, text) of the `count` longest papers, as ASCII (the standard 14 fonts' encoding
    covers only Latin-1, and the test writer's PDFs carry no /Encoding)."""
    data = json.loads(source.read_text(encoding="utf-8"))["data"]
    texts = [(str(p["document_id"]), p["context"]) for a in data for p in a["paragraphs"]]
    texts.sort(key=lambda t: -len(t[1]))
    out = []
    for doc_id, text in texts[:count]:
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
        out.append((doc_id, ascii_text))
    return out


def wrap(text: str) -> list[str]:
    """Lines of at most LINE_CHARS; a long word at a line end is hyphenated ("infec-" / "tion")."""
    lines: list[str] = []
    for para in re.split(r"\n\s*\n|\n", text):
        line = ""
        for word in para.split():
            room = LINE_CHARS - len(line) - (1 if line else 0)
            if len(word) <= room:
                line = f"{line} {word}" if line else word
                continue
            if len(word) >= 8 and room >= 5 and word.isalpha():
                cut = room - 1
                lines.append(f"{line} {word[:cut]}-" if line else f"{word[:cut]}-")
                line = word[cut:]
                continue
            if line:
                lines.append(line)
            line = word
        if line:
            lines.append(line)
        lines.append("")  # a blank line between paragraphs
    return lines


def write_pdf(path: Path, text: str) -> int:
    """A PDF of the text's wrapped lines, LINES_PER_PAGE to a page, by the tests' PDF writer; returns the
    page count."""
    lines = wrap(text)
    pages = [lines[i:i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)]
    make_text_pdf(path, pages, size=FONT_SIZE, leading=LEADING)
    return len(pages)


def make_corpus(out: Path, count: int, source: Path = COVID_QA) -> dict[Path, int]:
    out.mkdir(parents=True, exist_ok=True)
    return {out / f"covid-{doc_id}.pdf": write_pdf(out / f"covid-{doc_id}.pdf", text)
            for doc_id, text in papers(source, count)}


# -- readers ------------------------------------------------------------------------------------
def pypdf_text(path: Path) -> str:
    import pypdf

    return "\n\n".join(page.extract_text() or "" for page in pypdf.PdfReader(path).pages)


def pdfium_text(path: Path) -> str:
    """The floor: open, each page's whole text through pypdfium2, close."""
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(path))
    try:
        parts = []
        for page in document:
            textpage = page.get_textpage()
            parts.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return "\n\n".join(parts)
    finally:
        document.close()


def loader_text(path: Path) -> str:
    from rag.ingest import loading

    return loading.load(path, ocr=None).text


def retention(kept: str, reference: str) -> float:
    """Share of the reference's non-space characters that `kept` has too, as multisets."""
    ref = Counter(c for c in reference if not c.isspace())
    got = Counter(c for c in kept if not c.isspace())
    total = sum(ref.values())
    return sum(min(n, got[c]) for c, n in ref.items()) / total if total else 1.0


def timed(fn, path: Path, repeat: int) -> tuple[str, float]:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        text = fn(path)
        best = min(best, time.perf_counter() - t)
    return text, best


def compare(files: dict[Path, int], repeat: int) -> dict:
    rows, totals = [], {"pypdf": 0.0, "pdfium": 0.0, "loader": 0.0}
    chars = {"pypdf": 0, "pdfium": 0, "loader": 0}
    kept: list[float] = []
    for path, pages in files.items():
        got = {}
        for name, fn in (("pypdf", pypdf_text), ("pdfium", pdfium_text), ("loader", loader_text)):
            text, seconds = timed(fn, path, repeat)
            got[name] = text
            totals[name] += seconds
            chars[name] += len(text)
            got[name + "_s"] = seconds
        kept.append(retention(got["loader"], got["pypdf"]))
        rows.append([path.name, pages, len(got["pypdf"]), len(got["loader"]), f"{got['pypdf_s']:.3f}",
                     f"{got['pdfium_s']:.3f}", f"{got['loader_s']:.3f}", f"{kept[-1]:.4f}"])
    all_pypdf = "".join(pypdf_text(p) for p in files)
    all_loader = "".join(loader_text(p) for p in files)
    result = {"files": len(files), "pages": sum(files.values()), "seconds": totals, "chars": chars,
              "loader_over_pdfium": totals["loader"] / totals["pdfium"],
              "pypdf_over_loader": totals["pypdf"] / totals["loader"],
              "retention_total": retention(all_loader, all_pypdf), "retention_min_file": min(kept)}
    log(table(["file", "pages", "pypdf chars", "loader chars", "pypdf s", "pdfium s", "loader s", "kept"], rows))
    log(f"total: {result['pages']} pages; pypdf {totals['pypdf']:.2f} s, raw pdfium {totals['pdfium']:.2f} s, "
        f"loader {totals['loader']:.2f} s (loader/pdfium {result['loader_over_pdfium']:.2f}x); "
        f"loader keeps {result['retention_total']:.4f} of pypdf's non-space characters (worst file "
        f"{result['retention_min_file']:.4f})")
    return result


def run_ingest(corpus: Path, workdir: Path) -> dict:
    from ingest import Stages, staged  # bench/ingest.py

    from rag.config import Settings
    from rag.models.embedding import build_embedder
    from rag.pipeline import RAG
    from rag.testing import FakeLLM

    settings = Settings(index_dir=workdir / "index", cache_dir=workdir / "cache", load_workers=1)
    embedder = build_embedder(settings)
    embedder.embed(["warm up"])
    rag = RAG.open(settings=settings, embedder=embedder, llm=FakeLLM(), seed=False)
    stages = Stages()
    with staged(rag, stages):
        t = time.perf_counter()
        report = rag.add([corpus])
        wall = time.perf_counter() - t
    chunks = sum(d.chunks for d in rag.documents())
    t = time.perf_counter()
    again = rag.add([corpus])
    second = time.perf_counter() - t
    result = {"wall_s": wall, "stages_s": dict(stages.seconds), "added": len(report.added),
              "failed": len(report.failed), "chunks": chunks, "reingest_s": second,
              "reingest_unchanged": len(again.unchanged), "reingest_added": len(again.added) + len(again.replaced)}
    split = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(stages.seconds.items(), key=lambda kv: -kv[1]))
    log(f"ingest: {len(report.added)} PDFs, {chunks} chunks in {wall:.1f} s ({split}); "
        f"again: {len(again.unchanged)} unchanged in {second:.2f} s")
    return result


def write_html(out: Path, source: Path, count: int, copies: int = 4) -> list[Path]:
    """The same papers as HTML, each `copies` times over (HTML is parsed in Python: a heavier load)."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for doc_id, text in papers(source, count):
        body = "".join(f"<p>{para}</p>" for para in text.split("\n") if para.strip()) * copies
        path = out / f"covid-{doc_id}.html"
        path.write_text(f"<html><body>{body}</body></html>", encoding="utf-8")
        files.append(path)
    return files


def run_workers(files: list[Path], workers: int, repeat: int, kind: str) -> dict:
    from rag.ingest import loading
    from rag.ingest.chunking import SentenceChunker
    from rag.ingest.executors import LocalExecutor, ProcessExecutor

    limits, chunker = loading.Limits.default(), SentenceChunker(160, 1)
    out = {}
    for label, executor in (("in process (load_workers=1)", LocalExecutor()),
                            (f"{workers} worker processes", ProcessExecutor(workers))):
        runs = []
        for _ in range(repeat):
            t = time.perf_counter()
            got = list(executor.prepare(files, limits, chunker, frozenset(), 10_000))
            runs.append(time.perf_counter() - t)
            assert all(p.failure is None for p in got), [p.failure for p in got if p.failure]
        out[label] = statistics.median(runs)
        log(f"load+chunk {len(files)} {kind}, {label}: {out[label]:.2f} s (median of {repeat}: "
            f"{', '.join(f'{r:.2f}' for r in runs)})")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="folder for the PDFs (default: a temp folder, removed after)")
    ap.add_argument("--papers", type=int, default=20, help="the N longest COVID-QA papers")
    ap.add_argument("--source", type=Path, default=COVID_QA)
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--ingest", action="store_true")
    ap.add_argument("--workers", type=int, default=0, help="also time ProcessExecutor with this many workers")
    ap.add_argument("--repeat", type=int, default=3, help="timings: best (compare) or median (workers) of N")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdf-corpus-") as tmp:
        out = args.out or Path(tmp) / "corpus"
        files = make_corpus(out, args.papers, args.source)
        log(f"{len(files)} PDFs, {sum(files.values())} pages in {out}")
        result: dict = {"machine": machine(), "load_before": load_average(), "files": len(files),
                        "pages": sum(files.values())}
        if args.compare:
            result["compare"] = compare(files, args.repeat)
        if args.workers:
            result["workers_pdf"] = run_workers(sorted(files), args.workers, args.repeat, "PDFs")
            html = write_html(Path(tmp) / "html", args.source, args.papers)
            result["workers_html"] = run_workers(html, args.workers, args.repeat, "HTML files (papers x4)")
        if args.ingest:
            result["ingest"] = run_ingest(out, Path(tmp))
        result["load_after"] = load_average()
        if args.json:
            print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
