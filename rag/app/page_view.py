"""The cited PDF page as a picture, with the cited sentence's boxes marked on it.

A page is rendered locally by pypdfium2 (JPEG, `scale` 1.5: ~900 px wide for A4) and shown as an
<img>; each box of the sentence is a <div class="rag-page-hl"> placed over it in percent of the
page, so the marks are in the DOM and follow the picture's size. Where the boxes come from:

- a text-layer page: the page's text from the same pdfium text page, cleaned by the same function
  as at ingest (rag/ingest/pdf.py `clean_page_text`, which keeps each character's pdfium index). The
  sentence is found in it by letters and digits (NFKC, lower case: a passage's text may have been cut
  or re-spaced), and pdfium's rectangles for that character range are the boxes. A sentence not found
  whole (an index built before pdfium read the text, from pypdf's) is tried again by its halves; if
  neither is found the page is shown without a mark.
- an OCR'd page: the OCR lines kept at ingest (`OcrEngine`'s cache in `<cache_dir>/ocr/`, a small JSON
  per page keyed by the file's contents and the page), and the lines the sentence covers are marked,
  cut in proportion to the characters covered. Only when that cache is gone is the page read again
  (31.8 s for a full page on the loaded 2 cores, bench/ocr.py; then kept). The boxes are not in the
  index itself: the store's records stay as they were, and a lost cache costs time, not correctness.

Rendered pages and their boxes are kept in an LRU cache keyed by the file's path, size and mtime and
the page number. A file changed since it was indexed (its document id no longer matches) is not
shown: its page would not be the one cited.
"""
from __future__ import annotations

import base64
import io
import logging
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.app.render import esc
from rag.ingest.loading import document_id
from rag.ingest.ocr import OcrEngine, OcrPage, file_digest, page_key
from rag.ingest.pdf import clean_page_text, raw_page_text
from rag.types import Citation, short_source

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions of the page

CSS = """
.rag-page { margin: 8px 0 4px 0; }
.rag-page-frame { position: relative; display: block; width: 100%; max-width: 720px; border: 1px solid var(--border-color-primary, #ccc); }
.rag-page-img { display: block; width: 100%; height: auto; }
.rag-page-hl { position: absolute; background: rgba(250, 204, 21, 0.40); outline: 2px solid rgba(202, 138, 4, 0.9); border-radius: 2px; pointer-events: none; }
.rag-page-note { font-size: 0.85em; opacity: 0.75; margin-top: 2px; }
"""


@dataclass(frozen=True)
class RenderedPage:
    data_uri: str
    width: int
    height: int


class PageView:
    """Renders cited PDF pages with their sentences marked. Thread-safe; `ocr` is the RAG's engine
    (None: scanned pages are shown without marks)."""

    def __init__(self, ocr: OcrEngine | None = None, scale: float = 1.5, cache_pages: int = 32) -> None:
        self.ocr = ocr
        self.scale = scale
        self.cache_pages = cache_pages
        self._images: OrderedDict[tuple, RenderedPage] = OrderedDict()
        self._ocr: OrderedDict[tuple, OcrPage] = OrderedDict()
        self._ids: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def html(self, citation: Citation, sentences: Sequence[str]) -> str:
        """The page of a PDF citation with `sentences` (passage text) marked; "" for other files."""
        if not citation.page or not citation.source.lower().endswith(".pdf"):
            return ""
        path = Path(citation.source)
        try:
            key = self._key(path, citation.page)
            if citation.doc_id and self._doc_id(path, key) != citation.doc_id:
                return _note("The file has changed since it was indexed; its page is not shown.")
            image = self._cached(self._images, key, lambda: self._render(path, citation.page))
            boxes = [b for s in sentences for b in self.boxes(path, citation.page, s, citation.ocr, key)]
        except OSError as exc:
            return _note(f"The page cannot be shown: {exc.strerror or exc}.")
        except Exception as exc:  # noqa: BLE001 - a damaged file: the passage is still shown
            log.warning("cannot render page %s of %s: %s", citation.page, path, exc)
            return _note("The page cannot be shown.")
        return page_html(image, boxes, citation.page, short_source(citation.source), citation.ocr)

    def boxes(self, path: Path, page: int, sentence: str, ocr: bool, key: tuple | None = None) -> list[Box]:
        key = key or self._key(path, page)
        if ocr:
            if self.ocr is None:
                return []
            read = self._cached(self._ocr, key, lambda: self._read_ocr(path, page))
            return ocr_boxes(read, sentence)
        return self._layer_boxes(path, page, sentence)

    # -- internals ------------------------------------------------------------------------------
    @staticmethod
    def _key(path: Path, page: int) -> tuple:
        info = path.stat()
        return (str(path), info.st_size, info.st_mtime_ns, page)

    def _doc_id(self, path: Path, key: tuple) -> str:
        file_key = key[:3]
        with self._lock:
            known = self._ids.get(file_key)
        if known is None:
            known = document_id(str(path), path.read_bytes())
            with self._lock:
                self._ids[file_key] = known
        return known

    def _cached(self, cache: OrderedDict, key: tuple, make):
        with self._lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
        value = make()
        with self._lock:
            cache[key] = value
            while len(cache) > self.cache_pages:
                cache.popitem(last=False)
        return value

    def _render(self, path: Path, number: int) -> RenderedPage:
        import pypdfium2 as pdfium

        document = pdfium.PdfDocument(str(path))
        try:
            image = document[number - 1].render(scale=self.scale).to_pil().convert("RGB")
        finally:
            document.close()
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=82)
        uri = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        return RenderedPage(uri, image.width, image.height)

    def _read_ocr(self, path: Path, number: int) -> OcrPage:
        import pypdfium2 as pdfium

        document = pdfium.PdfDocument(str(path))
        try:
            return self.ocr.read_page(document[number - 1], page_key(file_digest(path), number))
        finally:
            document.close()

    def _layer_boxes(self, path: Path, number: int, sentence: str) -> list[Box]:
        import pypdfium2 as pdfium

        document = pdfium.PdfDocument(str(path))
        try:
            page = document[number - 1]
            width, height = page.get_size()
            left0, bottom0 = page.get_cropbox()[:2]
            textpage = page.get_textpage()
            where: list[int] = []  # the page's text as the index has it, and each character's pdfium index
            text = clean_page_text(raw_page_text(textpage), where)
            boxes = []
            for first, last in find_span(text, sentence):
                first, last = where[first], where[last]
                for i in range(textpage.count_rects(first, last - first + 1)):
                    left, bottom, right, top = textpage.get_rect(i)
                    boxes.append(((left - left0) / width, (height - (top - bottom0)) / height,
                                  (right - left0) / width, (height - (bottom - bottom0)) / height))
            return boxes
        finally:
            document.close()


