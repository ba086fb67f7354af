"""Collections with the real models behind a real launched Gradio server with a login for two users,
driven by gradio_client and by a browser logged in as each: alice's private fact is answered for alice
only, and only she sees her collection. One model load (the session's `real_rag`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from rag.collections import Collections

pytestmark = pytest.mark.integration

FACT = ("# Harbour notes\n\nThe Zorblax vault in Port Quenby is opened with the code 4417. "
        "The harbour master Ilse Marrow chose that code in 1999.\n")
QUESTION = "What is the code that opens the Zorblax vault in Port Quenby?"
USERS = {"alice": "pw-a", "bob": "pw-b", "root": "pw-r"}  # root: the admin
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server(real_rag, tmp_path_factory):
    """The app over collections whose `default` is the session's real RAG (MiniLM, the default GGUF
    model; its model is the only one loaded), with alice's note in her private collection."""
    pytest.importorskip("gradio")
    from rag.app import ui

    tmp = tmp_path_factory.mktemp("collections-e2e")
    collections = Collections(real_rag.settings.with_(collections_dir=tmp / "collections", admin_users="root"),
                              default=real_rag)
    note = tmp / "harbour-notes.md"
    note.write_text(FACT, encoding="utf-8")
    assert len(collections.open("private-alice", "alice").add([note]).added) == 1
    demo = ui.build_app(collections)
    ui.launch(demo, "127.0.0.1", None, block=False, quiet=True,
              auth=ui.parse_auth(",".join(f"{u}:{p}" for u, p in USERS.items())))
    try:
        yield collections, demo.local_url
    finally:
        demo.close()


def test_private_fact_answered_for_alice_only(server, real_rag):
    gradio_client = pytest.importorskip("gradio_client")
    collections, url = server
    alice = gradio_client.Client(url, auth=("alice", USERS["alice"]), verbose=False)
    bob = gradio_client.Client(url, auth=("bob", USERS["bob"]), verbose=False)
    got = alice.predict(QUESTION, 3, None, "private-alice", api_name="/ask")
    assert "4417" in got["answer"] and not got["abstained"], got["answer"]
    assert got["citations"] and got["citations"][0]["source"].endswith("harbour-notes.md")
    for collection in (None, "private-bob"):
        theirs = bob.predict(QUESTION, 3, None, collection, api_name="/ask")
        assert theirs["abstained"] and "4417" not in str(theirs), theirs
    with pytest.raises(Exception) as err:
        bob.predict(QUESTION, 3, None, "private-alice", api_name="/ask")
    assert "no collection 'private-alice'; yours: default, private-bob" in str(err.value)
    assert "4417" not in str(err.value)
    assert real_rag.llm is collections.open("private-alice", "alice").llm  # one model for all


@pytest.mark.browser  # Chromium through Playwright
def test_the_picker_shows_each_user_only_their_own(server):
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    _, url = server
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            for user, password in USERS.items():
                context = browser.new_context()
                page = context.new_page()
                page.goto(url)
                page.locator("input[type=text]").first.fill(user)
                page.locator("input[type=password]").fill(password)
                page.get_by_role("button", name="Login").click()
                page.locator("#rag-question textarea").wait_for(timeout=30_000)
                page.get_by_role("tab", name="Documents").click()
                page.locator("#rag-doc-count").get_by_text("document(s) in default").wait_for(timeout=30_000)
                page.locator("#rag-collection input").click()
                options = [o.split("\n")[-1] for o in page.get_by_role("option").all_inner_texts()]
                assert options == ["default", f"private-{user}"], (user, options)
                page.get_by_role("option", name=f"private-{user}").click()
                page.locator("#rag-doc-count").get_by_text(f"in private-{user}").wait_for(timeout=30_000)
                docs = page.locator("#rag-docs").inner_text()
                assert ("harbour-notes.md" in docs) == (user == "alice"), (user, docs)
                context.close()
        finally:
            browser.close()


def _logged_in(browser, url: str, user: str):
    page = browser.new_context().new_page()
    page.goto(url)
    page.locator("input[type=text]").first.fill(user)
    page.locator("input[type=password]").fill(USERS[user])
    page.get_by_role("button", name="Login").click()
    page.locator("#rag-question textarea").wait_for(timeout=30_000)
    return page


@pytest.mark.browser  # Chromium through Playwright
def test_only_the_admin_may_switch_the_model_or_make_a_shared_collection(server):
    """Two users in Chromium: bob sees the global controls disabled with the reason; root, the admin,
    creates a shared collection from the UI, bob then sees it, and root deletes it again."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    collections, url = server
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            bob = _logged_in(browser, url, "bob")
            bob.get_by_role("tab", name="Settings").click()
            bob.locator("#rag-admin-only").get_by_text("Only an admin (setting admin_users)").wait_for(timeout=30_000)
            assert bob.locator("#rag-model input").is_disabled()
            assert bob.locator("#rag-create-collection").is_disabled()
            assert bob.locator("#rag-remove-collection").is_disabled()

            root = _logged_in(browser, url, "root")
            root.get_by_role("tab", name="Settings").click()
            root.locator("#rag-model-status").get_by_text("Model in use").wait_for(timeout=30_000)
            assert root.locator("#rag-admin-only").count() == 0
            assert not root.locator("#rag-model input").is_disabled()
            root.locator("#rag-new-collection input, #rag-new-collection textarea").first.fill("team")
            root.locator("#rag-create-collection").click()
            root.locator("#rag-admin-report").get_by_text("Created the shared collection team").wait_for(timeout=30_000)
            assert "team" in collections.names("bob")

            bob.reload()
            bob.locator("#rag-question textarea").wait_for(timeout=30_000)
            bob.locator("#rag-collection input").click()
            options = [o.split("\n")[-1] for o in bob.get_by_role("option").all_inner_texts()]
            assert options == ["default", "team", "private-bob"], options

            root.locator("#rag-remove-collection").click()  # the picker shows team, just created
            root.locator("#rag-admin-report").get_by_text("Deleted the shared collection team").wait_for(timeout=30_000)
            assert "team" not in collections.names("bob")
        finally:
            browser.close()
