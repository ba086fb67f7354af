"""OCR speed, and what the OCR check costs a normal PDF (docs/performance.md, "OCR").

    python bench/ocr.py [--pages 4] [--dpi 200 150] [--normal-pages 40] [--repeat 5]

1. OCR pages/s: a scanned-like PDF (the seed article's lines drawn by Pillow at 150 dpi, bilevel, about
   32 lines a page (what fits at 28 px, 48 px apart), image only) loaded through `loading.load` with a fresh `OcrEngine`; the first
   page (which loads the models) is timed apart.
2. A normal text-layer PDF (`--normal-pages` pages of the seed article): `loading.load` as it is now
   (pypdf, then the usability check; OCR on) against the code before OCR (pypdf's loop alone, copied
   below), interleaved in one run so both see the same load; the ratio is the result.
3. The whole ingest of that normal PDF (`RAG.add`, MiniLM), with OCR on and off.
4. The UI's page view: a cited page rendered and marked, first and cached.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import load_average, machine, table  # noqa: E402
from rag.config import SEEDS_DIR, Settings  # noqa: E402
from rag.evaluation.metrics import percentile  # noqa: E402
from rag.ingest import loading  # noqa: E402
from rag.ingest.ocr import OcrEngine  # noqa: E402
from tests.filemakers import make_scanned_pdf, make_text_pdf  # noqa: E402


def seed_lines(width: int) -> list[str]:
    text = (SEEDS_DIR / "000_a5055be445bd665f.txt").read_text(encoding="utf-8")
    text = text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    return [line for p in text.split("\n") if p.strip() for line in textwrap.wrap(p, width) + [""]]


def old_load(path: Path) -> str:
    """The PDF path of loading.load before OCR: pypdf's text of every page, joined."""
    import pypdf

    pages = [page.extract_text() or "" for page in pypdf.PdfReader(path).pages]
    return loading._join_pages(pages, paged=True)[0]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=4)
    ap.add_argument("--normal-pages", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dpi", type=int, nargs="+", default=[200, 150])
    args = ap.parse_args()
    print(f"machine: {machine()}; load average before: {load_average()}")
    work = Path(tempfile.mkdtemp(prefix="bench-ocr-"))

    lines = seed_lines(70)
    truth = " ".join(lines[:32]).split()
    scanned = make_scanned_pdf(work / "scanned.pdf", [lines[:32]] * args.pages)
    one = make_scanned_pdf(work / "one.pdf", [lines[:32]])
    rows = []
    for dpi in args.dpi:
        engine = OcrEngine(dpi=dpi)
        start = time.perf_counter()
        loading.load(one, ocr=engine)
        first = time.perf_counter() - start
        start = time.perf_counter()
        doc = loading.load(scanned, ocr=engine)
        took = time.perf_counter() - start
        page = doc.text[:doc.page_starts[1][0]].split() if len(doc.page_starts) > 1 else doc.text.split()
        found = sum(min(page.count(w), truth.count(w)) for w in set(truth))
        rows.append([dpi, f"{first:.1f} s", f"{took / args.pages:.1f} s", f"{args.pages / took:.2f}",
                     f"{found / len(truth):.3f} ({len(truth)} words)"])
    print(table(["dpi", "first page (+ models)", "s/page", "pages/s", "words right"], rows))

    normal = make_text_pdf(work / "normal.pdf", [lines[:42]] * args.normal_pages)
    new_t, old_t = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        new = loading.load(normal, ocr=OcrEngine()).text
        new_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        old = old_load(normal)
        old_t.append(time.perf_counter() - start)
    assert new == old, "the text of a normal PDF changed"
    print(table(["normal PDF, load only", "median", "runs"], [
        ["before (pypdf alone)", f"{percentile(old_t, 50) * 1e3:.0f} ms", " ".join(f"{t * 1e3:.0f}" for t in old_t)],
        ["now (pypdf + usability check, OCR on)", f"{percentile(new_t, 50) * 1e3:.0f} ms",
         " ".join(f"{t * 1e3:.0f}" for t in new_t)],
        ["ratio now / before", f"{percentile(new_t, 50) / percentile(old_t, 50):.3f}", ""],
    ]))

    from rag.models.embedding import SentenceTransformerEmbedder
    from rag.pipeline import RAG

    embedder = SentenceTransformerEmbedder()
    rows = []
    for ocr in (True, False, True, False):
        settings = Settings(index_dir=work / f"index-{time.monotonic_ns()}", cache_dir=work / "cache", ocr=ocr)
        rag = RAG.open(settings=settings, embedder=embedder, seed=False)
        start = time.perf_counter()
        report = rag.add([normal])
        rows.append([f"ocr={ocr}", f"{time.perf_counter() - start:.2f} s", report.added[0].chunks])
    print(table(["normal PDF, whole ingest (RAG.add)", "time", "chunks"], rows))
    print(table(["page view (rag/app/page_view.py)", "first view", "again (cached)"], page_view_rows(normal, one)))
    print(f"load average after: {load_average()}")


def page_view_rows(normal: Path, scanned: Path) -> list[list[str]]:
    """Time PageView.html for a text-layer page and an OCR'd page: first view, then from the cache."""
    from rag.app.page_view import PageView
    from rag.types import Citation

    rows = []
    engine = OcrEngine()
    for label, path, ocr in (("text-layer page", normal, False), ("OCR'd page", scanned, True)):
        doc = loading.load(path, ocr=engine)
        sentence = doc.text[:doc.text.index(".") + 1]
        cited = Citation(n=1, text=sentence, source=doc.source, page=1, start=0, end=len(sentence), score=1.0,
                         doc_id=doc.id, ocr=ocr)
        view = PageView(engine)
        times = []
        for _ in range(2):
            start = time.perf_counter()
            html = view.html(cited, [sentence])
            times.append(time.perf_counter() - start)
        assert "rag-page-hl" in html, f"no box for {label}"
        rows.append([label, f"{times[0]:.2f} s", f"{times[1] * 1e3:.0f} ms"])
    return rows


if __name__ == "__main__":
    main()
