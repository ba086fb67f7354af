"""The HTTP API (rag/app/api.py) over real `Collections` (rag/collections.py), as `rag serve` wires them, with
two users: privacy proved through HTTP, with fakes. tests/app/test_api_collections_integration.py runs the
real model behind a real server."""
from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from rag.app.api import build_api
from rag.app.api_auth import ApiAuth
from rag.collections import Collections
from rag.errors import ConfigError
from rag.testing import FakeEmbedder, FakeLLM

FACT = "The Zorblax vault code of Quenby harbour is 4417."
QUESTION = "What is the Zorblax vault code of Quenby harbour?"
CLAIM = "The Zorblax vault code of Quenby harbour is 4417 [1]."
ALICE, BOB = {"Authorization": "Bearer k1"}, {"Authorization": "Bearer k2"}


def reply(prompt: str) -> str:
    """Always claims the fact: if bob's prompt lacked it, only the support check can refuse it."""
    return CLAIM


@pytest.fixture
def world(settings, tmp_path):
    """Collections as `rag serve` builds them (shared: default, team), alice's private fact ingested
    the way the UI uploads it, and the API with RAG_API_KEY=alice=k1,bob=k2."""
    llm = FakeLLM([reply])
    collections = Collections(settings.with_(shared_collections="default,team"), embedder=FakeEmbedder(), llm=llm)
    collections.create("team").add([_write(tmp_path / "team.md", "The team meets on Tuesdays in room 12.")])
    secret = _write(tmp_path / "alice" / "vault.md", FACT)
    collections.create("private-alice", "alice").add([secret])
    client = TestClient(build_api(collections, ApiAuth.of("alice=k1,bob=k2", None)))
    return client, collections, llm, secret


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def ask(client, model, headers, stream=False):
    return client.post("/v1/chat/completions", headers=headers, json={
        "model": model, "stream": stream, "messages": [{"role": "user", "content": QUESTION}]})


def models(client, headers):
    r = client.get("/v1/models", headers=headers)
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["data"]]


def test_each_user_lists_the_shared_collections_and_only_their_own_private_one(world):
    client = world[0]
    assert models(client, ALICE) == ["default", "team", "private-alice"]
    assert models(client, BOB) == ["default", "team", "private-bob"]


def test_no_key_or_a_wrong_key_is_401_everywhere(world):
    client = world[0]
    for headers in ({}, {"Authorization": "Bearer k3"}):
        assert client.get("/v1/models", headers=headers).status_code == 401
        assert client.get("/v1/models/private-alice", headers=headers).status_code == 401
        r = ask(client, "private-alice", headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert "4417" not in r.text


def test_alice_is_answered_from_her_private_collection(world):
    client, _, _, secret = world
    r = ask(client, "private-alice", ALICE)
    data = r.json()
    assert r.status_code == 200 and data["abstained"] is False, data
    assert "4417" in data["choices"][0]["message"]["content"]
    assert [c["source"] for c in data["citations"]] == [str(secret.resolve())]


def test_bob_gets_the_same_404_for_alices_collection_as_for_an_unknown_one(world):
    client = world[0]
    for path in ("/v1/models/private-alice", "/v1/models/private-nobody"):
        assert client.get(path, headers=BOB).status_code == 404
    hidden, unknown = ask(client, "private-alice", BOB), ask(client, "private-nobody", BOB)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"] == "no collection 'private-alice'; yours: default, team, private-bob"
    # the same body but for the name bob typed: nothing says that private-alice exists
    assert hidden.json() == {"error": {**unknown.json()["error"],
                                       "message": unknown.json()["error"]["message"].replace("private-nobody",
                                                                                             "private-alice")}}
    assert client.get("/v1/models/private-alice", headers=BOB).json()["error"] == {
        **hidden.json()["error"]}


@pytest.mark.parametrize("stream", [False, True])
def test_bobs_answers_never_see_or_cite_alices_document(world, stream):
    client, _, llm, secret = world
    for model in ("default", "team", "private-bob"):
        before = len(llm.prompts)
        r = ask(client, model, BOB, stream=stream)
        assert r.status_code == 200, r.text
        assert str(secret.resolve()) not in r.text and "vault.md" not in r.text
        # the model was never shown alice's text for bob (a refusal may skip the model entirely)
        assert all("4417" not in p for p in llm.prompts[before:])
        if not stream:
            data = r.json()
            assert data["abstained"] is True and data["citations"] == [], data
            assert data["choices"][0]["message"]["content"] == "Not in the documents."
        else:
            assert '"abstained": true' in r.text and r.text.rstrip().endswith("data: [DONE]")


def test_a_key_of_no_user_beside_user_keys_is_refused_at_start():
    """RAG_API_KEY=alice=k1,k0: the plain key k0 would be no user at all, and Collections shows a caller of
    no user every collection, alice's private one too; so `rag serve` refuses such keys at start."""
    with pytest.raises(ConfigError, match=r"^RAG_API_KEY: item 2 of 2 has no user while others do") as err:
        ApiAuth.of("alice=k1,k0", None)
    assert "k0" not in str(err.value)  # keys are never echoed


def test_a_key_of_no_user_beside_ui_logins_is_refused_at_start():
    """RAG_AUTH has users, RAG_API_KEY=k0 has none: k0 would see every user's private collection."""
    with pytest.raises(ConfigError, match=r"^RAG_API_KEY has a key without a user while RAG_AUTH has logins") as err:
        ApiAuth.of("k0", [("alice", "pw1"), ("bob", "pw2")])
    assert "k0" not in str(err.value) and "pw1" not in str(err.value)
    assert ApiAuth.of("k0", None).user("Bearer k0") is None  # no logins: one user's machine, one key is fine
