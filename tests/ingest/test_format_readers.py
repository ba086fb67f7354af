"""Each reader of rag/ingest/formats/ called directly on a file made here: its text, its section labels,
and the shared helpers of formats/common.py (whitespace cleaning, the character limit)."""
from __future__ import annotations

import pytest

from rag.errors import LoadError
from rag.ingest import loading
from rag.ingest.formats.common import Parts, Source, clean
from rag.ingest.formats.epub import read_epub
from rag.ingest.formats.mail import read_eml
from rag.ingest.formats.notebook import read_ipynb
from rag.ingest.formats.slides import read_pptx
from rag.ingest.formats.tables import read_csv, read_xlsx
from tests.formatmakers import make_csv, make_eml, make_epub, make_ipynb, make_pptx, make_xlsx


def source(path, max_chars: int = 100_000) -> Source:
    return Source(name=path.name, path=path, data=path.read_bytes(), max_chars=max_chars, table_words=200,
                  html_text=loading._html_text, decode=loading._decode)


def labels(extracted) -> list[str]:
    return [label for _, label in extracted.sections]


def test_clean_folds_spaces_and_blank_lines_and_strips_the_ends():
    assert clean("  a \t b\r\n\r\n\n  c\rd ") == "a b\n\nc\nd"


def test_parts_drop_empty_parts_and_stop_at_the_character_limit(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    parts = Parts(source(tmp_path / "x.txt", max_chars=12))
    parts.add("one", "  first ")
    parts.add("empty", "   ")
    parts.add("two", "ok")
    got = parts.result()
    assert got.text == "first\n\nok" and got.sections == ((0, "one"), (7, "two"))
    with pytest.raises(LoadError, match="more than 12 characters"):
        parts.add("three", "too much")


def test_slides_one_section_per_slide(tmp_path):
    got = read_pptx(source(make_pptx(tmp_path / "d.pptx", [("Intro", "Welcome"), ("Pilot", "Ships in May.")])))
    assert "Ships in May." in got.text and len(labels(got)) == 2 and "2" in labels(got)[1]


def test_tables_name_the_sheet_and_repeat_the_header(tmp_path):
    csv = read_csv(source(make_csv(tmp_path / "t.csv", [["city", "rent"], ["Lisbon", 4200], ["Porto", 3100]])))
    assert "Lisbon" in csv.text and "rent" in csv.text and csv.sections
    xlsx = read_xlsx(source(make_xlsx(tmp_path / "t.xlsx", {"Costs": [["item", "eur"], ["depot", 4200]]})))
    assert "depot" in xlsx.text and any("Costs" in label for label in labels(xlsx))


def test_epub_chapters_and_mail_headers_and_notebook_cells(tmp_path):
    epub = read_epub(source(make_epub(tmp_path / "b.epub", [("Harbour", "The ferry leaves at dawn."),
                                                             ("Market", "Fish is sold at noon.")])))
    assert "ferry leaves at dawn" in epub.text and "Fish is sold" in epub.text
    assert any("Harbour" in label for label in labels(epub))
    mail = read_eml(source(make_eml(tmp_path / "m.eml", "Budget", "ann@example.org", "Mon, 3 Mar 2025 10:00:00 +0000",
                                    "The budget is 40,000 euros.")))
    assert "40,000 euros" in mail.text and "Budget" in mail.text
    nb = read_ipynb(source(make_ipynb(tmp_path / "n.ipynb", [("markdown", "# Results"), ("code", "print(42)")])))
    assert "Results" in nb.text and "print(42)" in nb.text
