"""The readers of rag/ingest/formats/: text, sections, chunk locations, the repeated table header, and
every bad file named with its reason and skipped. Files are made by the tests (tests/formatmakers.py)."""
from __future__ import annotations

import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from rag.errors import LoadError
from rag.ingest.chunking import SentenceChunker
from rag.ingest.loading import SUPPORTED_EXTENSIONS, ZIP_EXTENSIONS, Limits, load
from rag.types import Citation
from tests.formatmakers import make_csv, make_eml, make_epub, make_ipynb, make_pptx, make_xlsx, result, stream


def chunks_of(doc, size=160):
    chunks = SentenceChunker(size, 1).split(doc)
    for c in chunks:  # the invariant citations and highlights rely on
        assert doc.text[c.start:c.end] == c.text
        assert c.location == doc.section_at(c.start) == doc.section_at(c.end - 1)
    return chunks


def limits(**changes) -> Limits:
    return replace(Limits.default(), **changes)


def test_new_formats_are_supported_and_the_zip_based_ones_checked_for_bombs():
    for ext in (".pptx", ".csv", ".xlsx", ".epub", ".eml", ".ipynb"):
        assert ext in SUPPORTED_EXTENSIONS
    assert {".pptx", ".xlsx", ".epub"} <= set(ZIP_EXTENSIONS)


# --- slides -------------------------------------------------------------------------------------------

def test_pptx_one_section_per_slide_with_notes_and_chunks_located(tmp_path):
    path = make_pptx(tmp_path / "deck.pptx", [("Intro", "Welcome to the review"),
                                              ("Pilot", "The prototype ships to Lisbon in September."),
                                              ("Budget", "The budget is 4.2 million euros.")],
                     notes={3: "Approved by the board in January."})
    doc = load(path)
    assert [label for _, label in doc.sections] == ["slide 1", "slide 2", "slide 3"]
    start = {label: off for off, label in doc.sections}["slide 3"]
    assert doc.text[start:] == "Budget\n\nThe budget is 4.2 million euros.\n\nNotes: Approved by the board in January."
    chunks = chunks_of(doc)
    assert [c.location for c in chunks] == ["slide 1", "slide 2", "slide 3"]  # small slides, never merged
    assert "Lisbon" in chunks[1].text and "Lisbon" not in chunks[0].text + chunks[2].text


def test_pptx_slide_without_text_keeps_the_numbers_of_the_others(tmp_path):
    path = make_pptx(tmp_path / "deck.pptx", [("", ""), ("Second", "Only this slide has text.")])
    assert load(path).sections == ((0, "slide 2"),)


# --- tables -------------------------------------------------------------------------------------------

def test_xlsx_sheets_rows_and_the_header_repeated_in_each_chunk(tmp_path):
    rows = [["Region", "Manager", "Revenue"]] + [[f"Region{i}", f"Manager{i}", 1000 + i] for i in range(2, 40)]
    path = make_xlsx(tmp_path / "sales.xlsx", {"Sales": rows, "Blank": [], "Costs": [["Item", "Cost"], ["Rent", 900.0]]})
    doc = load(path, limits(table_words=40))
    labels = [label for _, label in doc.sections]
    assert labels[0] == "sheet Sales, rows 2-6"  # 5 words + 5 x 6 words ("|" counted, as the chunker does) and labels[-1] == "sheet Costs, row 2"
    assert not any("Blank" in label for label in labels)
    chunks = chunks_of(doc, size=40)
    sales = [c for c in chunks if c.location.startswith("sheet Sales")]
    assert len(sales) == len([lab for lab in labels if lab.startswith("sheet Sales")]) > 3  # one chunk per block
    covered = []
    for c in sales:
        lines = c.text.split("\n")
        assert lines[0] == "Region | Manager | Revenue"  # the header leads every chunk of the table
        first, last = (int(x) for x in c.location.split("rows ")[1].split("-"))
        assert lines[1:] == [f"Region: Region{i}; Manager: Manager{i}; Revenue: {1000 + i}"  # rows whole, named
                             for i in range(first, last + 1)]
        covered += range(first, last + 1)
        assert len(c.text.split()) <= 40
    assert covered == list(range(2, 40))  # each row once, in order
    assert chunks[-1].text == "Item | Cost\nItem: Rent; Cost: 900"  # 900.0 shown as the sheet shows it


