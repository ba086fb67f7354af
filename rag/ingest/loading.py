"""Loading: paths -> Documents. Every failure is a LoadError naming the file and the reason.

Every input is bounded before it can cost much (docs/architecture.md, "Limits on input"): the file's
size from `stat` before it is read, a .docx's unzipped size and expansion ratio from the zip
directory before a member is inflated, the extracted text's length before it is chunked. Only regular
files are opened (a FIFO would block the read forever). PDF goes through rag/ingest/pdf.py (pdfium, OCR for scanned pages); DOCX XML and HTML
are streamed, so that scripts, styles and markup never reach the index and memory stays flat; text
files must be UTF-8 (or UTF-16/UTF-32 with a byte-order mark).
"""
from __future__ import annotations

import codecs
import errno
import hashlib
import os
import re
import stat
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rag.errors import InputError, LoadError
from rag.ingest.ocr import OcrEngine
from rag.ingest.pdf import read_pdf
from rag.ingest import formats
from rag.types import Document

SUPPORTED_EXTENSIONS = (".txt", ".md", ".html", ".htm", ".pdf", ".docx") + formats.EXTENSIONS
ZIP_EXTENSIONS = (".docx",) + formats.ZIP_EXTENSIONS
MAX_FILE_BYTES = 50 * 1024 * 1024
PAGE_SEPARATOR = "\n\n"
# The expansion ratio is only held against zip members bigger than this once unzipped: small parts
# (styles, settings) of a few KB can compress 100x without costing anything.
ZIP_RATIO_GRACE_BYTES = 2**20


@dataclass(frozen=True)
class Limits:
    """The bounds on one input file; the values and their reasons live in rag.config.Settings."""

    max_chars: int
    max_unzipped_bytes: int
    max_zip_ratio: float
    max_bytes: int = MAX_FILE_BYTES
    table_words: int = 160  # a block of table rows fits one chunk: RAG.add sets the index's chunk size

    @classmethod
    def of(cls, settings) -> "Limits":  # settings: rag.config.Settings
        return cls(max_chars=settings.max_file_chars, max_unzipped_bytes=settings.max_unzipped_mb * 2**20,
                   max_zip_ratio=settings.max_zip_ratio)

    @classmethod
    def default(cls) -> "Limits":
        from rag.config import Settings

        fields = Settings.model_fields
        return cls(max_chars=fields["max_file_chars"].default,
                   max_unzipped_bytes=fields["max_unzipped_mb"].default * 2**20,
                   max_zip_ratio=fields["max_zip_ratio"].default)


def discover(paths: Iterable[str | Path], skip: Iterable[str] = ()) -> Iterator[Path]:
    """Yield what is under the given paths (folders recursively, hidden entries skipped), sorted.

    Everything that is not a folder is yielded, so that `load` names what is wrong with a FIFO, a
    device, a broken link or a link loop instead of it vanishing in silence; so is a folder that cannot
    be listed, a link to a folder met inside a folder (not followed: a link to an ancestor would loop),
    and an empty folder named like a supported file. A missing path raises InputError at once: it is a
    typo, not a bad file."""
    skipped = set(skip)
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            path.lstat()
        except (FileNotFoundError, NotADirectoryError):
            raise InputError(f"path does not exist: {path}") from None
        except OSError:
            yield path  # e.g. a parent folder without search permission: load names it
            continue
        if path.is_dir():
            yield from _walk(path, skipped)
        else:
            yield path


