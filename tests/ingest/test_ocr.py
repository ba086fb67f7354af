"""OCR of scanned PDFs: the plumbing (which pages, page numbers, the flag, the reasons, the index)
with a scripted OCR engine here; the real rapidocr models (~1-7 s a page on the shared 2 cores) in
tests/ingest/test_ocr_integration.py. Scanned files are made here: lines drawn by Pillow, saved image-only."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import LoadError
from rag.ingest import loading
from rag.ingest.chunking import SentenceChunker
from rag.ingest.ocr import OcrEngine, OcrLine, OcrPage
from rag.ingest.pdf import usable
from tests.filemakers import SCAN_HEIGHT, SCAN_STEP, SCAN_TOP, make_scanned_pdf, make_text_pdf

PAGE1 = ["The lighthouse keeper of Varnholm Island is Edda Lindqvist.", "She has kept the light since 1987."]
PAGE2 = ["The Varnholm light flashes green every twelve seconds.", "Its range is nineteen nautical miles."]


class ScriptedOcr(OcrEngine):
    """Answers each page sent to it with the next scripted lines; records how many pages it read."""

    def __init__(self, *pages: list[str]) -> None:
        super().__init__()
        self.script = list(pages)
        self.calls = 0

    def read_page(self, page, key=None) -> OcrPage:
        lines = self.script[self.calls] if self.calls < len(self.script) else []
        self.calls += 1
        return OcrPage(tuple(OcrLine(text, (0.1, 0.1 + 0.03 * k, 0.8, 0.12 + 0.03 * k)) for k, text in enumerate(lines)))


@pytest.fixture
def engine() -> ScriptedOcr:
    return ScriptedOcr(PAGE1, PAGE2)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory) -> Path:
    return make_scanned_pdf(tmp_path_factory.mktemp("scan") / "varnholm.pdf", [PAGE1, PAGE2])


class Refusing(OcrEngine):
    def read_page(self, page, key=None):
        raise AssertionError("a page with a usable text layer was sent to OCR")


def test_usable_text_layer_needs_sixteen_letters_or_digits():
    assert not usable("  12 \n ")
    assert not usable("- 3 - scanned by X")  # 14 letters and digits: a stamp, not the page's text
    assert usable("The notice period is three months.")


def test_scanned_pdf_is_read_with_page_numbers_and_the_ocr_flag(scanned, engine):
    doc = loading.load(scanned, ocr=engine)
    assert engine.calls == 2
    assert doc.ocr_pages == (1, 2)
    for line in PAGE1 + PAGE2:
        assert line in doc.text
    assert doc.page_at(doc.text.index("Edda Lindqvist")) == 1
    assert doc.page_at(doc.text.index("nineteen nautical miles")) == 2
    chunks = SentenceChunker(160, 1).split(doc)
    assert {(c.page, c.ocr) for c in chunks} == {(1, True), (2, True)}
    assert "nineteen" in next(c for c in chunks if c.page == 2).text


def test_normal_pdf_never_reaches_ocr(tmp_path):
    pdf = make_text_pdf(tmp_path / "normal.pdf", [["The notice period of the lease is three months."], ["Rent is due monthly."]])
    doc = loading.load(pdf, ocr=Refusing())
    assert doc.ocr_pages == ()
    assert doc.page_at(doc.text.index("Rent")) == 2


def test_blank_scanned_pdf_is_named_with_its_reason(tmp_path, engine):
    blank = make_scanned_pdf(tmp_path / "blank.pdf", [[]])
    with pytest.raises(LoadError, match="no text layer; OCR found no text"):
        loading.load(blank, ocr=ScriptedOcr([]))
    with pytest.raises(LoadError, match=r"no text layer; OCR is off \(setting ocr\)"):
        loading.load(blank, ocr=None)


def test_unreadable_page_of_a_good_scan_is_left_out(tmp_path, engine):
    pdf = make_scanned_pdf(tmp_path / "partly.pdf", [[], PAGE2, PAGE1])
    ocr = ScriptedOcr(PAGE2, [])  # page 1 is blank (never sent to OCR); OCR finds nothing on page 3
    doc = loading.load(pdf, ocr=ocr)
    assert ocr.calls == 2 and doc.ocr_pages == (2,)
    assert doc.page_starts == ((0, 2),)
    assert doc.text.startswith("The Varnholm light")


def test_ingest_report_names_scans_and_the_flag_is_kept_by_the_index(make_rag, tmp_path, scanned):
    blank = make_scanned_pdf(tmp_path / "blank.pdf", [[]])
    rag = make_rag(ocr=False)
    report = rag.add([blank, scanned])
    assert {(Path(f.path).name, f.reason) for f in report.failed} == {
        ("blank.pdf", "no text layer; OCR is off (setting ocr)"), ("varnholm.pdf", "no text layer; OCR is off (setting ocr)")}
    rag = make_rag()  # ocr on, the default
    assert isinstance(rag.ocr, OcrEngine)
    rag.ocr = ScriptedOcr(PAGE1, PAGE2)  # blank.pdf's page is one flat colour: not sent to OCR at all
    report = rag.add([blank, scanned])
    assert [(Path(f.path).name, f.reason) for f in report.failed] == [
        ("blank.pdf", "no text layer; OCR found no text (1 page images too small or blank to read)")]
    assert len(report.added) == 1
    reopened = make_rag()
    chunks = list(reopened.store.chunks.values())
    assert chunks and all(c.ocr for c in chunks) and {c.page for c in chunks} == {1, 2}
    passage = reopened.retrieve("nautical miles range", 1)[0]
    assert passage.chunk.page == 2 and passage.chunk.ocr


def test_index_records_without_the_flag_still_load(make_rag, tmp_path):
    rag = make_rag()
    rag.add([make_text_pdf(tmp_path / "a.pdf", [["The notice period of the lease is three months."]])])
    records = sorted(rag.store.directory.glob("records.*.json"))[-1]
    data = json.loads(records.read_text())
    for chunk in data["chunks"]:
        assert chunk.pop("ocr") is False
    records.write_text(json.dumps(data))
    reopened = make_rag()
    assert [c.ocr for c in reopened.store.chunks.values()] == [False]


class CountingOcr(OcrEngine):
    """The real cache around a scripted reader: counts the pages actually read."""

    def __init__(self, cache_dir: Path, *pages: list[str]) -> None:
        super().__init__(cache_dir=cache_dir)
        self.inner = ScriptedOcr(*pages)

    def _read(self, page) -> OcrPage:
        return self.inner.read_page(page)


def test_pages_read_at_ingest_are_kept_for_the_page_view(tmp_path, scanned):
    from rag.app.page_view import PageView
    from tests.app.test_page_view import boxes_of, citation

    engine = CountingOcr(tmp_path / "ocr", PAGE1, PAGE2)
    doc = loading.load(scanned, ocr=engine)
    assert engine.inner.calls == 2 and len(list((tmp_path / "ocr").glob("*-p[12]-200dpi.json"))) == 2
    later = CountingOcr(tmp_path / "ocr", PAGE1, PAGE2)  # another process, the same cache
    html = PageView(later).html(citation(doc, 2, PAGE2[1], ocr=True), [PAGE2[1]])
    assert later.inner.calls == 0 and len(boxes_of(html)) == 1
    for path in (tmp_path / "ocr").glob("*.json"):
        path.write_text("{not json")
    assert loading.load(scanned, ocr=later).text == doc.text  # a damaged cache file is read again
    assert later.inner.calls == 2


# --------------------------------------------------------------------------- the OCR budget of a file


def make_tiny_image_pdf(path: Path, pages: int) -> Path:
    """An OCR bomb: `pages` pages, each one 8x8 white picture drawn over the whole page, no text."""
    from PIL import Image

    image = Image.new("L", (8, 8), 255)
    image.save(path, save_all=True, append_images=[image] * (pages - 1), resolution=1)  # 8 x 8 inch pages
    return path


def test_an_ocr_bomb_of_tiny_white_images_never_reaches_the_ocr_model(tmp_path):
    """2,000 pages, each a tiny white picture (at ~4 s of OCR a page, over two hours): each page is
    seen not to be worth reading, the model is never even loaded, and the file is named with why."""
    bomb = make_tiny_image_pdf(tmp_path / "bomb.pdf", 2000)
    engine = OcrEngine()
    with pytest.raises(LoadError, match=r"bomb.pdf: no text layer; OCR found no text \(2,000 page images too "
                                        r"small or blank to read\)"):
        loading.load(bomb, ocr=engine)
    assert engine._engine is None  # the OCR model was never loaded


class SlowOcr(ScriptedOcr):
    """A scripted engine whose pages each take `seconds`."""

    def __init__(self, seconds: float, *pages: list[str], **budget) -> None:
        super().__init__(*pages)
        self.seconds = seconds
        self.max_pages = budget.get("max_pages", self.max_pages)
        self.max_seconds = budget.get("max_seconds", self.max_seconds)

    def read_page(self, page, key=None) -> OcrPage:
        import time

        time.sleep(self.seconds)
        return super().read_page(page, key)


def test_the_page_budget_keeps_the_pages_read_and_names_the_file(make_rag, tmp_path):
    pdf = make_scanned_pdf(tmp_path / "long.pdf", [PAGE1, PAGE2, PAGE1, PAGE2])
    engine = SlowOcr(0.0, PAGE1, PAGE2, PAGE1, PAGE2, max_pages=2)
    doc = loading.load(pdf, ocr=engine)
    assert engine.calls == 2 and doc.ocr_pages == (1, 2)
    assert doc.partial == "only part indexed: OCR stopped after 2 page(s) (setting ocr_max_pages)"
    assert "nineteen nautical miles" in doc.text
    rag = make_rag(ocr_max_pages=2)
    rag.executor.ocr = rag.ocr = SlowOcr(0.0, PAGE1, PAGE2, max_pages=2)
    report = rag.add([pdf])
    assert len(report.added) == 1 and not report.failed
    assert [(Path(f.path).name, f.reason) for f in report.partial] == [
        ("long.pdf", "only part indexed: OCR stopped after 2 page(s) (setting ocr_max_pages)")]
    assert rag.retrieve("nautical miles range", 1)[0].chunk.page == 2  # its good pages are answerable


def test_the_time_budget_stops_a_slow_file(tmp_path):
    pdf = make_scanned_pdf(tmp_path / "slow.pdf", [PAGE1] * 6)
    engine = SlowOcr(0.2, *[PAGE1] * 6, max_seconds=0.3)
    doc = loading.load(pdf, ocr=engine)
    assert 1 <= engine.calls < 6 and len(doc.ocr_pages) == engine.calls
    assert doc.partial.startswith("only part indexed: OCR stopped after") and "(setting ocr_max_seconds)" in doc.partial
    with pytest.raises(LoadError, match=r"OCR found no text before it stopped: OCR stopped after \d+ s, 0 page\(s\) "
                                        r"read \(setting ocr_max_seconds\)"):
        loading.load(pdf, ocr=SlowOcr(0.0, PAGE1, max_seconds=1e-9))


def test_ingest_names_a_file_cut_short_and_exits_3(make_rag, tmp_path, monkeypatch, capsys):
    from rag.app import cli

    pdf = make_scanned_pdf(tmp_path / "long.pdf", [PAGE1, PAGE2])
    rag = make_rag(ocr_max_pages=1)
    rag.executor.ocr = rag.ocr = SlowOcr(0.0, PAGE1, PAGE2, max_pages=1)
    monkeypatch.setattr(cli, "_open", lambda settings: rag)
    code = cli.main(["ingest", str(pdf)])
    err = capsys.readouterr().err
    assert code == 3 and f"partly    {pdf}: only part indexed: OCR stopped after 1 page(s) (setting ocr_max_pages)" in err
