"""Readers for the formats beyond text, HTML, PDF and DOCX: slides, tables, e-books, e-mails, notebooks.

Each reader turns a file into `Extracted`: the document's text and its sections, (char offset, label)
pairs a user understands ("slide 3", "sheet Sales, rows 2-41", "chapter 2: The Storm", "cell 5").
The chunker never lets a chunk cross a section, so a chunk's location is exact.

`loading.load` calls `read` after its own checks (regular file, size, the zip-bomb check for the
zip-based formats); the readers add the rest: every failure is a LoadError naming the file and the
reason, and the text is counted while it is extracted, so a file past `max_chars` stops there. The
HTML text extractor and the text decoder are passed in (they live in loading.py, which imports us).

Why not llama-index's file readers: PptxReader runs slides on a thread pool and by default logs and
skips a failure instead of raising it (we must name the file and the reason); EpubReader needs
ebooklib and html2text and IPYNBReader nbconvert (none installed); PagedCSVReader makes one document
per row, where a document here is one file. Each would also give texts without offsets into one
document. So: python-pptx and openpyxl (read-only) for the Office formats, the standard library
(csv, zipfile + expat, email, json) for the rest.

May import: what rag.ingest may (the ground floor and rag.models); in practice rag.errors and each other.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rag.ingest.formats.common import Extracted, Source
from rag.ingest.formats.epub import read_epub
from rag.ingest.formats.mail import read_eml
from rag.ingest.formats.notebook import read_ipynb
from rag.ingest.formats.slides import read_pptx
from rag.ingest.formats.tables import read_csv, read_xlsx

READERS: dict[str, Callable[[Source], Extracted]] = {
    ".pptx": read_pptx,
    ".csv": read_csv,
    ".xlsx": read_xlsx,
    ".epub": read_epub,
    ".eml": read_eml,
    ".ipynb": read_ipynb,
}
EXTENSIONS = tuple(READERS)
ZIP_EXTENSIONS = (".pptx", ".xlsx", ".epub")  # loading._check_zip reads their zip directory first


def read(path: Path, data: bytes, *, name: str, max_chars: int, table_words: int,
         html_text: Callable[[str, str, int], str], decode: Callable[[str, bytes], str]) -> Extracted:
    """The text and sections of one file of a format in READERS; LoadError if it cannot be read."""
    source = Source(name=name, path=path, data=data, max_chars=max_chars, table_words=table_words,
                    html_text=html_text, decode=decode)
    return READERS[path.suffix.lower()](source)


__all__ = ["EXTENSIONS", "READERS", "ZIP_EXTENSIONS", "Extracted", "read"]
