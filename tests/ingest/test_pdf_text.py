"""PDF text through pdfium: the cleaning of its raw text (line breaks, hyphenation markers, control
characters) with each character's pdfium index kept, the pypdf fallback for a file pdfium cannot open,
and agreement with pypdf's text on the test PDFs. The benchmark corpus comparison is bench/pdf_corpus.py."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from rag.app.page_view import PageView
from rag.errors import LoadError
from rag.ingest import loading, pdf
from rag.ingest.pdf import clean_page_text
from rag.types import Citation
from tests.filemakers import make_pdf, make_text_pdf

LEASE = [["The lease of the Harbour Street flat begins on 1 May 2024.",
          "The notice period of the lease is three months and the infec-",
          "tion clause (section 4) says nothing of pets; rent is $1,200."],
         ["Page two: the landlord repairs the roof [within 30 days] of a request.",
          "Keys are returned at the end of the tenancy."]]


def non_space(text: str) -> Counter:
    return Counter(c for c in text if not c.isspace())


def test_clean_page_text_makes_line_breaks_plain_and_drops_markers_keeping_each_index():
    raw = "Line one\r\nthe infec\ufffetion\x02s and soft\xadhyphen\x00\r\nlast\rend\tcell"
    where: list[int] = []
    text = clean_page_text(raw, where)
    assert text == "Line one\nthe infections and softhyphen\nlast\nend\tcell"
    assert len(where) == len(text)
    for i, ch in enumerate(text):  # every character maps to the raw character it came from
        assert raw[where[i]] == ("\r" if ch == "\n" else ch)
    assert where == sorted(where)
    assert clean_page_text(raw) == text  # the same text with or without the map


def test_a_word_hyphenated_at_a_line_end_is_whole_in_the_index(tmp_path):
    doc = loading.load(make_text_pdf(tmp_path / "lease.pdf", LEASE))
    assert "the infection clause (section 4)" in doc.text
    assert "\r" not in doc.text and "\ufffe" not in doc.text and "\x02" not in doc.text
    assert doc.page_at(doc.text.index("infection")) == 1
    assert doc.page_at(doc.text.index("Keys are returned")) == 2


def test_pdfium_text_keeps_pypdfs_characters_on_the_test_pdfs(tmp_path):
    import pypdf

    files = [make_text_pdf(tmp_path / "lease.pdf", LEASE),
             make_pdf(tmp_path / "pages.pdf", ["First page words.", "Second page (with brackets) words."]),
             make_text_pdf(tmp_path / "long.pdf", [[f"Line {i} of page {p} says the value is {i * p}." for i in range(30)]
                                                   for p in range(1, 6)])]
    for path in files:
        ours = loading.load(path).text
        theirs = "".join(page.extract_text() for page in pypdf.PdfReader(path).pages)
        ref, got = non_space(theirs), non_space(ours)
        kept = sum(min(n, got[c]) for c, n in ref.items()) / sum(ref.values())
        # all but the hyphens pdfium joins words across (one per hyphenated line)
        assert kept >= 0.99, (path.name, kept, ref - got)
        assert not got - ref, path.name  # nothing pypdf does not have


def test_a_file_pdfium_cannot_open_is_read_by_pypdf(tmp_path, monkeypatch):
    path = make_text_pdf(tmp_path / "lease.pdf", LEASE)

    def refuse(*args, **kwargs):
        raise pdfium.PdfiumError("Failed to load document (PDFium: Data format error).", err_code=3)

    monkeypatch.setattr(pdfium, "PdfDocument", refuse)
    doc = loading.load(path)
    assert "The notice period of the lease is three months" in doc.text
    assert doc.page_at(doc.text.index("Keys are returned")) == 2


def test_an_encrypted_pdf_is_named_by_pdfium_without_asking_pypdf(tmp_path, monkeypatch):
    import pypdf

    writer = pypdf.PdfWriter(clone_from=make_pdf(tmp_path / "plain.pdf", ["Secret words."]))
    writer.encrypt(user_password="pw", owner_password="owner", algorithm="RC4-128")
    writer.write(tmp_path / "locked.pdf")
    monkeypatch.setattr(pdf, "_with_pypdf", lambda *a: pytest.fail("pypdf asked about an encrypted file"))
    with pytest.raises(LoadError, match="PDF is encrypted"):
        loading.load(tmp_path / "locked.pdf")


def test_the_page_view_marks_a_sentence_across_a_hyphenated_line_end(tmp_path):
    path = make_text_pdf(tmp_path / "lease.pdf", LEASE)
    doc = loading.load(path)
    sentence = "The notice period of the lease is three months and the infection clause (section 4) says nothing of pets; rent is $1,200."
    start = doc.text.index(sentence)
    cited = Citation(n=1, text=sentence, source=doc.source, page=1, start=start, end=start + len(sentence),
                     score=0.9, doc_id=doc.id)
    boxes = PageView().boxes(Path(doc.source), 1, sentence, ocr=False)
    assert len(boxes) >= 2  # both lines
    tops = sorted(b[1] for b in boxes)
    assert tops[-1] - tops[0] > 0.015  # one line (18 pt of 792) apart at least
    assert 'class="rag-page-hl"' in PageView().html(cited, [sentence])
