"""PDF -> page texts. The text layer through pypdf; a page without a usable one through OCR.

A page's text layer is *usable* when it holds at least `MIN_LAYER_CHARS` letters or digits: a scanned
page often carries a stray page number or a scanner's stamp in its text layer, which is not its text.
Only a page that is not usable *and* holds an image is OCR'd (rag/ingest/ocr.py), so a normal PDF
costs nothing extra (pypdfium2 is not even opened) and a truly blank page is not OCR'd. A page whose
OCR finds nothing is left out and the rest of the document is indexed (its pages keep their numbers);
only a PDF with no text at all is a failure, named with its reason.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rag.errors import LoadError
from rag.ingest.ocr import OcrBudgetSpent, OcrEngine, file_digest, page_key, unavailable_reason

log = logging.getLogger(__name__)

MIN_LAYER_CHARS = 16


@dataclass(frozen=True)
class PdfText:
    pages: list[str]  # one per page, page 1 first ("" for a page with no text)
    ocr_pages: tuple[int, ...] = ()  # pages whose text came from OCR
    unread: tuple[int, ...] = ()  # image pages without text: OCR found none, or did not run
    ocr_off: bool = False  # image pages were left unread because OCR is off or unavailable
    ocr_problem: str = ""
    ocr_stopped: str = ""  # why OCR stopped before the last image page (its budget), "" if it did not
    ocr_skipped: int = 0  # image pages too small or flat to be worth OCR

    def empty_reason(self) -> str:
        """Why a PDF gave no text, for the ingest report."""
        if not self.unread:
            return "PDF has no text layer and no page images"
        if self.ocr_off:
            return f"no text layer; {self.ocr_problem or 'OCR is off (setting ocr)'}"
        skipped = f" ({self.ocr_skipped:,} page images too small or blank to read)" if self.ocr_skipped else ""
        if self.ocr_stopped:
            return f"no text layer; OCR found no text before it stopped: {self.ocr_stopped}{skipped}"
        return f"no text layer; OCR found no text{skipped}"


def usable(text: str) -> bool:
    count = 0
    for ch in text:  # stops at the 16th: a normal page is decided by its first words
        if ch.isalnum():
            count += 1
            if count >= MIN_LAYER_CHARS:
                return True
    return False


def read_pdf(name: str, path: Path, max_chars: int, ocr: OcrEngine | None = None) -> PdfText:
    """Each page's text: the text layer through pypdf directly (llama-index's PDFReader retries a
    damaged file three times and wraps the error as "RetryError[<Future ...>]"), OCR where the layer
    is not usable. Raises LoadError for a damaged or encrypted file or past max_chars."""
    import pypdf
    from pypdf.errors import FileNotDecryptedError

    pages: list[str] = []
    chars = 0
    try:
        reader = pypdf.PdfReader(path)  # an empty user password is tried; another raises FileNotDecryptedError
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            chars += len(text)
            if chars > max_chars:
                raise _too_long(name, max_chars, number)
            pages.append(text)
    except LoadError:
        raise
    except FileNotDecryptedError as exc:
        raise LoadError(name, "PDF is encrypted (password-protected); save a copy without the password") from exc
    except Exception as exc:  # pypdf raises many types for a damaged file
        raise LoadError(name, f"cannot parse PDF ({type(exc).__name__}: {exc})") from exc
    weak = [n for n, text in enumerate(pages, start=1) if not usable(text)]
    if not weak:
        return PdfText(pages)
    return _ocr_pages(name, path, pages, weak, max_chars, ocr)


def _ocr_pages(name: str, path: Path, pages: list[str], weak: list[int], max_chars: int,
               ocr: OcrEngine | None) -> PdfText:
    import pypdfium2 as pdfium

    problem = "" if ocr is not None else "OCR is off (setting ocr)"
    if ocr is not None and (reason := unavailable_reason()):
        problem = reason
    ocr_pages: list[int] = []
    unread: list[int] = []
    digest = file_digest(path) if not problem else ""
    budget = ocr.budget() if ocr is not None and not problem else None
    stopped = ""
    try:
        document = pdfium.PdfDocument(str(path))
    except Exception as exc:  # pdfium cannot open what pypdf read: keep the text layer alone
        log.warning("%s: pdfium cannot open it for OCR (%s)", name, exc)
        return PdfText(pages)
    try:
        for number in weak:
            page = document[number - 1]
            try:
                if not _has_image(page):
                    continue
                if problem:
                    unread.append(number)
                    log.info("%s: page %d has no usable text layer and is not OCR'd: %s", name, number, problem)
                    continue
                try:
                    text = ocr.read_within(page, page_key(digest, number), budget).text
                except OcrBudgetSpent as spent:  # the pages read so far are kept; the rest are not read
                    stopped = str(spent)
                    unread.extend(n for n in weak if n >= number)
                    log.warning("%s: %s; pages from %d on are not read", name, stopped, number)
                    break
            finally:
                page.close()
            if not usable(text) and len(text.strip()) <= len(pages[number - 1].strip()):
                unread.append(number)
                log.info("%s: page %d has no usable text layer and OCR found no text; left out", name, number)
                continue
            pages[number - 1] = text
            if sum(map(len, pages)) > max_chars:
                raise _too_long(name, max_chars, number)
            ocr_pages.append(number)
    finally:
        document.close()
    return PdfText(pages, tuple(ocr_pages), tuple(unread), ocr_off=bool(problem), ocr_problem=problem,
                   ocr_stopped=stopped, ocr_skipped=budget.skipped if budget is not None else 0)


def _has_image(page) -> bool:
    import pypdfium2.raw as raw

    return any(obj.type == raw.FPDF_PAGEOBJ_IMAGE for obj in page.get_objects(max_depth=2))


def _too_long(name: str, max_chars: int, number: int) -> LoadError:
    return LoadError(name, f"has more than {max_chars:,} characters of text by page {number}, past the "
                           "limit (setting max_file_chars)")
