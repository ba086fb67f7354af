"""The web UI's handlers over collections, with fakes, as two logged-in users (a real `gr.Request` with
a username, as Gradio builds it for each call): alice's private upload is never visible to bob, through
any list, "Search in" choice, answer, delete or the /ask API, even when bob sends alice's collection
name or document id. Also: the handlers really are given the request by Gradio (over HTTP)."""
from __future__ import annotations

import pytest

from rag.collections import DEFAULT, Collections
from rag.testing import FakeEmbedder, FakeLLM
from tests.conftest import SEED_ARTICLE
from tests.app.test_ui import copy_sentence

gr = pytest.importorskip("gradio")

FACT = "The Zorblax vault code of Quenby harbour is 4417."
QUESTION = "What is the Zorblax vault code of Quenby harbour?"


@pytest.fixture
def app(settings):
    from rag.app import ui

    collections = Collections(settings.with_(admin_users="root"), embedder=FakeEmbedder(),
                              llm=FakeLLM([copy_sentence("vault code")] * 50))
    collections.open(DEFAULT).add([SEED_ARTICLE])
    demo = ui.build_app(collections)
    handlers = {}
    for f in demo.fns.values():
        handlers.setdefault(f.fn.__name__, f.fn)
    return collections, demo, handlers


def as_user(name: str | None):
    return gr.Request(username=name)


def choices(update) -> list:
    return [c[1] if isinstance(c, (list, tuple)) else c for c in update["choices"]]


def refresh(handlers, user, chosen=None):
    picker, rows, pick, count, search_in = handlers["on_refresh"](chosen, [], as_user(user))
    return picker, rows, pick, count, search_in


def ask(handlers, user, chosen, question=QUESTION, documents=None) -> str:
    outputs = list(handlers["on_ask"](question, None, 3, documents, chosen, as_user(user)))
    messages = outputs[-1][0]
    return messages[-1]["content"]


def upload(handlers, user, chosen, path):
    report, _, picker, rows, pick, count, search_in = handlers["on_upload"](
        [str(path)], chosen, [], as_user(user), lambda *a, **k: None)
    return report, picker, rows


def test_handlers_take_the_user_from_the_request(app):
    _, _, handlers = app
    from gradio.utils import get_type_hints

    for name in ("on_ask", "on_upload", "on_delete", "on_refresh", "ask_endpoint"):
        assert get_type_hints(handlers[name])["request"] is gr.Request, name
    # no request: fail closed (an error, logged on the server), never served as "no login"
    with pytest.raises(gr.Error, match="Something went wrong"):
        handlers["ask_endpoint"](QUESTION, 3, None, None, None)
    assert "4417" not in ask_no_request(handlers)


def ask_no_request(handlers) -> str:
    outputs = list(handlers["on_ask"](QUESTION, None, 3, None, "private-alice", None))
    return outputs[-1][0][-1]["content"]


