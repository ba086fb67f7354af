"""Tables (.csv, .xlsx) -> blocks of whole rows, each block starting with the table's header row.

Why the header is written into the document text once per block, rather than prepended to a chunk's
text: citations, highlights and the context selection all rely on a chunk's text being exactly
`Document.text[start:end]` (rag/answer/citations.py, context.py slice passages out of chunks by
offset). A header added only to the chunk would break that, and a highlight would point at the wrong
characters. So the reader lays the table out as the chunks should see it: rows are grouped into blocks
of at most `table_words` words (the index's chunk size), the header first in each, and each block is a
section ("sheet Sales, rows 2-41"). The chunker never crosses a section, so each block is one chunk,
whole rows with their header, and a citation's location names its rows. The header's repetition is
in the stored text (a few words per block), and a row longer than a chunk is the only one split.

Each row is also written with its column names ("Region: South; Manager: Marco Ferri"): with bare
rows under a header line ("South | Marco Ferri") the default 1.5B model named the wrong row's manager
(both as "a | b" lines and as a Markdown table), and with named cells it did not (docs/evaluation.md,
"Mixed formats"). Empty cells are left out of a row.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Iterator

from rag.errors import LoadError
from rag.ingest.formats.common import Extracted, Parts, Source

CELL_SEPARATOR = " | "  # between the header row's names
FIELD_SEPARATOR = "; "  # between a row's "name: value" cells


def read_csv(source: Source) -> Extracted:
    """A .csv file (UTF-8, or UTF-16/32 with a BOM; comma, semicolon, tab or pipe as detected): one
    table whose first non-empty row is the header; rows are numbered as a spreadsheet shows them."""
    text = source.decode(source.name, source.data)
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    parts = Parts(source)
    try:
        rows = csv.reader(io.StringIO(text, newline=""), dialect)
        _add_table(parts, source, "", enumerate(rows, start=1))
    except csv.Error as exc:
        raise source.fail(f"cannot parse CSV: {exc}") from exc
    return parts.result()


def read_xlsx(source: Source) -> Extracted:
    """Every worksheet of an .xlsx through openpyxl in read-only mode (rows streamed from the XML, not
    built into a workbook in memory), cached values of formulas; each sheet a table, its first
    non-empty row the header."""
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    parts = Parts(source)
    try:
        book = openpyxl.load_workbook(source.path, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError, EOFError) as exc:
        raise source.fail(f"cannot parse XLSX ({type(exc).__name__}: {exc})") from exc
    try:
        for sheet in book.worksheets:
            rows = sheet.iter_rows(min_row=1, values_only=True)
            _add_table(parts, source, f"sheet {sheet.title}, ", enumerate(rows, start=1))
    except LoadError:
        raise
    except Exception as exc:  # a damaged sheet raises whatever its XML parser does
        raise source.fail(f"cannot parse XLSX ({type(exc).__name__}: {exc})") from exc
    finally:
        book.close()
    return parts.result()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="minutes") if (value.hour, value.minute) != (0, 0) \
            else value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return " ".join(str(value).split())  # a cell's own line breaks would end the row


def _values(cells: Iterable[object]) -> list[str]:
    values = [_cell(c) for c in cells]
    while values and not values[-1]:
        values.pop()
    return values


def _row(names: list[str], values: list[str]) -> str:
    """ "Region: South; Manager: Marco Ferri": each non-empty cell under its column's name ("column 4"
    when the header has none)."""
    return FIELD_SEPARATOR.join(f"{names[i] if i < len(names) and names[i] else f'column {i + 1}'}: {v}"
                                for i, v in enumerate(values) if v)


def _add_table(parts: Parts, source: Source, prefix: str, rows: Iterator[tuple[int, Iterable[object]]]) -> None:
    """Blocks of whole rows under the header (the first non-empty row), each within table_words words."""
    header: str | None = None
    names: list[str] = []
    header_row = 0
    block: list[str] = []
    first = last = 0
    words = 0
    pending = 0  # characters of the block not yet handed to `parts`, checked against the limit

    def flush() -> None:
        if header is None:
            return
        if not block:
            parts.add(f"{prefix}row {header_row}", header)
            return
        rows_label = f"row {first}" if first == last else f"rows {first}-{last}"
        parts.add(prefix + rows_label, header + "\n" + "\n".join(block))

    for number, cells in rows:
        values = _values(cells)
        if not values:
            continue
        if header is None:
            names, header, header_row = values, CELL_SEPARATOR.join(values), number
            continue
        line = _row(names, values)
        n = len(line.split())
        if block and words + n > source.table_words:
            flush()
            block, pending = [], 0
        if not block:
            first, words = number, len(header.split())
        block.append(line)
        last = number
        words += n
        pending += len(line) + 1
        parts.check(pending)
    flush()
