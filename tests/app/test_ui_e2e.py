"""The web UI end to end: a real server on 127.0.0.1, the real embedder and model, a real browser.

Starts the Gradio app in a background thread over the session's `real_rag` (seeded from seeds/),
drives it with Playwright (Debian's /usr/bin/chromium; no browser download) and with gradio_client.
A Gradio page never reaches `networkidle` (it keeps a queue connection open): wait for elements.
"""
from __future__ import annotations

import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
QUESTION = "How much did Washington spend to establish the base in northern Niger?"
ANSWER_TIMEOUT_MS = 240_000

LIGHTHOUSE_MD = """# The Quenby lighthouse

The Zorblax lighthouse in Port Quenby was built in 1887 by the engineer Mara Velde.
It stands 43 metres tall and its lamp can be seen from 30 kilometres away.
"""

HOSTILE_HTML = """<!doctype html><html><head><title>Heliotrope</title>
<script>window.__pwned=1</script></head><body>
<h1>Project Heliotrope</h1>
<p>The code name of the Heliotrope project is Bluefin.</p>
<img src=x onerror="window.__pwned=1">
<p>Sample markup kept as text in the Heliotrope notes: &lt;script&gt;window.__pwned=1&lt;/script&gt;
and &lt;img src=x onerror="window.__pwned=1"&gt; are shown as text.</p>
</body></html>
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(real_rag):
    """The app over the real RAG, on a free local port; uploads made here are removed afterwards."""
    pytest.importorskip("gradio")
    from rag.app import ui

    before = {d.id for d in real_rag.documents()}
    demo = ui.build_app(real_rag)
    port = _free_port()
    ui.launch(demo, "127.0.0.1", port, block=False, quiet=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        yield url
    finally:
        demo.close()
        for doc in real_rag.documents():
            if doc.id not in before:
                real_rag.delete(doc.id)


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    page.locator("#rag-question textarea").wait_for(timeout=30_000)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


def ask(page, question: str) -> None:
    """Type a question, press Ask, wait until the final answer (cited or refused) is on the page."""
    answers_before = page.locator("#rag-chat .rag-answer, #rag-chat .rag-refusal, #rag-chat .rag-error").count()
    page.locator("#rag-question textarea").fill(question)
    page.locator("#rag-ask").click()
    page.wait_for_function(
        "n => document.querySelectorAll('#rag-chat .rag-answer, #rag-chat .rag-refusal, #rag-chat .rag-error').length > n",
        arg=answers_before, timeout=ANSWER_TIMEOUT_MS)


def last_bot_message(page):
    return page.locator('#rag-chat [data-testid="bot"]').last


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def upload(page, path: Path) -> str:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    open_tab(page, "Documents")
    page.locator("#rag-upload").wait_for(state="visible", timeout=30_000)
    # The tab's contents mount after the click; a file set on an input that is then re-rendered is
    # dropped by the browser (seen once in CI). Setting it again is what a person would do.
    for attempt in range(3):
        page.locator("#rag-upload input[type=file]").set_input_files(str(path))
        try:
            page.locator("#rag-upload").get_by_text(path.name).first.wait_for(timeout=20_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    page.locator("#rag-upload-btn").click()
    report = page.locator("#rag-upload-report .rag-report")
    report.wait_for(timeout=120_000)
    return report.inner_text()


def watch_streamed_text(page) -> None:
    """Record every text the chat shows while an answer streams (its `.rag-streaming` element), however
    briefly, into window.__streamed."""
    page.evaluate("""() => {
        window.__streamed = [];
        const chat = document.querySelector('#rag-chat');
        new MutationObserver(() => chat.querySelectorAll('.rag-streaming').forEach(
            e => window.__streamed.push(e.innerText))).observe(chat, {subtree: true, childList: true, characterData: true});
    }""")


def _plain(text: str) -> str:
    """Text without citation markers, the cursor or spacing: the streamed draft and the final rendering
    (markers as links) compare on this."""
    return re.sub(r"\s+|\[\d+\]|\u258d", "", text)


def test_ask_streams_answer_with_highlighted_citation(page):
    watch_streamed_text(page)
    ask(page, QUESTION)
    answer = last_bot_message(page).inner_text()
    assert "110 million" in answer, answer
    # only checked sentences stream: everything shown on the way is the start of the final answer
    final = _plain(page.locator("#rag-chat .rag-answer").last.inner_text())
    streamed = [_plain(t) for t in page.evaluate("window.__streamed")]
    assert all(final.startswith(t) for t in streamed), (streamed, final)
    link = page.locator('#rag-chat a.rag-cite-link[href^="#cite-"]').first
    target = link.get_attribute("href")
    cite = page.locator(f"#rag-citations {target}")
    assert cite.count() == 1
    assert "000_a5055be445bd665f.txt" in cite.inner_text()
    marks = page.locator("#rag-citations mark.rag-hl").all_inner_texts()
    assert any("110 million" in m for m in marks), marks
    link.click()  # the marker jumps to its passage
    page.wait_for_function("h => location.hash === h", arg=target, timeout=5_000)
    open_tab(page, "Settings")
    timings = page.locator("#rag-timings").inner_text()
    assert "retrieve" in timings and "total" in timings
    open_tab(page, "Ask")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-answer.png"), full_page=True)
    # a follow-up is rewritten into a standalone question with the conversation, and shown
    follow_up = "And what was it built for?"
    ask(page, follow_up)
    rewritten = page.locator("#rag-rewritten").inner_text()
    assert rewritten.startswith("Follow-up rewritten as") and follow_up not in rewritten, rewritten
    assert "Searched for" in last_bot_message(page).inner_text()
    assert page.errors == []


def test_upload_markdown_then_ask_about_it(page, tmp_path):
    doc = tmp_path / "quenby-lighthouse.md"
    doc.write_text(LIGHTHOUSE_MD, encoding="utf-8")
    report = upload(page, doc)
    assert "indexed as quenby-lighthouse.md" in report, report
    assert "quenby-lighthouse.md" in page.locator("#rag-docs").inner_text()
    open_tab(page, "Ask")
    ask(page, "Who built the Zorblax lighthouse in Port Quenby?")
    answer = last_bot_message(page).inner_text()
    assert "Mara Velde" in answer, answer
    cites = page.locator("#rag-citations").inner_text()
    assert "quenby-lighthouse.md" in cites and "Mara Velde" in cites
    # off-topic: refused (before the model is even asked), shown as a refusal with its reason
    ask(page, "Who won the 2018 World Cup?")
    refusal = page.locator("#rag-chat .rag-refusal").last.inner_text()
    assert "Not in the documents." in refusal and "Why:" in refusal
    # and the document can be deleted again from the list
    open_tab(page, "Documents")
    page.locator("#rag-doc-pick input").click()
    page.get_by_role("option", name=re.compile("quenby-lighthouse\\.md")).click()
    page.locator("#rag-delete").click()
    page.locator("#rag-delete-report").get_by_text("Deleted quenby-lighthouse.md").wait_for(timeout=30_000)
    assert "quenby-lighthouse.md" not in page.locator("#rag-docs").inner_text()


def test_upload_of_other_types_is_refused_with_a_message(page, tmp_path):
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ not a document")
    open_tab(page, "Documents")
    page.locator("#rag-upload input[type=file]").set_input_files(str(exe))
    page.get_by_text("Invalid file type").first.wait_for(timeout=10_000)
    assert "tool.exe" not in page.locator("#rag-docs").inner_text()


def test_an_out_of_corpus_question_shows_nothing_but_the_refusal(page):
    """The article does not give Niger's population: the model's draft from memory never reaches the page."""
    watch_streamed_text(page)
    ask(page, "What is the population of Niger?")
    assert page.locator("#rag-chat .rag-refusal").count() >= 1
    assert "Not in the documents." in last_bot_message(page).inner_text()
    assert [t for t in page.evaluate("window.__streamed") if _plain(t)] == []


def test_hostile_html_upload_runs_nothing(page, tmp_path):
    doc = tmp_path / "heliotrope.html"
    doc.write_text(HOSTILE_HTML, encoding="utf-8")
    ARTIFACTS.mkdir(exist_ok=True)
    report = upload(page, doc)
    assert "indexed as heliotrope.html" in report, report
    open_tab(page, "Ask")
    ask(page, "What is the code name of the Heliotrope project?")
    # The passage holds the markup as TEXT: shown escaped (cited, or among the closest passages).
    shown = page.locator("#rag-citations").text_content()
    assert "heliotrope.html" in shown
    assert '<img src=x onerror="window.__pwned=1">' in shown and "<script>window.__pwned=1</script>" in shown
    # A question carrying markup is shown as text too.
    ask(page, '<img src=y onerror="window.__pwned=2"> What is the code name of the Heliotrope project?')
    assert '<img src=y onerror="window.__pwned=2">' in page.locator('#rag-chat [data-testid="user"]').last.inner_text()
    time.sleep(0.5)
    page.screenshot(path=str(ARTIFACTS / "ui-hostile.png"), full_page=True)
    assert page.evaluate("window.__pwned") is None
    assert page.locator('img[src="x"], img[src="y"]').count() == 0
    assert page.errors == []


def test_gradio_client_gets_structured_answer(server):
    from gradio_client import Client

    data = Client(server, verbose=False).predict(QUESTION, 3, api_name="/ask")
    assert data["abstained"] is False and "110 million" in data["answer"], data
    assert data["citations"] and any("110 million" in c["text"] for c in data["citations"])
    c = data["citations"][0]
    assert set(c) >= {"n", "text", "source", "page", "start", "end", "score"}
    assert set(data["timings"]) >= {"retrieve", "total"}


def test_concurrent_questions_are_queued_not_crashed(server):
    from gradio_client import Client

    questions = [
        "How many American soldiers are in Niger?",
        "Who is Niger's prime minister?",
        "Which newspaper first reported the withdrawal?",
        "When did the State Department declare the takeover a coup?",
        "How many instructors did Russia send to Niger?",
        "What was the base in northern Niger built for?",
        "Which two countries was the U.S. worried Niamey was getting closer to?",
        "What happened to Niger's president in late July?",
    ]

    def one(q: str) -> dict:
        return Client(server, verbose=False).predict(q, 2, api_name="/ask")

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(questions)) as pool:
        results = list(pool.map(one, questions))
    elapsed = time.perf_counter() - start
    assert len(results) == 8
    for q, r in zip(questions, results):
        assert isinstance(r, dict) and r["answer"], (q, r)
        assert r["abstained"] or r["citations"], (q, r)
    assert sum(not r["abstained"] for r in results) >= 4, results
    print(f"8 concurrent questions answered in {elapsed:.1f} s")