def test_alice_private_upload_is_invisible_to_bob(app, tmp_path):
    collections, _, handlers = app
    doc = tmp_path / "vault.md"
    doc.write_text(FACT, encoding="utf-8")

    picker, rows, _, count, _ = refresh(handlers, "alice")
    assert choices(picker) == [DEFAULT, "private-alice"] and picker["value"] == DEFAULT
    assert "read-only for you" in count and len(rows) == 1
    # uploading while on the shared default (read-only for her) lands in her private collection
    report, picker, rows = upload(handlers, "alice", DEFAULT, doc)
    assert "indexed as vault.md" in report and "went to your own collection private-alice" in report
    assert picker["value"] == "private-alice" and [r[0] for r in rows] == ["vault.md"]
    alice_doc = rows[0][3]
    assert [d.id for d in collections.open(DEFAULT).documents()] != [alice_doc]  # not in the shared one
    assert "4417" in ask(handlers, "alice", "private-alice")
    assert handlers["ask_endpoint"](QUESTION, 3, None, "private-alice", as_user("alice"))["answer"].count("4417") == 1

    # bob: no list, choice, answer or delete reaches it, whatever names he sends
    for chosen in (None, DEFAULT, "private-bob", "private-alice"):
        picker, rows, pick, count, search_in = refresh(handlers, "bob", chosen)
        assert choices(picker) == [DEFAULT, "private-bob"]
        assert picker["value"] != "private-alice"
        assert alice_doc not in {r[3] for r in rows} | set(choices(pick)) | set(choices(search_in))
        assert "vault" not in str(rows)
    for chosen in (None, DEFAULT, "private-bob"):
        assert "4417" not in ask(handlers, "bob", chosen)
    refused = ask(handlers, "bob", "private-alice")
    assert "no collection &#x27;private-alice&#x27;; yours: default, private-bob" in refused
    assert "4417" not in ask(handlers, "bob", None, documents=[alice_doc])
    assert "4417" not in ask(handlers, "bob", "private-bob", documents=["vault.md"])
    for kwargs in ({"collection": "private-alice"}, {"documents": [alice_doc]}, {"documents": ["*vault*"]}):
        with pytest.raises(gr.Error) as err:
            handlers["ask_endpoint"](QUESTION, 3, kwargs.get("documents"), kwargs.get("collection"), as_user("bob"))
        assert "4417" not in str(err.value)
    for chosen in ("private-alice", "private-bob", DEFAULT, None):
        message, *_ = handlers["on_delete"](alice_doc, chosen, [], as_user("bob"))
        assert "rag-error" in message, (chosen, message)
    # bob naming alice's collection as the upload target still lands in his own
    other = tmp_path / "bob.md"
    other.write_text("Bob keeps bees in the orchard.", encoding="utf-8")
    _, picker, rows = upload(handlers, "bob", "private-alice", other)
    assert picker["value"] == "private-bob" and [r[0] for r in rows] == ["bob.md"]
    assert [d.id for d in collections.open("private-alice", "alice").documents()] == [alice_doc]

    # alice herself may delete it; the shared collection stays read-only for her
    message, *_ = handlers["on_delete"](collections.open(DEFAULT).documents()[0].id, DEFAULT, [], as_user("alice"))
    assert "read-only for you" in message and len(collections.open(DEFAULT).documents()) == 1
    message, _, rows, *_ = handlers["on_delete"](alice_doc, "private-alice", [], as_user("alice"))
    assert "Deleted vault.md" in message and rows == []
    assert not (collections.directory("private-alice") / "uploads" / "vault.md").exists()


def test_an_admin_may_change_a_shared_collection(app, tmp_path):
    collections, _, handlers = app
    doc = tmp_path / "memo.md"
    doc.write_text("The staff canteen opens at 11:30.", encoding="utf-8")
    _, picker, rows = upload(handlers, "root", DEFAULT, doc)
    assert picker["value"] == DEFAULT and "memo.md" in {r[0] for r in rows}
    assert "memo.md" in {r[0] for r in refresh(handlers, "alice")[1]}  # shared: everyone reads it


def test_without_a_login_every_collection_is_there(app, tmp_path):
    collections, _, handlers = app
    collections.create("work")
    collections.create("private-alice")
    picker, *_ = refresh(handlers, None, "work")
    assert choices(picker) == [DEFAULT, "private-alice", "work"] and picker["value"] == "work"
    doc = tmp_path / "w.md"
    doc.write_text("The work plan is due in May.", encoding="utf-8")
    _, picker, rows = upload(handlers, None, "work", doc)
    assert picker["value"] == "work" and [r[0] for r in rows] == ["w.md"]


@pytest.mark.integration  # a real Gradio server on 127.0.0.1, with fakes
def test_two_logged_in_users_over_http(app, tmp_path):
    """The launched app with a login for two users: Gradio passes each call's user to the handlers."""
    gradio_client = pytest.importorskip("gradio_client")
    from rag.app import ui

    collections, demo, _ = app
    doc = tmp_path / "vault.md"
    doc.write_text(FACT, encoding="utf-8")
    collections.open("private-alice", "alice").add([doc])
    ui.launch(demo, "127.0.0.1", None, block=False, quiet=True, auth=ui.parse_auth("alice:pw-a,bob:pw-b"))
    try:
        alice = gradio_client.Client(demo.local_url, auth=("alice", "pw-a"), verbose=False)
        bob = gradio_client.Client(demo.local_url, auth=("bob", "pw-b"), verbose=False)
        got = alice.predict(QUESTION, 3, None, "private-alice", api_name="/ask")
        assert "4417" in got["answer"] and got["citations"][0]["source"].endswith("vault.md")
        assert "4417" not in bob.predict(QUESTION, 3, api_name="/ask")["answer"]
        with pytest.raises(Exception) as err:
            bob.predict(QUESTION, 3, None, "private-alice", api_name="/ask")
        assert "no collection 'private-alice'; yours: default, private-bob" in str(err.value)
    finally:
        demo.close()