def _walk(folder: Path, skipped: set[str]) -> Iterator[Path]:
    """Depth first, each folder's entries sorted by name: the order of sorted(folder.rglob("*")). A
    stack of listings, so that a deep tree cannot exhaust Python's recursion limit."""
    entries = _listing(folder)
    if entries is None:
        yield folder  # load names why it cannot be listed
        return
    stack = [iter(entries)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        child = Path(entry.path)
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if not is_dir:
            if entry.name not in skipped:
                yield child
            continue
        sub = _listing(child)
        if sub is None or (not sub and child.suffix.lower() in SUPPORTED_EXTENSIONS):
            yield child
        else:
            stack.append(iter(sub))


def _listing(folder: Path) -> list[os.DirEntry] | None:
    """The folder's entries that are not hidden, sorted by name; None if it cannot be listed."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError:
        return None


def document_id(source: str, data: bytes) -> str:
    """A document is one file: its id hashes the path and the contents. The same contents at two paths
    are two documents (deleting one never removes the other), and an edited file replaces the document
    at its path whatever the new contents, even when they equal another file's."""
    return hashlib.sha256(source.encode("utf-8", "surrogateescape") + b"\0" + data).hexdigest()[:16]


def content_hash(data: bytes) -> str:
    """The file's contents alone, whatever its path: `RAG.sync` finds a moved file by it."""
    return hashlib.sha256(data).hexdigest()


def file_id(path: Path, max_bytes: int = MAX_FILE_BYTES) -> str | None:
    """The id `load` would give this file, from its path and bytes alone, without parsing it; None for
    a file `load` would not read (unsupported, too big, not a regular file, unreadable: `load` names why).
    `RAG.add` asks this first, so an unchanged file is never parsed, chunked or embedded again."""
    name = str(path)
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        return None
    try:
        if _regular_file(name, path).st_size > max_bytes:
            return None
        data = _read(name, path, max_bytes)
    except LoadError:
        return None
    return document_id(str(path.resolve()), data)


def load(path: Path, limits: Limits | None = None, ocr: OcrEngine | None = None) -> Document:
    """Read one file into a Document, or raise LoadError with a reason a person can act on. `ocr`
    reads PDF pages without a usable text layer (rag/ingest/pdf.py); None: such pages are not read."""
    limits = limits or Limits.default()
    name = str(path)
    ext = path.suffix.lower()
    info = _regular_file(name, path)
    if ext not in SUPPORTED_EXTENSIONS:
        raise LoadError(name, f"unsupported file type {ext or '(none)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}")
    if info.st_size > limits.max_bytes:
        raise LoadError(name, f"file is {_size(info.st_size)}, more than the {_size(limits.max_bytes)} limit")
    data = _read(name, path, limits.max_bytes)
    if not data.strip():
        raise LoadError(name, "file is empty")
    if ext in ZIP_EXTENSIONS:
        _check_zip(name, path, limits)
    scanned = None
    sections: tuple[tuple[int, str], ...] = ()
    if ext in formats.READERS:  # slides, tables, e-books, e-mails, notebooks: rag/ingest/formats/
        got = formats.read(path, data, name=name, max_chars=limits.max_chars, table_words=limits.table_words,
                           html_text=_html_text, decode=_decode)
        pages, sections = [got.text], got.sections  # the text is stripped: its offsets survive _join_pages
    elif ext == ".pdf":
        scanned = read_pdf(name, path, limits.max_chars, ocr)
        pages = scanned.pages
    elif ext == ".docx":
        pages = [_docx_text(name, path, limits.max_chars)]
    elif ext in (".html", ".htm"):
        pages = [_html_text(_decode(name, data), name, limits.max_chars)]
    else:
        pages = [_decode(name, data)]
    text, page_starts = _join_pages(pages, paged=ext == ".pdf")
    if len(text) > limits.max_chars:
        raise LoadError(name, f"has {len(text):,} characters of text, more than the {limits.max_chars:,} limit "
                              "(setting max_file_chars)")
    if not text.strip():
        raise LoadError(name, scanned.empty_reason() if scanned else "no text found in file")
    source = str(path.resolve())
    return Document(id=document_id(source, data), source=source, text=text, page_starts=page_starts,
                    content_hash=content_hash(data),
                    ocr_pages=scanned.ocr_pages if scanned else (),
                    sections=sections, partial=f"only part indexed: {scanned.ocr_stopped}" if scanned and scanned.ocr_stopped else "")


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB" if n >= 2**20 else f"{n:,} bytes"


def _regular_file(name: str, path: Path) -> os.stat_result:
    """The file's stat if it is a regular file (links followed), else a LoadError saying what it is."""
    try:
        info = path.stat()
    except OSError as exc:
        raise LoadError(name, _os_reason(path, exc)) from exc
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return info
    if stat.S_ISDIR(mode):
        if path.is_symlink():
            raise LoadError(name, "is a link to a folder; links inside a folder are not followed "
                                  "(give the folder itself to index it)")
        try:
            os.scandir(path).close()
        except OSError as exc:
            raise LoadError(name, f"folder cannot be listed: {_os_reason(path, exc)}") from exc
        raise LoadError(name, "is an empty folder, not a file")
    kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
    raise LoadError(name, f"is {kind}, not a regular file")


def _os_reason(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop (the link leads back to itself)"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"broken symbolic link (its target {os.readlink(path)!r} does not exist)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return f"cannot read file: {exc.strerror or exc}"


def _read(name: str, path: Path, max_bytes: int) -> bytes:
    """The file's bytes. Opened without blocking and checked again once open, so a file swapped for
    a FIFO after `stat` cannot hang the read; at most max_bytes + 1 bytes are read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise LoadError(name, _os_reason(path, exc)) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LoadError(name, "is not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise LoadError(name, f"cannot read file: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise LoadError(name, f"file is larger than the {_size(max_bytes)} limit")
    return data


def _check_zip(name: str, path: Path, limits: Limits) -> None:
    """Refuse a zip bomb from the zip directory alone, before any member is inflated. The directory's
    sizes can lie, but Python's zipfile stops inflating a member at its declared size (ZipExtFile
    cuts its output at file_size), so the declared sizes bound what a reader can be handed."""
    kind = path.suffix.lower().lstrip(".").upper()
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise LoadError(name, f"cannot parse {kind}: not a valid zip archive ({exc})") from exc
    total = sum(m.file_size for m in members)
    if total > limits.max_unzipped_bytes:
        raise LoadError(name, f"{kind} expands to {_size(total)} when unzipped, more than the "
                              f"{_size(limits.max_unzipped_bytes)} limit (setting max_unzipped_mb; a zip bomb?)")
    for m in members:
        if m.file_size > ZIP_RATIO_GRACE_BYTES and m.file_size > limits.max_zip_ratio * max(m.compress_size, 1):
            ratio = m.file_size / max(m.compress_size, 1)
            raise LoadError(name, f"{kind} part {m.filename!r} expands {ratio:,.0f}x ({_size(m.compress_size)} to "
                                  f"{_size(m.file_size)}), more than the {limits.max_zip_ratio:g}x limit "
                                  "(setting max_zip_ratio; a zip bomb?)")


# Byte-order marks, longest first: the UTF-32-LE mark begins with the UTF-16-LE one.
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def _decode(name: str, data: bytes) -> str:
    encoding = next((enc for bom, enc in _BOMS if data.startswith(bom)), None)
    if encoding is None:
        if b"\x00" in data[:8192]:
            raise LoadError(name, "looks like a binary file, not text (UTF-16 text needs a byte-order mark)")
        encoding = "utf-8"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        label = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}[encoding]
        raise LoadError(name, f"text is not valid {label} (byte {exc.start})") from exc
    return text.replace("\r\n", "\n")


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx_text(name: str, path: Path, max_chars: int) -> str:
    """The text of a .docx's headers, body and footers, as docx2txt (llama-index's DocxReader) gives it:
    w:t text, a tab for w:tab, a newline for w:br/w:cr, a blank line before each w:p. Our own loop
    because docx2txt builds the whole XML tree: 100 MB of document.xml peaked at 1.1 GB RSS in 14 s;
    streamed here (each paragraph dropped once read) and stopped at max_chars, the same file stays at
    ~300 MB (the imports) and is refused after reading only its first 5M characters. The parser is
    expat (ElementTree): it fetches no external entity (an XXE reference is an undefined-entity error)
    and refuses entity bombs (expat >= 2.4.1), so neither expands."""
    from xml.etree.ElementTree import ParseError, iterparse

    parts: list[str] = []
    chars = 0
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            members = ([n for n in names if re.fullmatch(r"word/header\d*\.xml", n)] + ["word/document.xml"]
                       + [n for n in names if re.fullmatch(r"word/footer\d*\.xml", n)])
            for member in members:
                with archive.open(member) as xml:
                    stack: list = []
                    for event, elem in iterparse(xml, events=("start", "end")):
                        if event == "start":
                            stack.append(elem)
                            piece = {"p": "\n\n", "tab": "\t", "br": "\n", "cr": "\n"}.get(
                                elem.tag[len(_W):] if elem.tag.startswith(_W) else "", "")
                        else:
                            stack.pop()
                            piece = (elem.text or "") if elem.tag == _W + "t" else ""
                            if elem.tag == _W + "p":  # drop the read paragraph: memory stays flat
                                elem.clear()
                                if stack:
                                    stack[-1].remove(elem)
                        if piece:
                            parts.append(piece)
                            chars += len(piece)
                            if chars > max_chars:
                                raise LoadError(name, f"has more than {max_chars:,} characters of text, more than "
                                                      "the limit (setting max_file_chars)")
    except LoadError:
        raise
    except KeyError as exc:
        raise LoadError(name, "cannot parse DOCX: it has no word/document.xml") from exc
    except (ParseError, zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise LoadError(name, f"cannot parse DOCX ({type(exc).__name__}: {exc})") from exc
    return "".join(parts).strip()


_HIDDEN_TAGS = frozenset({"script", "style", "noscript", "template", "iframe", "object", "embed", "svg", "head"})
_BLOCK_TAGS = frozenset({"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article",
                         "pre", "blockquote"})
# Elements that never have content or an end tag (the HTML standard's void elements).
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "keygen", "link", "meta",
                        "menuitem", "param", "source", "track", "wbr"})


def _html_text(html: str, name: str = "", max_chars: int | None = None) -> str:
    """The visible text, a blank line after each block element, stopped past max_chars.

    Streamed through the standard library's HTMLParser with a stack of open elements, no tree: an end
    tag closes up to its most recent open element (as BeautifulSoup's html.parser builder does; unlike
    it, <body> also ends an unclosed <head>, whose content would otherwise hide the page) and
    everything inside script, style, head etc. is dropped. Why not BeautifulSoup, which this replaced:
    its tree of a 20 MB page took 46 s and 1.6 GB, and `insert_after` behind every block tag was
    quadratic in the nesting (32,000 nested <div>s 70 s CPU, 100,000 ~11 min). Here both are linear
    (docs/performance.md, "Hostile input": 100,000 nested <div>s in 0.8 s CPU, the 20 MB page in 8.8 s)."""
    from html.parser import HTMLParser

    limit = max_chars if max_chars is not None else 2**62

    class Visible(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.chars = 0
            self.open: list[str] = []
            self.count: dict[str, int] = {}  # open elements by name: an end tag with none open is O(1)
            self.hidden = 0  # open elements whose content is not shown

        def add(self, text: str) -> None:
            self.parts.append(text)
            self.chars += len(text)
            if self.chars > limit:
                raise LoadError(name, f"has more than {limit:,} characters of text, more than the limit "
                                      "(setting max_file_chars)")

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "body" and self.count.get("head"):  # <body> ends an unclosed <head>, as browsers do
                self.handle_endtag("head")
            if tag in _VOID_TAGS:
                if tag in _BLOCK_TAGS and not self.hidden:
                    self.add("\n\n")
                return
            self.open.append(tag)
            self.count[tag] = self.count.get(tag, 0) + 1
            self.hidden += tag in _HIDDEN_TAGS

        def handle_endtag(self, tag: str) -> None:
            if self.count.get(tag):
                while self.pop_open() != tag:
                    pass

        def pop_open(self) -> str:
            tag = self.open.pop()
            self.count[tag] -= 1
            self.hidden -= tag in _HIDDEN_TAGS
            if tag in _BLOCK_TAGS and not self.hidden:
                self.add("\n\n")
            return tag

        def handle_data(self, data: str) -> None:
            if not self.hidden:
                self.add(data)

        def unknown_decl(self, data: str) -> None:  # <![CDATA[...]]> is text, as BeautifulSoup has it
            if data.startswith("CDATA[") and not self.hidden:
                self.add(data[6:])

    # Markup ends with ">", so after the last ">" a "<" can only be text. Python's HTMLParser (before
    # 3.13.4, gh-135462) rescans to the end of the input from each such "<": 80,000 characters of
    # "<a x<a x..." took 41 s (BeautifulSoup's html.parser builder too). Escaped, they take 0.1 s.
    last = html.rfind(">") + 1
    if "<" in html[last:]:
        html = html[:last] + html[last:].replace("&", "&amp;").replace("<", "&lt;")
    parser = Visible()
    parser.feed(html)
    parser.close()
    while parser.open:
        parser.pop_open()
    text = re.sub(r"[^\S\n]+", " ", "".join(parser.parts))
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