def test_csv_dialect_row_numbers_and_header_blocks(tmp_path):
    path = tmp_path / "stock.csv"
    path.write_text("Item;Warehouse;Qty\n\n" + "".join(f"valve {i};Narvik;{i}\n" for i in range(1, 31)), encoding="utf-8")
    doc = load(path, limits(table_words=30))
    assert doc.sections[0][1] == "rows 3-5"  # 5 + 3 x 7 words; the blank line 2 is skipped but counted
    assert doc.text.startswith("Item | Warehouse | Qty\nItem: valve 1; Warehouse: Narvik; Qty: 1\n")
    chunks = chunks_of(doc, size=30)
    assert all(c.text.startswith("Item | Warehouse | Qty\n") for c in chunks)
    assert chunks[-1].location == "rows 30-32" and chunks[-1].text.endswith("valve 30; Warehouse: Narvik; Qty: 30")


def test_quoted_newlines_stay_in_their_cell_and_empty_cells_or_names_are_handled(tmp_path):
    path = make_csv(tmp_path / "notes.csv", [["Who", "Note", ""], ["Ann", "line one\nline two"], ["", "short", "x"]])
    doc = load(path)
    assert doc.text == "Who | Note\nWho: Ann; Note: line one line two\nNote: short; column 3: x"
    assert doc.sections == ((0, "rows 2-3"),)


def test_table_reader_respects_the_character_limit(tmp_path):
    path = make_csv(tmp_path / "big.csv", [["a", "b"]] + [["x" * 50, "y" * 50]] * 200)
    with pytest.raises(LoadError, match="max_file_chars"):
        load(path, limits(max_chars=5000))


# --- e-books ------------------------------------------------------------------------------------------

def test_epub_chapters_in_spine_order_with_titles(tmp_path):
    path = make_epub(tmp_path / "book.epub", [("The Harbour", "They sailed at dawn.\n\nThe sea was calm."),
                                              (None, "An interlude without a heading."),
                                              ("The Storm", "The Marigold lost its mainmast.")])
    doc = load(path)
    assert [label for _, label in doc.sections] == ["chapter 1: The Harbour", "chapter 2: Book part 2",
                                                    "chapter 3: The Storm"]  # no heading: the <title>
    assert "Cover" not in doc.text and "margin" not in doc.text  # the image-only cover and styles add nothing
    storm = next(c for c in chunks_of(doc) if "mainmast" in c.text)
    assert storm.location == "chapter 3: The Storm"


def test_epub_reads_the_spine_not_the_zip_order(tmp_path):
    path = make_epub(tmp_path / "book.epub", [("One", "First chapter text."), ("Two", "Second chapter text.")],
                     cover=False)
    with zipfile.ZipFile(path) as z:
        parts = {n: z.read(n) for n in z.namelist()}
    opf = parts["OEBPS/content.opf"].decode()
    parts["OEBPS/content.opf"] = opf.replace('<itemref idref="ch1"/><itemref idref="ch2"/>',
                                             '<itemref idref="ch2"/><itemref idref="ch1"/>').encode()
    with zipfile.ZipFile(path, "w") as z:
        for n, data in parts.items():
            z.writestr(n, data)
    doc = load(path)
    assert doc.text.index("Second chapter") < doc.text.index("First chapter")
    assert doc.sections[0][1] == "chapter 1: Two"


# --- e-mail -------------------------------------------------------------------------------------------

