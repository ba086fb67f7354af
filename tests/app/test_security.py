"""What a hostile caller tries, with fakes, beyond what tests/app/test_api_collections.py (another user's
collection through /v1, missing or wrong keys on the chat routes), tests/app/test_ui_collections.py (through
the UI's handlers and Gradio's /ask over HTTP), tests/app/test_ui.py (upload names) and
tests/ingest/test_hostile_corpus.py (hostile files) hold: traversal in collection names on every face, a key
that is missing, wrong or malformed on every /v1 route (the admin ones too), and an admin route used
against a user's private collection. Bodies, limits and the generation queue: tests/app/test_request_limits.py."""
from __future__ import annotations

from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from rag.app.api import build_api
from rag.app.api_auth import ApiAuth
from rag.collections import DEFAULT, Collections
from rag.testing import FakeEmbedder, FakeLLM
from tests.conftest import SEED_ARTICLE

gr = pytest.importorskip("gradio")

KEYS = "root=k-root,alice=k-alice,bob=k-bob"
ROOT, ALICE, BOB = ({"Authorization": f"Bearer k-{u}"} for u in ("root", "alice", "bob"))
TRAVERSALS = ["../index", "..", "../../etc", "..%2F..%2Fetc", "/etc", "private-alice/../private-bob",
              "default/..", "a\\..\\b", ".hidden", "private-alice\x00", "~root", "x" * 300]
FACT = "The Zorblax vault code of Quenby harbour is 4417."


@pytest.fixture
def world(settings, tmp_path):
    collections = Collections(settings.with_(admin_users="root"), embedder=FakeEmbedder(), llm=FakeLLM())
    collections.open(DEFAULT).add([SEED_ARTICLE])
    doc = tmp_path / "vault.md"
    doc.write_text(FACT, encoding="utf-8")
    collections.open("private-alice", "alice").add([doc])
    client = TestClient(build_api(collections, ApiAuth.of(KEYS, None)))
    return collections, client, tmp_path


def tree(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_dir()}


def test_traversal_in_collection_names_through_the_api(world):
    collections, client, tmp_path = world
    before = tree(tmp_path)
    for name in TRAVERSALS:
        for headers in (ALICE, ROOT):
            r = client.post("/v1/chat/completions", headers=headers,
                            json={"model": name, "messages": [{"role": "user", "content": "What is the code?"}]})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", (name, r.text)
            assert "4417" not in r.text and len(r.json()["error"]["message"]) < 400
            r = client.post("/v1/collections", headers=ROOT, json={"name": name})
            assert r.status_code == 400 and "4417" not in r.text, (name, r.text)
        r = client.get(f"/v1/models/{quote(name, safe='')}", headers=BOB)
        assert r.status_code == 404 and "4417" not in r.text
        assert client.delete(f"/v1/collections/{quote(name, safe='')}", headers=ROOT).status_code in (400, 404)
    assert tree(tmp_path) == before  # nothing made anywhere
    assert collections.exists("private-alice") and collections.exists(DEFAULT)


def test_traversal_in_collection_names_through_the_ui_handlers(world):
    from rag.app import ui

    collections, _, tmp_path = world
    handlers = {f.fn.__name__: f.fn for f in ui.build_app(collections).fns.values()}
    upload = tmp_path / "up.md"
    upload.write_text("Quenby harbour has a ferry.", encoding="utf-8")
    before = tree(tmp_path)
    for name in TRAVERSALS:
        bob, root = gr.Request(username="bob"), gr.Request(username="root")
        with pytest.raises(gr.Error) as err:
            handlers["ask_endpoint"]("What is the code?", 3, None, name, bob)
        assert "4417" not in str(err.value)
        answer = list(handlers["on_ask"]("What is the code?", None, 3, None, name, bob))[-1][0][-1]["content"]
        assert "4417" not in answer and ("no collection" in answer or "bad collection name" in answer)
        picker, rows, *_ = handlers["on_refresh"](name, [], bob)
        assert picker["value"] == DEFAULT and all("vault" not in str(r) for r in rows)  # back to one of bob's
        report, _, picker, *_ = handlers["on_upload"]([str(upload)], name, [], bob, lambda *a, **k: None)
        assert picker["value"] == "private-bob"  # an upload bob may not make there goes to his own
        report, *_ = handlers["on_delete"]("0123456789abcdef", name, [], bob)
        assert "rag-error" in report
        report, *_ = handlers["on_create_collection"](name, root)
        assert "rag-error" in report
        report, *_ = handlers["on_remove_collection"](name, root)
        assert "rag-error" in report
    assert tree(tmp_path) - before <= {"collections/private-bob", "collections/private-bob/uploads",
                                      "collections/private-root"}
    assert [d.source.endswith("up.md") for d in collections.open("private-bob", "bob").documents()] == [True]


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Bearer k-nobody", "Basic k-root",
                                           "bearer k-root-and-more", "k-root", "Bearer k-root k-bob"])
def test_a_missing_wrong_or_malformed_key_is_401_on_every_route(world, authorization):
    _, client, _ = world
    headers = {} if authorization is None else {"Authorization": authorization}
    chat = {"model": "private-alice", "messages": [{"role": "user", "content": "What is the code?"}]}
    for r in (client.get("/v1/models", headers=headers), client.get("/v1/models/private-alice", headers=headers),
              client.post("/v1/chat/completions", headers=headers, json=chat),
              client.post("/v1/chat/completions", headers=headers, json={**chat, "stream": True}),
              client.put("/v1/model", headers=headers, json={"model": "smollm2-135m"}),
              client.post("/v1/collections", headers=headers, json={"name": "team"}),
              client.delete("/v1/collections/default", headers=headers)):
        assert r.status_code == 401, (r.request.method, r.request.url, r.text)
        assert r.json()["error"]["code"] == "invalid_api_key" and r.headers["WWW-Authenticate"] == "Bearer"
        assert "4417" not in r.text and "k-root" not in r.text


def test_admin_routes_never_reach_a_users_private_collection(world):
    collections, client, _ = world
    assert client.delete("/v1/collections/private-alice", headers=BOB).status_code == 403
    r = client.delete("/v1/collections/private-alice", headers=ROOT)  # an admin, but it is not shared
    assert r.status_code == 400 and "no shared collection 'private-alice'" in r.json()["error"]["message"]
    r = client.post("/v1/collections", headers=ROOT, json={"name": "private-alice"})
    assert r.status_code == 400
    assert collections.exists("private-alice")
    answer = client.post("/v1/chat/completions", headers=ALICE, json={
        "model": "private-alice", "messages": [{"role": "user", "content": "What is the Zorblax vault code?"}]})
    assert answer.status_code == 200
    assert "private-alice" not in [m["id"] for m in client.get("/v1/models", headers=ROOT).json()["data"]]
