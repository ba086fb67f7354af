"""OCR of one PDF page: rapidocr-onnxruntime (PP-OCRv4 models inside its wheel, nothing downloaded),
the page rendered by pypdfium2.

`OcrEngine` loads the models on its first page (~0.4 s) and keeps them: `RAG` holds one and passes it
to `loading.load`, and the web UI's page view uses the same one. A page is rendered at `dpi` (200),
its longest side capped at `max_side` pixels (rapidocr's own limit is 2,000: a bigger image is scaled
down anyway). The text-direction classifier is off: on a plain page of English it turned whole lines
upside down and they came back as noise (bench/ocr.py's page: 58% of words read with it, all without
it); a page scanned upside down is read as noise. Lines come back top to bottom with their boxes as fractions of the page, so the page
view can mark them on a picture of any size (rag/app/page_view.py).

A file's OCR is bounded (`OcrBudget`, settings ocr_max_pages, ocr_max_seconds): past either, its
remaining image pages are not read, the pages read so far are kept, and the file is named with the
reason. A page whose images are too small to hold text (fewer than ocr_min_pixels pixels, as stored or
as drawn at `dpi`) or of one flat colour is skipped without OCR and without counting against the pages:
a PDF of 2,000 tiny white images (about 4 s of OCR each) costs milliseconds a page.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rag.errors import LoadError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OcrLine:
    text: str
    # left, top, right, bottom as fractions of the page's width and height (top-left origin)
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class OcrPage:
    lines: tuple[OcrLine, ...]
    seconds: float = 0.0

    @property
    def text(self) -> str:
        """The lines in reading order: a newline between lines, a blank line where the gap to the next
        line is more than a line's height (a paragraph)."""
        out: list[str] = []
        for i, line in enumerate(self.lines):
            if i:
                prev = self.lines[i - 1].box
                height = max(prev[3] - prev[1], 1e-6)
                out.append("\n\n" if line.box[1] - prev[3] > height else "\n")
            out.append(line.text)
        return "".join(out)


FLAT_RANGE = 8  # a page thumbnail whose grey levels span at most this is one flat colour: nothing to read
THUMBNAIL_SIDE = 256  # pixels, the longest side of the thumbnail that decides it


class OcrBudgetSpent(Exception):
    """A file's OCR budget is spent; the message says which and names the setting."""


@dataclass
class OcrBudget:
    """What OCR may spend on one file: `max_pages` pages read, `max_seconds` from its first page."""

    max_pages: int = 200
    max_seconds: float = 600.0
    min_pixels: int = 4_096
    pages: int = 0  # pages read by OCR
    skipped: int = 0  # image pages not worth reading (tiny or flat)
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        """Raises OcrBudgetSpent when another page may not be read."""
        if self.pages >= self.max_pages:
            raise OcrBudgetSpent(f"OCR stopped after {self.pages:,} page(s) (setting ocr_max_pages)")
        elapsed = time.monotonic() - self.started
        if elapsed >= self.max_seconds:
            raise OcrBudgetSpent(f"OCR stopped after {elapsed:,.0f} s, {self.pages:,} page(s) read "
                                 "(setting ocr_max_seconds)")


def file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:32]


def page_key(digest: str, number: int) -> str:
    """The cache key of one page: the file's contents and the page number."""
    return f"{digest}-p{number}"


def unavailable_reason() -> str | None:
    """Why OCR cannot run here (None: it can)."""
    try:
        import rapidocr_onnxruntime  # noqa: F401
    except ImportError as exc:
        return f"OCR is unavailable (rapidocr-onnxruntime cannot be imported: {exc})"
    return None


