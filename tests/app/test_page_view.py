"""The cited PDF page as a picture with the cited sentence's boxes: text-layer pages through pdfium's
character boxes, OCR'd pages through the OCR lines (scripted here; the real OCR in
tests/ingest/test_ocr_integration.py)."""
from __future__ import annotations

import re
from pathlib import Path

from rag.app.page_view import PageView, find_span, ocr_boxes
from rag.app.render import citation_html
from rag.ingest import loading
from rag.ingest.ocr import OcrLine, OcrPage
from rag.types import Answer, AnswerSentence, Citation
from tests.filemakers import make_text_pdf
from tests.ingest.test_ocr import ScriptedOcr, make_scanned_pdf

LINES = ["The lease of the Harbour Street flat begins on 1 May 2024.",
         "The notice period of the lease is three months.",
         "Rent is due on the first day of each month."]


def boxes_of(html: str) -> list[tuple[float, float, float, float]]:
    """(left, top, width, height) in percent of the page, of each highlight element."""
    return [tuple(map(float, m)) for m in re.findall(
        r'class="rag-page-hl" style="left:([\d.]+)%;top:([\d.]+)%;width:([\d.]+)%;height:([\d.]+)%"', html)]


def citation(doc, page: int, text: str, ocr: bool = False) -> Citation:
    start = doc.text.index(text)
    return Citation(n=1, text=text, source=doc.source, page=page, start=start, end=start + len(text), score=0.9,
                    doc_id=doc.id, ocr=ocr)


def test_find_span_ignores_spacing_hyphens_and_case():
    page = "The lease-\r\nhold  is THREE\nmonths. Next."
    (first, last), = find_span(page, "The leasehold is three months.")
    assert page[first:last + 1] == "The lease-\r\nhold  is THREE\nmonths."
    assert find_span(page, "nothing like it") == []


def test_text_layer_page_marks_the_cited_line(tmp_path):
    pdf = make_text_pdf(tmp_path / "lease.pdf", [LINES, ["Page two says nothing of notice."]])
    doc = loading.load(pdf)
    view = PageView()
    html = view.html(citation(doc, 1, LINES[1]), [LINES[1]])
    assert 'class="rag-page-img" src="data:image/jpeg;base64,' in html
    (left, top, width, height), = boxes_of(html)
    # Helvetica 12 pt, leading 18 pt, first baseline 72 pt from the top of a 792 pt page: line 2's
    # baseline is 90 pt down (11.4%); the box is about one line high and starts at x = 72 pt (11.8%).
    assert abs(left - 100 * 72 / 612) < 1.0
    assert 100 * 75 / 792 < top < 100 * 90 / 792 < top + height < 100 * 96 / 792
    assert 40 < width < 75
    (_, top1, _, _), = boxes_of(view.html(citation(doc, 1, LINES[0]), [LINES[0]]))
    assert top1 < top - 1.5


def test_ocr_page_marks_the_covered_part_of_each_line():
    page = OcrPage((OcrLine("Alpha beta gamma delta.", (0.1, 0.2, 0.5, 0.22)),
                    OcrLine("Epsilon zeta.", (0.1, 0.25, 0.3, 0.27))))
    first, second = ocr_boxes(page, "Gamma delta. Epsilon zeta.")
    assert first[1:] == (0.2, 0.5, 0.22) and 0.25 < first[0] < 0.32
    assert second == (0.1, 0.25, 0.3, 0.27)


def test_scanned_page_is_ocrd_again_at_view_time_and_cached(tmp_path):
    pdf = make_scanned_pdf(tmp_path / "scan.pdf", [["x"]])
    engine = ScriptedOcr(["The keeper is Edda Lindqvist.", "She came in 1987."])
    doc = loading.load(pdf, ocr=ScriptedOcr(["The keeper is Edda Lindqvist.", "She came in 1987."]))
    view = PageView(engine)
    cited = citation(doc, 1, "She came in 1987.", ocr=True)
    html = view.html(cited, ["She came in 1987."])
    assert "(text from OCR)" in html
    assert boxes_of(html) == [(10.0, 13.0, 70.0, 2.0)]
    view.html(cited, ["The keeper is Edda Lindqvist."])
    assert engine.calls == 1  # the page's OCR is cached


def test_other_files_and_changed_files_show_no_page(tmp_path):
    pdf = make_text_pdf(tmp_path / "lease.pdf", [LINES])
    doc = loading.load(pdf)
    view = PageView()
    text = Citation(n=1, text="x", source=str(tmp_path / "a.txt"), page=None, start=0, end=1, score=1.0)
    assert view.html(text, ["x"]) == ""
    make_text_pdf(pdf, [LINES[1:]])
    assert "changed since it was indexed" in view.html(citation(doc, 1, LINES[1]), [LINES[1]])


def test_citation_html_shows_the_page_and_the_ocr_flag(tmp_path):
    pdf = make_text_pdf(tmp_path / "lease.pdf", [LINES])
    doc = loading.load(pdf)
    cited = citation(doc, 1, " ".join(LINES[:2]).replace(" The notice", "\nThe notice"))
    answer = Answer(question="q", text="Three months [1].", citations=[cited], abstained=False,
                    sentences=[AnswerSentence("The notice period is three months [1].", (1,), True)])
    html = citation_html(cited, answer, PageView())
    assert '<mark class="rag-hl">The notice period of the lease is three months.</mark>' in html
    assert len(boxes_of(html)) == 1  # only the cited sentence, not the whole passage
    assert "(text from OCR)" not in html
    flagged = Citation(**{**cited.__dict__, "ocr": True})
    assert "(text from OCR)" in citation_html(flagged, answer)
    assert flagged.to_json()["ocr"] is True and cited.to_json()["ocr"] is False


def test_page_view_needs_no_network(tmp_path):
    html = PageView().html(citation(loading.load(make_text_pdf(tmp_path / "a.pdf", [LINES])), 1, LINES[2]), [LINES[2]])
    assert "http" not in html.split('src="', 1)[1][:10]
    assert Path(tmp_path / "a.pdf").exists()
