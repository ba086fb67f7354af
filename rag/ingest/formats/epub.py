"""E-books (.epub) with the standard library: the zip's META-INF/container.xml names the package
(OPF) file, whose spine gives the reading order of its XHTML documents; each document's text comes
from the same streamed HTML extractor as .html files. One section per spine document with text,
"chapter N: Title" (its first h1-h3 heading, else its <title>, else just "chapter N"); documents
without text (a cover image) are skipped and not counted. The XML is parsed by expat (ElementTree),
which fetches no external entity and refuses entity bombs."""
from __future__ import annotations

import html
import posixpath
import re
import zipfile
from urllib.parse import unquote
from xml.etree.ElementTree import ParseError, fromstring

from rag.errors import LoadError
from rag.ingest.formats.common import Extracted, Parts, Source

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_HEADING = re.compile(r"<(h[1-3])\b[^>]*>(.*?)</\1\s*>|<title\b[^>]*>(.*?)</title\s*>", re.IGNORECASE | re.DOTALL)
_XHTML_TYPES = ("application/xhtml+xml", "text/html")


def read_epub(source: Source) -> Extracted:
    parts = Parts(source)
    try:
        with zipfile.ZipFile(source.path) as archive:
            for number, (title, text) in enumerate(_chapters(source, archive), start=1):
                parts.add(f"chapter {number}: {title}" if title else f"chapter {number}", text)
    except LoadError:
        raise
    except KeyError as exc:
        raise source.fail(f"cannot parse EPUB: a part it names is missing ({exc})") from exc
    except (ParseError, zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise source.fail(f"cannot parse EPUB ({type(exc).__name__}: {exc})") from exc
    return parts.result()


def _chapters(source: Source, archive: zipfile.ZipFile):
    """(title, text) of each spine document that has text, in reading order."""
    try:
        container = fromstring(archive.read("META-INF/container.xml"))
    except KeyError:
        raise source.fail("cannot parse EPUB: it has no META-INF/container.xml") from None
    rootfile = container.find(f".//{_CONTAINER}rootfile")
    if rootfile is None or not rootfile.get("full-path"):
        raise source.fail("cannot parse EPUB: META-INF/container.xml names no package file")
    opf_path = rootfile.get("full-path")
    package = fromstring(archive.read(opf_path))
    base = posixpath.dirname(opf_path)
    items = {i.get("id"): i for i in package.iter(f"{_OPF}item")}
    spine = [ref.get("idref") for ref in package.iter(f"{_OPF}itemref")]
    if not spine:
        raise source.fail("cannot parse EPUB: its package file has no spine (reading order)")
    for idref in spine:
        item = items.get(idref)
        if item is None or item.get("media-type") not in _XHTML_TYPES:
            continue
        member = posixpath.normpath(posixpath.join(base, unquote(item.get("href", ""))))
        markup = archive.read(member).decode("utf-8", errors="replace")
        text = source.html_text(markup, source.name, source.max_chars)
        if text.strip():
            yield _title(markup), text


def _title(markup: str) -> str:
    heading = title = ""
    for match in _HEADING.finditer(markup[:65536]):
        if match.group(2) is not None:
            heading = match.group(2)
            break
        if not title:
            title = match.group(3) or ""
    plain = html.unescape(re.sub(r"<[^>]+>", " ", heading or title))
    return " ".join(plain.split())[:80]
