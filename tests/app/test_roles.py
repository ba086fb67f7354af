"""Roles: the global actions (switching the model everyone uses, creating and deleting shared
collections) are for `admin_users` only, in the library (rag/collections.py), the web UI (controls
disabled with the reason, and the handlers check again) and the API (403). With fakes."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from rag.app.api import build_api
from rag.app.api_auth import ApiAuth
from rag.collections import DEFAULT, SHARED_MARK, Collections
from rag.errors import InputError, NotAllowed
from rag.testing import FakeEmbedder, FakeLLM
from tests.conftest import SEED_ARTICLE

OTHER_MODEL = "smollm2-135m"


@pytest.fixture
def collections(settings):
    c = Collections(settings.with_(admin_users="root"), embedder=FakeEmbedder(), llm=FakeLLM())
    c.open(DEFAULT).add([SEED_ARTICLE])
    return c


def test_only_admins_switch_the_model(collections):
    model = collections.settings.model
    with pytest.raises(NotAllowed, match=r"only an admin may switch the model.*admin_users.*'bob' is not one"):
        collections.use_model(OTHER_MODEL, "bob")
    assert collections.settings.model == model
    collections.use_model(OTHER_MODEL, "root")
    assert collections.settings.model == OTHER_MODEL and collections.open(DEFAULT).settings.model == OTHER_MODEL
    collections.use_model(model)  # no login: the one user is the admin
    assert collections.settings.model == model


def test_only_admins_create_and_delete_shared_collections(collections, settings):
    with pytest.raises(NotAllowed, match="only an admin may create a shared collection"):
        collections.create_shared("team", "bob")
    assert "team" not in collections.names("bob")
    collections.create_shared("team", "root")
    assert collections.names("bob") == [DEFAULT, "team", "private-bob"]  # every user sees it
    assert collections.can_write("team", "root") and not collections.can_write("team", "bob")
    reopened = Collections(settings.with_(admin_users="root"), embedder=FakeEmbedder(), llm=FakeLLM())
    assert "team" in reopened.names("alice")  # still shared after a restart (its mark on disk)
    with pytest.raises(InputError, match="exists already"):
        collections.create_shared("team", "root")
    with pytest.raises(NotAllowed, match="only an admin may delete a shared collection"):
        collections.remove("team", "bob")
    collections.remove("team", "root")
    assert "team" not in collections.names("bob") and not (settings.collections_dir / "team").exists()


@pytest.mark.parametrize("name, error", [
    (DEFAULT, "default cannot be deleted"), ("private-bob", "no shared collection 'private-bob'"),
    ("../index", "bad collection name"), ("nope", "no shared collection 'nope'")])
def test_what_an_admin_cannot_delete(collections, name, error):
    collections.open("private-bob", "bob")
    with pytest.raises(InputError, match=error):
        collections.remove(name, "root")
    assert collections.exists(DEFAULT) and collections.exists("private-bob")


@pytest.mark.parametrize("name", ["private-root", "../x", "a/b", "x" * 65, ".hidden"])
def test_an_admin_cannot_create_a_private_or_bad_name(collections, name, settings):
    with pytest.raises(InputError):
        collections.create_shared(name, "root")
    assert not any((settings.collections_dir / n / SHARED_MARK).exists() for n in ("private-root", "x"))


# --------------------------------------------------------------------------- the web UI

gr = pytest.importorskip("gradio")


@pytest.fixture
def handlers(collections):
    from rag.app import ui

    demo = ui.build_app(collections)
    return {f.fn.__name__: f.fn for f in demo.fns.values()}


def test_the_ui_disables_global_controls_for_others_with_the_reason(handlers):
    model, status, name_box, create, remove = handlers["on_roles"](gr.Request(username="bob"))
    assert [u["interactive"] for u in (model, name_box, create, remove)] == [False] * 4
    assert "Only an admin (setting admin_users)" in status
    model, status, *rest = handlers["on_roles"](gr.Request(username="root"))
    assert model["interactive"] and all(u["interactive"] for u in rest) and "Only an admin" not in status


def test_the_ui_handlers_check_the_role_themselves(handlers, collections):
    """A client can send any event, disabled control or not."""
    bob, root = gr.Request(username="bob"), gr.Request(username="root")
    model = collections.settings.model
    assert "only an admin may switch the model" in handlers["on_model"](OTHER_MODEL, bob)
    assert collections.settings.model == model
    assert "Model switched to" in handlers["on_model"](OTHER_MODEL, root)
    assert collections.settings.model == OTHER_MODEL

    report, *_ = handlers["on_create_collection"]("team", bob)
    assert "only an admin may create a shared collection" in report and "team" not in collections.names("bob")
    report, box, picker, *_ = handlers["on_create_collection"]("team", root)
    assert "Created the shared collection team" in report and picker["value"] == "team"
    assert "team" in collections.names("bob")
    report, *_ = handlers["on_remove_collection"]("team", bob)
    assert "only an admin may delete a shared collection" in report and "team" in collections.names("bob")
    report, picker, *_ = handlers["on_remove_collection"]("team", root)
    assert "Deleted the shared collection team" in report and "team" not in collections.names("bob")


# --------------------------------------------------------------------------- the API

def test_the_api_takes_global_actions_from_admins_only(collections):
    client = TestClient(build_api(collections, ApiAuth.of("root=k-root,bob=k-bob", None)))
    root, bob = {"Authorization": "Bearer k-root"}, {"Authorization": "Bearer k-bob"}
    model = collections.settings.model

    for r in (client.put("/v1/model", json={"model": OTHER_MODEL}, headers=bob),
              client.post("/v1/collections", json={"name": "team"}, headers=bob)):
        assert r.status_code == 403 and r.json()["error"]["code"] == "permission_denied", r.text
        assert "only an admin may" in r.json()["error"]["message"]
    assert client.put("/v1/model", json={"model": OTHER_MODEL}).status_code == 401
    assert collections.settings.model == model and "team" not in collections.names("bob")

    assert client.put("/v1/model", json={"model": OTHER_MODEL}, headers=root).json()["model"] == OTHER_MODEL
    assert collections.settings.model == OTHER_MODEL
    r = client.put("/v1/model", json={"model": "no-such-model"}, headers=root)
    assert r.status_code == 400 and "is not known" in r.json()["error"]["message"]
    r = client.post("/v1/collections", json={"name": "team"}, headers=root)
    assert r.status_code == 201 and r.json()["id"] == "team"
    assert "team" in [m["id"] for m in client.get("/v1/models", headers=bob).json()["data"]]
    r = client.post("/v1/collections", json={"name": "../etc"}, headers=root)
    assert r.status_code == 400 and "bad collection name" in r.json()["error"]["message"]

    assert client.delete("/v1/collections/team", headers=bob).status_code == 403
    assert client.delete("/v1/collections/team", headers=root).json()["deleted"] is True
    assert "team" not in [m["id"] for m in client.get("/v1/models", headers=bob).json()["data"]]
