"""Loading: paths -> Documents. Every failure is a LoadError naming the file and the reason.

PDF and DOCX go through llama-index's file readers; HTML is parsed with BeautifulSoup so that
scripts, styles and markup never reach the index; text files must be valid UTF-8.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from rag.errors import InputError, LoadError
from rag.types import Document

SUPPORTED_EXTENSIONS = (".txt", ".md", ".html", ".htm", ".pdf", ".docx")
MAX_FILE_BYTES = 50 * 1024 * 1024
PAGE_SEPARATOR = "\n\n"


def discover(paths: Iterable[str | Path], skip: Iterable[str] = ()) -> Iterator[Path]:
    """Yield files under the given paths (folders recursively, hidden entries skipped), sorted.

    A missing path raises InputError at once: it is a typo, not a bad file."""
    skipped = set(skip)
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise InputError(f"path does not exist: {path}")
        if path.is_file():
            yield path
            continue
        for child in sorted(path.rglob("*")):
            rel = child.relative_to(path)
            if child.is_file() and not any(p.startswith(".") for p in rel.parts) and child.name not in skipped:
                yield child


def document_id(source: str, data: bytes) -> str:
    """A document is one file: its id hashes the path and the contents. The same contents at two paths
    are two documents (deleting one never removes the other), and an edited file replaces the document
    at its path whatever the new contents, even when they equal another file's."""
    return hashlib.sha256(source.encode("utf-8", "surrogateescape") + b"\0" + data).hexdigest()[:16]


def load(path: Path) -> Document:
    """Read one file into a Document, or raise LoadError with a reason a person can act on."""
    name = str(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise LoadError(name, f"unsupported file type {ext or '(none)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(name, f"cannot read file: {exc.strerror or exc}") from exc
    if not data.strip():
        raise LoadError(name, "file is empty")
    if len(data) > MAX_FILE_BYTES:
        raise LoadError(name, f"file is larger than {MAX_FILE_BYTES // 2**20} MB")
    if ext == ".pdf":
        pages = _pdf_pages(path)
    elif ext == ".docx":
        pages = [_docx_text(path)]
    elif ext in (".html", ".htm"):
        pages = [_html_text(_decode(name, data))]
    else:
        pages = [_decode(name, data)]
    text, page_starts = _join_pages(pages, paged=ext == ".pdf")
    if not text.strip():
        reason = "PDF has no text layer (scanned image?)" if ext == ".pdf" else "no text found in file"
        raise LoadError(name, reason)
    source = str(path.resolve())
    return Document(id=document_id(source, data), source=source, text=text, page_starts=page_starts)


def _decode(name: str, data: bytes) -> str:
    if b"\x00" in data[:8192]:
        raise LoadError(name, "looks like a binary file, not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(name, f"text is not valid UTF-8 (byte {exc.start})") from exc
    return text.replace("\r\n", "\n")


def _pdf_pages(path: Path) -> list[str]:
    from llama_index.readers.file import PDFReader

    try:
        docs = PDFReader(return_full_document=False).load_data(path)
    except Exception as exc:  # pypdf raises many types for a damaged file
        raise LoadError(str(path), f"cannot parse PDF ({type(exc).__name__}: {exc})") from exc
    return [d.text for d in docs]


def _docx_text(path: Path) -> str:
    from llama_index.readers.file import DocxReader

    try:
        docs = DocxReader().load_data(path)
    except Exception as exc:  # zipfile / xml errors for a damaged file
        raise LoadError(str(path), f"cannot parse DOCX ({type(exc).__name__}: {exc})") from exc
    return "\n\n".join(d.text for d in docs)


_BLOCK_TAGS = ("p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "pre", "blockquote")


def _html_text(html: str) -> str:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "head"]):
        tag.decompose()
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.insert_after("\n\n")
    text = soup.get_text()
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    return re.sub(r"\s*\n\s*\n\s*", "\n\n", text).strip()


def _join_pages(pages: list[str], paged: bool) -> tuple[str, tuple[tuple[int, int], ...]]:
    parts: list[str] = []
    starts: list[tuple[int, int]] = []
    offset = 0
    for number, page in enumerate(pages, start=1):
        page = page.strip()
        if not page:
            continue
        if parts:
            parts.append(PAGE_SEPARATOR)
            offset += len(PAGE_SEPARATOR)
        if paged:
            starts.append((offset, number))
        parts.append(page)
        offset += len(page)
    return "".join(parts), tuple(starts)