def test_eml_metadata_in_text_and_label_body_kept_attachment_ignored(tmp_path):
    path = make_eml(tmp_path / "offsite.eml", "Offsite moved", "Dana Whitfield <dana@example.com>",
                    "Tue, 05 Mar 2024 09:30:00 +0000", "The offsite moves to the Alder Lodge.",
                    html="<p>HTML twin of the body</p>", attachment=("agenda.txt", "SECRET ATTACHMENT TEXT"))
    doc = load(path)
    label = 'e-mail "Offsite moved" from Dana Whitfield <dana@example.com>, 2024-03-05'
    assert doc.sections == ((0, label),)
    assert doc.text == ("Subject: Offsite moved\nFrom: Dana Whitfield <dana@example.com>\nDate: 2024-03-05\n\n"
                        "The offsite moves to the Alder Lodge.")
    assert "SECRET" not in doc.text and "HTML twin" not in doc.text and "agenda" not in doc.text
    assert {c.location for c in chunks_of(doc)} == {label}


def test_eml_with_only_an_html_body_goes_through_the_html_extractor(tmp_path):
    path = _write(tmp_path / "news.eml", "Subject: News\nFrom: a@example.com\nDate: sometime in spring\n"
                  "Content-Type: text/html; charset=utf-8\n\n<html><head><style>p{}</style></head>"
                  "<body><p>Visible &amp; kept</p><script>x()</script></body></html>\n")
    doc = load(path)
    assert doc.text.endswith("Visible & kept") and "x()" not in doc.text and "p{}" not in doc.text
    assert doc.sections[0][1] == 'e-mail "News" from a@example.com, sometime in spring'  # as written


# --- notebooks ----------------------------------------------------------------------------------------

def test_ipynb_cells_numbered_with_text_outputs_only(tmp_path):
    path = make_ipynb(tmp_path / "nb.ipynb", [
        ("markdown", "# Churn\nThe model has 300 trees."),
        ("code", ""),  # empty: keeps its number, adds no text
        ("raw", "raw cells are not read"),
        ("code", "print(acc)", [stream("validation accuracy: 0.873\n"), result("0.873"),
                                {"output_type": "error", "ename": "E", "evalue": "boom", "traceback": ["TRACE"]}]),
    ])
    doc = load(path)
    assert [label for _, label in doc.sections] == ["cell 1", "cell 4"]
    assert doc.text == ("# Churn\nThe model has 300 trees.\n\n"
                        "print(acc)\n\nOutput: validation accuracy: 0.873\n0.873")
    assert "iVBOR" not in doc.text and "TRACE" not in doc.text and "raw cells" not in doc.text
    assert [c.location for c in chunks_of(doc)] == ["cell 1", "cell 4"]


# --- bad files: named with a reason, and skipped ------------------------------------------------------

def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("build, reason", [
    (lambda d: _truncated(make_pptx(d / "cut.pptx", [("A", "B")])), "not a valid zip archive"),
    (lambda d: _truncated(make_xlsx(d / "cut.xlsx", {"S": [["a"], ["b"]]})), "not a valid zip archive"),
    (lambda d: _truncated(make_epub(d / "cut.epub", [("A", "Text here.")])), "not a valid zip archive"),
    (lambda d: (d / "fake.pptx").write_bytes(b"this is not a zip file at all") and d / "fake.pptx",
     "not a valid zip archive"),
    (lambda d: _zip(d / "plain.pptx", {"hello.txt": "hi"}), "cannot parse PPTX"),
    (lambda d: _zip(d / "plain.xlsx", {"hello.txt": "hi"}), "cannot parse XLSX"),
    (lambda d: _zip(d / "plain.epub", {"mimetype": "application/epub+zip"}), "no META-INF/container.xml"),
    (lambda d: _zip(d / "nospine.epub", {"META-INF/container.xml": _CONTAINER,
                                         "p.opf": '<package xmlns="http://www.idpf.org/2007/opf"/>'}), "no spine"),
    (lambda d: _zip(d / "badxml.epub", {"META-INF/container.xml": "<container"}), "cannot parse EPUB"),
    (lambda d: _write(d / "cut.ipynb", '{"cells": [{"cell_type": "markdown", "source": "abc'), "not valid JSON"),
    (lambda d: _write(d / "old.ipynb", '{"worksheets": [], "nbformat": 3}'), "nbformat 3"),
    (lambda d: _write(d / "bin.csv", "a,b\n1,\x002\n" * 10), "binary"),
    (lambda d: _write(d / "notmail.eml", "just some words\nwith no headers\n"), "no Subject, From or Date"),
    (lambda d: _truncated_mail(d / "cut.eml"), "truncated"),
])
def test_a_bad_file_of_each_format_is_named_with_its_reason(tmp_path, build, reason):
    path = build(tmp_path)
    with pytest.raises(LoadError) as info:
        load(path)
    assert info.value.path == str(path) and reason in info.value.reason, info.value.reason


