"""OCR of one PDF page: rapidocr-onnxruntime (PP-OCRv4 models inside its wheel, nothing downloaded),
the page rendered by pypdfium2.

`OcrEngine` loads the models on its first page (~0.4 s) and keeps them: `RAG` holds one and passes it
to `loading.load`, and the web UI's page view uses the same one. A page is rendered at `dpi` (200),
its longest side capped at `max_side` pixels (rapidocr's own limit is 2,000: a bigger image is scaled
down anyway). The text-direction classifier is off: on a plain page of English it turned whole lines
upside down and they came back as noise (bench/ocr.py's page: 58% of words read with it, all without
it); a page scanned upside down is read as noise. Lines come back top to bottom with their boxes as fractions of the page, so the page
view can mark them on a picture of any size (rag/app/page_view.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
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
                 cache_dir: Path | None = None) -> None:
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
