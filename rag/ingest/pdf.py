"""PDF -> page texts. The text layer through pdfium (pypdfium2); a page without a usable one through OCR.

pdfium reads a page's text 5-20x faster than pypdf (docs/performance.md, "PDF piles"). Its raw text has
"\r\n" between lines, a marker (U+FFFE or \x02) in place of a hyphen and line break that split a word,
and sometimes other control characters; `clean_page_text` turns these into "\n" and nothing, and
keeps for each character the index of pdfium's character it came from, so that the UI's page view
(rag/app/page_view.py) finds a cited sentence's boxes on the same text page the index was built from.
pypdf is kept only for a file pdfium cannot open (or finds no page in); pypdf raises the reason then.

A page's text layer is *usable* when it holds at least `MIN_LAYER_CHARS` letters or digits: a scanned
page often carries a stray page number or a scanner's stamp in its text layer, which is not its text.
Only a page that is not usable *and* holds an image is OCR'd (rag/ingest/ocr.py), so a normal PDF
costs nothing extra and a truly blank page is not OCR'd. A page whose OCR finds nothing is left out
and the rest of the document is indexed (its pages keep their numbers); only a PDF with no text at
all is a failure, named with its reason.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from rag.errors import LoadError
from rag.ingest.ocr import OcrBudgetSpent, OcrEngine, file_digest, page_key, unavailable_reason

log = logging.getLogger(__name__)

MIN_LAYER_CHARS = 16
ENCRYPTED = "PDF is encrypted (password-protected); save a copy without the password"
_PASSWORD_ERROR = 4  # FPDF_ERR_PASSWORD

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


# pdfium's text has "\r\n" between lines; a word hyphenated at a line end comes back whole, the
# hyphen and the line break replaced by one marker (U+FFFE from FPDFText_GetText, \x02 from
# FPDFText_GetUnicode): "infec\ufffetion". Markers, soft hyphens and other control characters are
# invisible on the page and dropped ("infection"); tabs and line breaks stay, each line break one "\n".
_SPECIAL = re.compile("\r\n|\r|[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\xad\ufffe\uffff]")


def clean_page_text(raw: str, where: list[int] | None = None) -> str:
    """pdfium's text of one page made plain: "\n" for each line break, line-end hyphenation markers
    and other control characters dropped. With `where` (an empty list), it is filled with the index in
    `raw` of each character of the result, so a span of the result maps back to pdfium's characters."""
    out: list[str] = []
    at = 0
    for m in _SPECIAL.finditer(raw):
        a, b = m.span()
        out.append(raw[at:a])
        piece = "\n" if m.group()[0] == "\r" else ""
        out.append(piece)
        if where is not None:
            where.extend(range(at, a))
            where.extend([a] * len(piece))
        at = b
    out.append(raw[at:])
    if where is not None:
        where.extend(range(at, len(raw)))
    return "".join(out)


def raw_page_text(textpage) -> str:
    """pdfium's text of a page, one character per pdfium character index (what the boxes are indexed by)."""
    import pypdfium2.raw as raw

    count = textpage.count_chars()
    if count <= 0:
        return ""
    text = textpage.get_text_range(0, count)
    if len(text) != count:  # a character outside the BMP is two UTF-16 units: read them one by one
        text = "".join(chr(raw.FPDFText_GetUnicode(textpage, i) or 32) for i in range(count))
    return text


def read_pdf(name: str, path: Path, max_chars: int, ocr: OcrEngine | None = None) -> PdfText:
    """Each page's text: the text layer through pdfium (through pypdf if pdfium cannot open the file),
    OCR where the layer is not usable. Raises LoadError for a damaged or encrypted file or past max_chars."""
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(str(path))  # an empty user password is tried, as pypdf does
    except pdfium.PdfiumError as exc:
        if getattr(exc, "err_code", None) == _PASSWORD_ERROR:
            raise LoadError(name, ENCRYPTED) from exc
        log.info("%s: pdfium cannot open it (%s); reading it with pypdf", name, exc)
        return _with_pypdf(name, path, max_chars)
    try:
        if len(document) == 0:  # pdfium found no page (a cut file): pypdf names what is wrong, or reads it
            return _with_pypdf(name, path, max_chars)
        pages: list[str] = []
        chars = 0
        for number in range(1, len(document) + 1):
            try:
                page = document[number - 1]
                textpage = page.get_textpage()
            except Exception as exc:  # noqa: BLE001 - pdfium raises PdfiumError or ctypes errors
                raise LoadError(name, f"cannot parse PDF page {number} ({type(exc).__name__}: {exc})") from exc
            try:
                text = clean_page_text(raw_page_text(textpage))
            finally:
                textpage.close()
                page.close()
            chars += len(text)
            if chars > max_chars:
                raise _too_long(name, max_chars, number)
            pages.append(text)
        weak = [n for n, text in enumerate(pages, start=1) if not usable(text)]
        if not weak:
            return PdfText(pages)
        return _ocr_pages(name, path, document, pages, weak, max_chars, ocr)
    finally:
        document.close()


def _with_pypdf(name: str, path: Path, max_chars: int) -> PdfText:
    """The text layer through pypdf, for a file pdfium cannot open (no OCR: that needs pdfium). pypdf
    is read directly: llama-index's PDFReader retries a damaged file three times and wraps the error
    as "RetryError[<Future ...>]"."""
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
        raise LoadError(name, ENCRYPTED) from exc
    except Exception as exc:  # pypdf raises many types for a damaged file
        raise LoadError(name, f"cannot parse PDF ({type(exc).__name__}: {exc})") from exc
    if not pages:
        raise LoadError(name, "cannot parse PDF: it has no pages")
    return PdfText(pages)


def _ocr_pages(name: str, path: Path, document, pages: list[str], weak: list[int], max_chars: int,
               ocr: OcrEngine | None) -> PdfText:
    problem = "" if ocr is not None else "OCR is off (setting ocr)"
    if ocr is not None and (reason := unavailable_reason()):
        problem = reason
    ocr_pages: list[int] = []
    unread: list[int] = []
    digest = file_digest(path) if not problem else ""
    budget = ocr.budget() if ocr is not None and not problem else None
    stopped = ""
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
    return PdfText(pages, tuple(ocr_pages), tuple(unread), ocr_off=bool(problem), ocr_problem=problem,
                   ocr_stopped=stopped, ocr_skipped=budget.skipped if budget is not None else 0)


def _has_image(page) -> bool:
    import pypdfium2.raw as raw

    return any(obj.type == raw.FPDF_PAGEOBJ_IMAGE for obj in page.get_objects(max_depth=2))


def _too_long(name: str, max_chars: int, number: int) -> LoadError:
    return LoadError(name, f"has more than {max_chars:,} characters of text by page {number}, past the "
                           "limit (setting max_file_chars)")
