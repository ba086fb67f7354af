"""OCR with the real rapidocr models, and a question over a scanned PDF answered by the real MiniLM
embedder and the real default model, citing the right page with the OCR flag."""
from __future__ import annotations

import pytest

from rag.app.page_view import PageView
from rag.config import Settings
from rag.errors import LoadError
from rag.ingest import loading
from rag.ingest.ocr import OcrEngine
from rag.pipeline import RAG
from tests.filemakers import SCAN_HEIGHT, SCAN_STEP, SCAN_TOP, make_scanned_pdf
from tests.ingest.test_ocr import PAGE1, PAGE2
from tests.app.test_page_view import boxes_of, citation

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine()


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    return make_scanned_pdf(tmp_path_factory.mktemp("scan") / "varnholm.pdf", [PAGE1, PAGE2])


@pytest.fixture(scope="module")
def doc(scanned, engine):
    return loading.load(scanned, ocr=engine)


def test_real_ocr_reads_each_page_with_its_number(doc):
    assert doc.ocr_pages == (1, 2)
    assert doc.page_at(doc.text.index("Edda Lindqvist")) == 1
    assert doc.page_at(doc.text.index("1987")) == 1
    assert doc.page_at(doc.text.index("nineteen nautical miles")) == 2
    assert doc.page_at(doc.text.index("twelve seconds")) == 2


def test_real_ocr_reports_a_blank_scan(tmp_path, engine):
    with pytest.raises(LoadError, match="blank.pdf: no text layer; OCR found no text"):
        loading.load(make_scanned_pdf(tmp_path / "blank.pdf", [[]]), ocr=engine)


def test_scanned_page_view_marks_the_cited_line(doc, engine):
    sentence = "Its range is nineteen nautical miles."
    cited = citation(doc, 2, sentence, ocr=True)
    (left, top, width, height), = boxes_of(PageView(engine).html(cited, [sentence]))
    line_top = 100 * (SCAN_TOP + SCAN_STEP) / SCAN_HEIGHT  # the second line drawn on the page
    assert abs(top - line_top) < 1.5 and 1.0 < height < 3.5
    assert abs(left - 100 * 120 / 1240) < 2.0 and 20 < width < 50


def test_question_over_a_scanned_pdf_cites_its_page_from_ocr(tmp_path, scanned, real_embedder, real_rag):
    settings = Settings.load(index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")
    rag = RAG.open(settings=settings, embedder=real_embedder, llm=real_rag.llm, seed=False)
    report = rag.add([scanned])
    assert report.ok and len(report.added) == 1
    answer = rag.ask("What is the range of the Varnholm light?")
    assert not answer.abstained, answer.refusal_reason
    assert "nineteen" in answer.text.lower() or "19" in answer.text
    cited = [c for c in answer.citations if "nineteen" in c.text]
    assert cited and all(c.page == 2 and c.ocr for c in cited)
    assert cited[0].to_json()["ocr"] is True
    # the page view marks it from the OCR kept at ingest, without reading the page again
    def no_second_reading(page):
        raise AssertionError("the page view OCR'd the page again")

    rag.ocr._read = no_second_reading  # this RAG's own engine; the real reading is done
    html = PageView(rag.ocr).html(cited[0], [cited[0].text])
    assert boxes_of(html)


def test_an_ocr_bomb_beside_a_good_scan_is_stopped_and_the_scan_is_answered(tmp_path, scanned, real_embedder):
    """The 2,000-page bomb of tiny white images costs no OCR and is named; the scan beside it is read by
    the real OCR engine, and a question over it is answered from its page (a scripted model answers)."""
    from pathlib import Path

    from rag.testing import FakeLLM
    from tests.ingest.test_ocr import make_tiny_image_pdf
    from tests.app.test_ui import copy_sentence

    bomb = make_tiny_image_pdf(tmp_path / "bomb.pdf", 2000)
    settings = Settings.load(index_dir=tmp_path / "index", cache_dir=tmp_path / "cache")
    rag = RAG.open(settings=settings, embedder=real_embedder, llm=FakeLLM([copy_sentence("nineteen")]), seed=False)
    report = rag.add([bomb, scanned])
    assert [(Path(f.path).name, f.reason) for f in report.failed] == [
        ("bomb.pdf", "no text layer; OCR found no text (2,000 page images too small or blank to read)")]
    assert [Path(i.source).name for i in report.added] == ["varnholm.pdf"] and not report.partial
    answer = rag.ask("What is the range of the Varnholm light?")
    assert not answer.abstained, answer.refusal_reason
    assert answer.citations and all(c.page == 2 and c.ocr for c in answer.citations)