_CONTAINER = ('<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
              '<rootfile full-path="p.opf"/></rootfiles></container>')


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _truncated_mail(path: Path) -> Path:
    make_eml(path, "Cut", "a@example.com", "Tue, 05 Mar 2024 09:30:00 +0000", "Body text here.",
             attachment=("a.txt", "attached"))
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"--")])  # the closing boundary is gone
    return path


@pytest.mark.parametrize("ext", [".pptx", ".xlsx", ".epub"])
def test_zip_bombs_of_the_zip_based_formats_are_refused_before_inflating(tmp_path, ext):
    path = tmp_path / f"bomb{ext}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.xml", b"\0" * (8 * 2**20))
    with pytest.raises(LoadError, match=r"expands [\d,]+x .*max_zip_ratio"):
        load(path)
    with pytest.raises(LoadError, match="max_unzipped_mb"):
        load(path, limits(max_unzipped_bytes=2**20))


def test_bad_files_are_skipped_and_the_rest_indexed_with_locations(make_rag, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pptx(folder / "deck.pptx", [("Pilot", "The prototype ships to Lisbon in September.")])
    make_csv(folder / "stock.csv", [["Item", "Warehouse"], ["valves", "Narvik"]])
    _truncated(make_xlsx(folder / "broken.xlsx", {"S": [["a"], ["b"]] * 50}))
    _write(folder / "broken.ipynb", "{not json")
    rag = make_rag("The prototype ships to Lisbon in September [1].")
    report = rag.add([folder])
    assert sorted(Path(f.path).name for f in report.failed) == ["broken.ipynb", "broken.xlsx"]
    assert len(report.added) == 2
    answer = rag.ask("Where does the prototype ship in September?")
    assert not answer.abstained and answer.citations[0].location == "slide 1"
    assert answer.citations[0].to_json()["location"] == "slide 1"
    reopened = type(rag).open(settings=rag.settings, embedder=rag.embedder, llm=rag.llm, seed=False)
    assert {c.location for c in reopened.store.chunks.values()} == {"slide 1", "row 2"}


def test_citation_location_is_optional_and_in_json():
    c = Citation(n=1, text="t", source="/x/a.txt", page=None, start=0, end=1, score=0.5)
    assert c.location is None and c.to_json()["location"] is None


def test_rag_add_sizes_table_blocks_to_the_index_chunk_size(make_rag, tmp_path):
    rows = [["Item", "Warehouse", "Qty"]] + [[f"valve {i}", "Narvik", i] for i in range(1, 61)]
    rag = make_rag(chunk_size=30)
    rag.add([make_csv(tmp_path / "stock.csv", rows)])
    chunks = sorted(rag.store.chunks.values(), key=lambda c: c.start)
    assert len(chunks) == 20  # 5 header words + 3 rows of 7: three rows a chunk
    assert all(c.text.startswith("Item | Warehouse | Qty\nItem: valve ") and len(c.text.split()) <= 30 for c in chunks)
    assert [c.location for c in chunks[:2]] == ["rows 2-4", "rows 5-7"]
