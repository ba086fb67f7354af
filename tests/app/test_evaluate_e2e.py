"""The Evaluate tab end to end, with the real embedder and model in a real browser (Debian's Chromium):
mark a chat answer "right", upload a 10-item test set, run it (live progress), see the metrics and one
item's draft, filter the refused items, download the JSON report; then run the collection's own test set
(the marked answer) and compare the two runs. Saves docs/img/evaluate-tab.png for the README.

Seven questions of the test set plus one chat question and one own-set question reach the model (the
whole seed article stays in its cached prompt, so each costs little more than its own tokens); the three
off-topic items are refused by the retrieval gate before it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.test_ui_e2e import QUESTION, ask, open_tab
from tests.app.test_ui_e2e import browser, page, server  # noqa: F401 - the fixtures, over this module's own server

pytestmark = pytest.mark.integration

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "evaluate-tab.png"
RUN_TIMEOUT_MS = 900_000
ITEMS = [
    {"id": "washington", "question": QUESTION, "answers": ["$110 million", "110 million"]},
    {"id": "department", "question": "Which US government department confirmed the talks with Niger about a pullout?",
     "answers": ["State Department"]},
    {"id": "world-cup", "question": "Who won the 2018 World Cup?", "answers": []},
    {"id": "troops", "question": "How many American troops is the US talking to Niger about bringing home?",
     "answers": ["approximately 1,000", "1,000"]},
    {"id": "campbell", "question": "What is Kurt Campbell's job title?", "answers": ["Deputy Secretary of State"]},
    {"id": "outlet", "question": "Which news outlet did the American official speak to about the agreement?",
     "answers": ["The Hill"]},
    {"id": "network", "question": "Which TV network said the Defense Department would join the negotiations?",
     "answers": ["CNN"]},
    {"id": "prime-minister", "question": "Who is the prime minister of Niger?",
     "answers": ["Ali Lamine Zeine", "Lamine Zeine", "Zeine"]},
    {"id": "tungsten", "question": "What is the melting point of tungsten?", "answers": []},
    {"id": "sourdough", "question": "How long should sourdough bread rise before baking?", "answers": []},
]
OFF_TOPIC = ("world-cup", "tungsten", "sourdough")


def set_file(page, selector: str, path: Path) -> None:
    """Set a file on a gr.File (again if the tab re-rendered it meanwhile, as in test_ui_e2e.upload)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):
        page.locator(f"{selector} input[type=file]").set_input_files(str(path))
        try:
            page.locator(selector).get_by_text(path.name).first.wait_for(timeout=20_000)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise


def wait_finished(page, done: int, total: int) -> str:
    page.wait_for_function(
        "t => { const s = document.querySelector('#rag-eval-status'); return s && s.innerText.includes(t); }",
        arg=f"Finished: {done} / {total} items done", timeout=RUN_TIMEOUT_MS)
    return page.locator("#rag-eval-status").inner_text()


def test_evaluate_tab_runs_a_test_set_and_one_grown_from_the_chat(page, tmp_path):
    # the chat: an answer marked right joins the collection's own test set
    ask(page, QUESTION)
    page.locator("#rag-mark-right").click()
    saved = page.locator("#rag-feedback-saved")
    saved.wait_for(timeout=30_000)
    assert "gold answer" in saved.inner_text()

    testset = tmp_path / "small.jsonl"
    testset.write_text("".join(json.dumps(i) + "\n" for i in ITEMS), encoding="utf-8")
    open_tab(page, "Evaluate")
    page.locator("#rag-eval-upload").wait_for(state="visible", timeout=30_000)
    set_file(page, "#rag-eval-upload", testset)
    page.locator("#rag-eval-run").click()
    page.locator("#rag-eval-status").wait_for(timeout=60_000)  # live progress while it runs
    assert "items done" in page.locator("#rag-eval-status").inner_text()
    status = wait_finished(page, len(ITEMS), len(ITEMS))
    assert "kept" in status

    metrics = page.locator("#rag-eval-metrics").inner_text()
    assert "refusal_recall" in metrics and "contains" in metrics
    items = page.locator(".rag-eval-item")
    assert items.count() == len(ITEMS)
    for name in OFF_TOPIC:
        refused = page.locator(f'.rag-eval-item[data-id="{name}"]').inner_text()
        assert "refused (right)" in refused, refused
    answered = page.locator('.rag-eval-item[data-id="washington"]')
    answered.locator(".rag-eval-draft summary").click()
    draft = answered.locator(".rag-eval-draft pre").inner_text()
    assert "110 million" in draft, draft
    link = page.locator('#rag-eval-downloads a[download="report.json"]')
    with page.expect_download(timeout=30_000) as download:
        link.click()
    report = json.loads(Path(download.value.path()).read_text(encoding="utf-8"))
    assert report["metrics"]["n_items"] == len(ITEMS) and len(report["items"]) == len(ITEMS)
    assert {i["id"] for i in report["items"]} == {i["id"] for i in ITEMS}
    n_refused = sum(i["abstained"] for i in report["items"])
    assert n_refused >= len(OFF_TOPIC)

    page.locator("#rag-eval-filter").get_by_text("refused", exact=True).click()
    page.wait_for_function(f"() => document.querySelectorAll('.rag-eval-item').length === {n_refused}", timeout=30_000)
    page.locator("#rag-eval-filter").get_by_text("all", exact=True).click()
    page.wait_for_function(f"() => document.querySelectorAll('.rag-eval-item').length === {len(ITEMS)}",
                           timeout=30_000)

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.locator("#rag-eval-metrics").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # the collection's own test set: the answer marked right in the chat, scored right by a later run
    page.locator("#rag-eval-source").get_by_text("own test set").click()
    page.locator("#rag-eval-run").click()
    status = wait_finished(page, 1, 1)
    assert "right 1" in status, status
    page.get_by_text("Compare with an earlier run").click()
    page.locator("#rag-eval-compare").click()
    compared = page.locator("#rag-eval-compare-text")
    compared.wait_for(timeout=30_000)
    text = compared.inner_text()
    assert "refusal_recall" in text and "items in both: 0" in text, text
    assert page.errors == []