def _normalised(text: str) -> tuple[str, list[int]]:
    """The letters and digits of `text`, NFKC and lower case, with each one's index in `text`."""
    chars: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        for c in unicodedata.normalize("NFKC", ch).lower():
            if c.isalnum():
                chars.append(c)
                where.append(i)
    return "".join(chars), where


def find_span(text: str, sentence: str) -> list[tuple[int, int]]:
    """(first, last) char indexes in `text` of `sentence`, compared by letters and digits only; if the
    whole is not found, each half that is. Empty if nothing is found."""
    haystack, where = _normalised(text)
    needle, _ = _normalised(sentence)
    if not needle:
        return []
    parts = [needle]
    pos = haystack.find(needle)
    if pos < 0 and len(needle) >= 16:
        parts = [needle[:len(needle) // 2], needle[len(needle) // 2:]]
    out = []
    for part in parts:
        pos = haystack.find(part)
        if pos >= 0:
            last = where[pos + len(part) - 1]
            while last + 1 < len(text) and text[last + 1] in _CLOSING:  # the full stop is marked too
                last += 1
            out.append((where[pos], last))
    return out


_CLOSING = frozenset(".,;:!?)]}\"'\u201d\u2019")


def ocr_boxes(page: OcrPage, sentence: str) -> list[Box]:
    """The parts of OCR lines that `sentence` covers: each covered line cut in proportion to its
    characters (OCR gives a box per line, not per character)."""
    text = "\n".join(line.text for line in page.lines)
    starts, offset = [], 0
    for line in page.lines:
        starts.append(offset)
        offset += len(line.text) + 1
    boxes: list[Box] = []
    for first, last in find_span(text, sentence):
        for line, start in zip(page.lines, starts):
            end = start + len(line.text)
            if last < start or first >= end:
                continue
            n = max(len(line.text), 1)
            a = (max(first, start) - start) / n
            b = (min(last + 1, end) - start) / n
            left, top, right, bottom = line.box
            boxes.append((left + a * (right - left), top, left + b * (right - left), bottom))
    return boxes


def page_html(image: RenderedPage, boxes: Sequence[Box], page: int, name: str, ocr: bool) -> str:
    marks = "".join(
        f'<div class="rag-page-hl" style="left:{100 * l:.2f}%;top:{100 * t:.2f}%;'
        f'width:{100 * (r - l):.2f}%;height:{100 * (b - t):.2f}%"></div>'
        for l, t, r, b in boxes if r > l and b > t)
    note = f"Page {int(page)} of {esc(name)}" + (" (text from OCR)" if ocr else "")
    if not boxes:
        note += " &middot; the cited sentence could not be located on the page"
    return (f'<div class="rag-page" data-page="{int(page)}"><div class="rag-page-frame">'
            f'<img class="rag-page-img" src="{image.data_uri}" width="{image.width}" height="{image.height}" '
            f'alt="{esc(f"page {page} of {name}")}">{marks}</div><div class="rag-page-note">{note}</div></div>')


def _note(text: str) -> str:
    return f'<div class="rag-page-note">{esc(text)}</div>'


