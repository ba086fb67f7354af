"""The cited PDF page in the browser: the seed article as a two-page PDF with a text layer, a question
answered by the real model, and the page picture with the cited sentence's highlight boxes in the
DOM where that sentence is printed. Debian's /usr/bin/chromium through Playwright; a screenshot goes
to artifacts/page_view.png."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rag.config import SEEDS_DIR, Settings
from rag.pipeline import RAG
from tests.filemakers import make_text_pdf
from tests.app.test_ui_e2e import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, QUESTION, _free_port, ask

pytestmark = pytest.mark.integration

LEADING, TOP_BASELINE, PAGE_HEIGHT = 18, 72, 792  # make_text_pdf's layout, in points


def seed_pages() -> list[list[str]]:
    """The seed article wrapped at 85 characters, its first five paragraphs on page 1."""
    text = (SEEDS_DIR / "000_a5055be445bd665f.txt").read_text(encoding="utf-8")
    text = text.replace("\u2019", "'").replace("\u201c", '"').replace("\u201d", '"')
    paragraphs = [p for p in text.split("\n") if p.strip()]
    wrap = [textwrap.wrap(p, 85) + [""] for p in paragraphs]
    return [sum(wrap[:5], []), sum(wrap[5:], [])]


@pytest.fixture(scope="module")
def seed_pdf(tmp_path_factory) -> tuple[Path, list[list[str]]]:
    pages = seed_pages()
    return make_text_pdf(tmp_path_factory.mktemp("pdf") / "niger.pdf", pages), pages


@pytest.fixture(scope="module")
def server(tmp_path_factory, seed_pdf, real_embedder, real_rag):
    pytest.importorskip("gradio")
    from rag.app import ui

    directory = tmp_path_factory.mktemp("pdf-index")
    settings = Settings.load(index_dir=directory / "index", cache_dir=directory / "cache")
    rag = RAG.open(settings=settings, embedder=real_embedder, llm=real_rag.llm, seed=False)
    assert rag.add([seed_pdf[0]]).ok
    demo = ui.build_app(rag)
    port = _free_port()
    ui.launch(demo, "127.0.0.1", port, block=False, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


@pytest.mark.browser  # Chromium through Playwright
def test_cited_pdf_page_is_shown_with_the_sentence_highlighted(server, seed_pdf):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    _, pages = seed_pdf
    # "$110 million" is on page 2, on this line of it:
    line = next(k for k, text in enumerate(pages[1]) if "$110" in text)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})
            page.goto(server)
            page.locator("#rag-question textarea").wait_for(timeout=30_000)
            ask(page, QUESTION)
            assert "110" in page.locator("#rag-chat .rag-answer").last.inner_text()
            view = page.locator('#rag-citations .rag-page[data-page="2"]').first
            view.wait_for(timeout=30_000)
            assert "Page 2 of niger.pdf" in view.inner_text()
            image = view.locator("img.rag-page-img")
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            img = image.bounding_box()
            marks = [m.bounding_box() for m in view.locator(".rag-page-hl").all()]
            view.scroll_into_view_if_needed()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "page_view.png"), full_page=True)
        finally:
            browser.close()
    assert marks, "no highlight element on the cited page"
    baseline = img["y"] + img["height"] * (TOP_BASELINE + LEADING * line) / PAGE_HEIGHT
    line_height = img["height"] * LEADING / PAGE_HEIGHT
    for box in marks:  # each mark lies on the page picture, about one line high
        assert img["x"] - 1 <= box["x"] and box["x"] + box["width"] <= img["x"] + img["width"] + 1
        assert img["y"] - 1 <= box["y"] and box["y"] + box["height"] <= img["y"] + img["height"] + 1
        assert 0.3 * line_height < box["height"] < 1.3 * line_height
    # one of them covers the line with "$110 million"
    assert any(box["y"] - 2 <= baseline <= box["y"] + box["height"] + 0.6 * line_height for box in marks)