class OcrEngine:
    """Reads the text of page images. Thread-safe; the model is loaded once, on first use."""

    def __init__(self, dpi: int = 200, max_side: int = 2000, min_score: float = 0.5,
                 cache_dir: Path | None = None, *, max_pages: int = 200, max_seconds: float = 600.0,
                 min_pixels: int = 4_096) -> None:
        self.max_pages, self.max_seconds, self.min_pixels = max_pages, max_seconds, min_pixels
        self.dpi = dpi
        self.max_side = max_side
        self.min_score = min_score
        # Pages read at ingest are kept here (a small JSON each), so the UI's page view marks an OCR'd
        # page at once instead of reading it again (~30 s on the loaded 2 cores; docs/performance.md).
        self.cache_dir = cache_dir
        self._engine = None
        self._lock = threading.Lock()

    def _model(self):
        if self._engine is None:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:
                raise LoadError("OCR", unavailable_reason() or str(exc)) from exc
            self._engine = RapidOCR()
        return self._engine

    def scale(self, width_pt: float, height_pt: float) -> float:
        return min(self.dpi / 72.0, self.max_side / max(width_pt, height_pt, 1.0))

    @classmethod
    def of(cls, settings) -> "OcrEngine":  # noqa: ANN001 - rag.config.Settings (config sits above ingest)
        """The engine `settings` ask for: its cache under cache_dir, its per-file budget."""
        return cls(cache_dir=Path(settings.cache_dir) / "ocr", max_pages=settings.ocr_max_pages,
                   max_seconds=settings.ocr_max_seconds, min_pixels=settings.ocr_min_pixels)

    def budget(self) -> OcrBudget:
        """A new budget for one file."""
        return OcrBudget(self.max_pages, self.max_seconds, self.min_pixels)

    def read_within(self, page, key: str | None, budget: OcrBudget) -> OcrPage:
        """`read_page` within `budget`: a page not worth reading gives no lines (and costs nothing); a
        page read from the cache costs nothing either; raises OcrBudgetSpent when the budget is spent."""
        if self._cached(key) is None:
            budget.check()
            if not self.worth_reading(page, budget.min_pixels):
                budget.skipped += 1
                return OcrPage(())
            budget.pages += 1
        return self.read_page(page, key)

    def worth_reading(self, page, min_pixels: int) -> bool:
        """Whether `page` (a pypdfium2 PdfPage) has an image big enough to hold text, as stored and as
        drawn at `dpi`, and is not one flat colour."""
        import pypdfium2 as pdfium

        biggest = 0
        for obj in page.get_objects(max_depth=2):
            if not isinstance(obj, pdfium.PdfImage):
                continue
            try:
                width, height = obj.get_px_size()
                left, bottom, right, top = obj.get_bounds()
            except Exception:  # noqa: BLE001 - an image pdfium cannot measure: let OCR try it
                return True
            drawn = (right - left) * (top - bottom) * (self.dpi / 72.0) ** 2
            biggest = max(biggest, min(width * height, drawn))
        if biggest < min_pixels:
            return False
        width_pt, height_pt = page.get_size()
        thumbnail = page.render(scale=THUMBNAIL_SIDE / max(width_pt, height_pt, 1.0)).to_pil().convert("L")
        low, high = thumbnail.getextrema()
        return high - low > FLAT_RANGE

    def read_page(self, page, key: str | None = None) -> OcrPage:
        """OCR one `pypdfium2.PdfPage`; `key` (`page_key`) names it in the cache."""
        cached = self._cached(key)
        if cached is not None:
            return cached
        result = self._read(page)
        self._keep(key, result)
        return result

    def _cache_file(self, key: str | None) -> Path | None:
        if self.cache_dir is None or not key:
            return None
        return Path(self.cache_dir) / f"{key}-{self.dpi}dpi.json"

    def _cached(self, key: str | None) -> OcrPage | None:
        path = self._cache_file(key)
        if path is None or not path.is_file():
            return None
        try:
            lines = json.loads(path.read_text(encoding="utf-8"))["lines"]
            return OcrPage(tuple(OcrLine(str(text), tuple(map(float, box))) for text, box in lines))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring an unreadable OCR cache file %s (%s)", path, exc)
            return None

    def _keep(self, key: str | None, page: OcrPage) -> None:
        path = self._cache_file(key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{path.name}")
            tmp.write_text(json.dumps({"lines": [[line.text, list(line.box)] for line in page.lines]}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # a cache: the page is read again next time
            log.warning("cannot keep OCR of a page in %s (%s)", path, exc)

    def _read(self, page) -> OcrPage:
        start = time.perf_counter()
        width, height = page.get_size()
        image = page.render(scale=self.scale(width, height)).to_pil().convert("RGB")
        with self._lock:  # onnxruntime sessions are shared; one page at a time uses both cores anyway
            result, _ = self._model()(image, use_cls=False)
        lines = []
        for box, text, score in result or []:
            text = " ".join(str(text).split())
            if not text or float(score) < self.min_score:
                continue
            xs = [p[0] for p in box]
            ys = [p[1] for p in box]
            lines.append(OcrLine(text, (min(xs) / image.width, min(ys) / image.height,
                                        max(xs) / image.width, max(ys) / image.height)))
        return OcrPage(tuple(lines), time.perf_counter() - start)
