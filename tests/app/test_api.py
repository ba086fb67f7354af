"""The OpenAI-compatible HTTP API (rag/app/api.py) with fakes, through starlette's TestClient:
response shapes, SSE framing, history, errors, auth. tests/app/test_api_integration.py runs the real thing."""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from rag.app import api, server
from rag.app.api import SingleCollection, build_api
from rag.app.api_auth import ApiAuth, Unauthorized, check_bind, parse_api_keys
from rag.config import Settings
from rag.errors import ConfigError, InputError, ModelError
from rag.testing import FakeLLM
from tests.conftest import SEED_ARTICLE
from tests.loopback import served as serving

QUESTION = "How much did Washington spend to establish the base in northern Niger?"
ANSWER = "Washington spent about $110 million to establish the base in northern Niger [1]."


@pytest.fixture
def seeded(make_rag):
    def make(*replies, **changes):
        rag = make_rag(*replies, **changes)
        rag.add([SEED_ARTICLE])
        return rag
    return make


def ask(client: TestClient, *messages: tuple[str, str], model: str = "default", headers=None, **extra):
    body = {"model": model, "messages": [{"role": r, "content": c} for r, c in messages], **extra}
    return client.post("/v1/chat/completions", json=body, headers=headers or {})


def sse_events(text: str) -> list[str]:
    """The data of each SSE event; every event must be one `data: ` line followed by a blank line."""
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events), events
    return [e[len("data: "):] for e in events]


def test_completion_carries_the_answer_its_sources_and_the_extra_fields(seeded):
    client = TestClient(build_api(SingleCollection(seeded(ANSWER))))
    r = ask(client, ("user", QUESTION))
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion" and data["model"] == "default" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["message"]["role"] == "assistant"
    content = choice["message"]["content"]
    answer, sources = content.split("\n\nSources:\n")
    assert answer == ANSWER
    assert sources.startswith('[1] 000_a5055be445bd665f.txt: "') and sources.endswith('"')
    assert "Washington spent $110 million to establish a base in northern Niger" in sources
    assert data["abstained"] is False and data["question"] == QUESTION
    [cite] = data["citations"]
    assert set(cite) == {"n", "source", "page", "start", "end", "text", "score", "ocr", "location", "check"}
    assert cite["check"] == {"supported": True, "claim": None}  # a fake model has no claim judge
    assert cite["n"] == 1 and cite["source"] == str(SEED_ARTICLE.resolve()) and "$110 million" in cite["text"]
    assert SEED_ARTICLE.read_text(encoding="utf-8")[cite["start"]:cite["end"]] == cite["text"]


def test_stream_is_openai_sse_with_the_extras_on_the_last_chunk(seeded):
    client = TestClient(build_api(SingleCollection(seeded(ANSWER))))
    r = ask(client, ("user", QUESTION), stream=True)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(chunks) == 3  # role, the one checked sentence, the sources: nothing unchecked in between
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * (len(chunks) - 1) + ["stop"]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content.startswith(ANSWER + "\n\nSources:\n[1] 000_a5055be445bd665f.txt: ")
    assert "citations" not in chunks[0] and "citations" not in chunks[-2]
    last = chunks[-1]
    assert last["abstained"] is False and last["answer"] == ANSWER and last["question"] == QUESTION
    assert [c["n"] for c in last["citations"]] == [1] and "$110 million" in last["citations"][0]["text"]
    # the same answer as without streaming
    assert content == ask(client, ("user", QUESTION)).json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_refusal_is_an_ordinary_reply_without_sources(seeded, stream):
    client = TestClient(build_api(SingleCollection(seeded("Not in the documents."))))
    r = ask(client, ("user", "What is the capital of Australia?"), stream=stream)
    assert r.status_code == 200
    if stream:
        chunks = [json.loads(e) for e in sse_events(r.text)[:-1]]
        content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        data = chunks[-1]
    else:
        data = r.json()
        content = data["choices"][0]["message"]["content"]
    assert content == "Not in the documents."
    assert data["abstained"] is True and data["citations"] == []


def test_a_draft_the_check_refuses_is_never_streamed(seeded):
    client = TestClient(build_api(SingleCollection(seeded("The capital of Australia is Canberra, founded in 1913."))))
    r = ask(client, ("user", "What is the capital of Australia?"), stream=True)
    chunks = [json.loads(e) for e in sse_events(r.text)[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert content == "Not in the documents." and "Canberra" not in r.text
    assert chunks[-1]["abstained"] is True and chunks[-1]["answer"] == "Not in the documents."
    assert "supported" in chunks[-1]["refusal_reason"]
    non_stream = ask(client, ("user", "What is the capital of Australia?")).json()
    assert non_stream["choices"][0]["message"]["content"] == "Not in the documents."


def test_earlier_turns_are_the_history_of_the_follow_up(seeded):
    rewrite = "How much did the U.S. spend to establish the base in northern Niger?"
    rag = seeded(rewrite, ANSWER)
    client = TestClient(build_api(SingleCollection(rag)))
    r = ask(client, ("system", "You are helpful."), ("user", "Where was the drone base?"),
            ("assistant", 'In northern Niger [1].\n\nSources:\n[1] a.txt: "SECRET-QUOTE"'),
            ("user", "How much did it cost?"))
    assert r.status_code == 200
    condense_prompt = rag.llm.prompts[0]
    assert "User: Where was the drone base?" in condense_prompt
    assert "Assistant: In northern Niger" in condense_prompt and "SECRET-QUOTE" not in condense_prompt
    assert "You are helpful" not in condense_prompt and "How much did it cost?" in condense_prompt
    assert r.json()["question"] == rewrite and "How much did the U.S. spend" in rag.llm.prompts[1]


def test_conversation_picks_the_last_user_message_and_pairs_the_turns():
    msgs = [api.Message(role=r, content=c) for r, c in
            [("user", "a?"), ("user", "b?"), ("assistant", "B."), ("user", "c?"), ("assistant", "stray")]]
    question, history = api.conversation(msgs)
    assert question == "c?"
    assert [(t.question, t.answer) for t in history] == [("a?", ""), ("b?", "B.")]
    parts = api.Message(role="user", content=[{"type": "text", "text": "part one"}, {"type": "text", "text": "two"}])
    assert api.conversation([parts])[0] == "part one\ntwo"


@pytest.mark.parametrize(("body", "expected"), [
    ("not json at all", "not valid JSON"),
    ('["a list"]', "must be a JSON object"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "model: Field required"),
    ('{"model": "default"}', "messages: Field required"),
    ('{"model": "default", "messages": []}', "messages: must hold at least one message"),
    ('{"model": "default", "messages": "hi"}', "messages: Input should be a valid list"),
    ('{"model": 7, "messages": [{"role": "user", "content": "hi"}]}', "model: Input should be a valid string"),
    ('{"model": "default", "messages": [{"role": "robot", "content": "hi"}]}', "messages.0.role: Input should be"),
    ('{"model": "default", "messages": [{"role": "user", "content": 5}]}', "messages.0.content"),
    ('{"model": "default", "messages": [{"role": "assistant", "content": "hi"}]}', "no message has the role 'user'"),
    ('{"model": "default", "messages": [{"role": "user", "content": "   "}]}', "the question is empty"),
    ('{"model": "default", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}',
     "only text parts are supported, not 'image_url'"),
    ('{"model": "default", "stream": true, "messages": [{"role": "user", "content": ""}]}', "the question is empty"),
])
def test_bad_bodies_are_400_in_openai_error_shape(make_rag, body, expected):
    client = TestClient(build_api(SingleCollection(make_rag())))
    r = client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert expected in error["message"] and error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "code"} and "Traceback" not in r.text and "\n" not in error["message"]


def test_too_long_question_and_body_and_a_missing_content_type(make_rag):
    rag = make_rag(max_question_chars=50)
    client = TestClient(build_api(SingleCollection(rag)))
    r = ask(client, ("user", "x" * 51))
    assert r.status_code == 400 and r.json()["error"]["message"] == (
        "the question is 51 characters; the limit is 50 (RAG_MAX_QUESTION_CHARS)")
    r = ask(client, ("user", "x" * 51), ("assistant", "A."), ("user", "short?"))  # history too
    assert r.status_code == 400 and r.json()["error"]["message"] == (
        "question 1 of the history is 51 characters; the limit is 50 (RAG_MAX_QUESTION_CHARS)")
    assert rag.llm.prompts == []  # refused before the model was asked anything
    r = client.post("/v1/chat/completions", content=b" " * (rag.settings.max_body_kb * 1000 + 1),
                    headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit of 1,000,000 bytes" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", content='{"model": "default"}')  # no Content-Type
    assert r.status_code == 400 and "Content-Type: application/json" in r.json()["error"]["message"]


def test_unknown_routes_and_methods_answer_in_openai_shape(make_rag):
    client = TestClient(build_api(SingleCollection(make_rag())))
    r = client.get("/v1/chat/completions")
    assert r.status_code == 405 and r.json()["error"]["message"] == "GET /v1/chat/completions: Method Not Allowed"
    assert client.get("/v1/embeddings").json()["error"]["message"] == "GET /v1/embeddings: Not Found"


def test_unknown_model_is_404_and_models_lists_the_collection(make_rag):
    client = TestClient(build_api(SingleCollection(make_rag(), name="papers")))
    assert client.get("/v1/models").json() == {
        "object": "list", "data": [{"id": "papers", "object": "model", "created": 0, "owned_by": "rag-local"}]}
    assert client.get("/v1/models/papers").json()["id"] == "papers"
    for r in (ask(client, ("user", "hi?"), model="default"), client.get("/v1/models/default")):
        assert r.status_code == 404
        assert r.json() == {"error": {"message": "no collection 'default'; yours: papers",
                                      "type": "invalid_request_error", "code": "model_not_found"}}


def test_library_errors_are_400_and_unexpected_ones_500_without_details(make_rag, monkeypatch, caplog):
    rag = make_rag()
    client = TestClient(build_api(SingleCollection(rag)), raise_server_exceptions=False)

    def model_down(*args, **kwargs):
        raise ModelError("the model server http://127.0.0.1:9/v1 is not reachable")

    monkeypatch.setattr(rag, "chat", model_down)
    r = ask(client, ("user", "anything?"))
    assert r.status_code == 400 and r.json()["error"] == {
        "message": "the model server http://127.0.0.1:9/v1 is not reachable", "type": "invalid_request_error",
        "code": "ModelError"}

    def bug(*args, **kwargs):
        raise KeyError("secret internals")

    monkeypatch.setattr(rag, "chat", bug)
    r = ask(client, ("user", "anything?"))
    assert r.status_code == 500 and "secret internals" not in r.text and "Traceback" not in r.text
    assert r.json()["error"]["type"] == "server_error" and "server log" in r.json()["error"]["message"]
    assert "secret internals" in caplog.text


def test_an_error_while_streaming_ends_the_stream_with_an_error_event(seeded, monkeypatch):
    rag = seeded(ANSWER)
    real_chat = rag.chat

    def failing(*args, **kwargs):
        reply = real_chat(*args, **kwargs)

        def items():
            yield next(iter(reply.items))
            raise ModelError("the model server stopped answering")

        return replace(reply, items=items())

    monkeypatch.setattr(rag, "chat", failing)
    r = ask(TestClient(build_api(SingleCollection(rag))), ("user", QUESTION), stream=True)
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2]) == {"error": {"message": "the model server stopped answering",
                                                "type": "server_error", "code": None}}


def test_a_client_that_leaves_mid_stream_frees_the_model(seeded):
    rag = seeded(ANSWER)
    items = rag.stream(QUESTION)
    first = next(items)
    assert rag._llm_lock.locked()  # the generation holds the model

    async def leave_after_two_chunks():
        events = api._events("default", items, first, lambda answer: {})
        await events.__anext__()
        await events.__anext__()
        await events.aclose()

    asyncio.run(leave_after_two_chunks())
    assert not rag._llm_lock.locked()


# --------------------------------------------------------------------------- auth

def test_parse_api_keys():
    assert parse_api_keys(None) == {} and parse_api_keys("  ") == {}
    assert parse_api_keys("k1") == {"k1": None}
    assert parse_api_keys("alice=k1, bob=k2") == {"k1": "alice", "k2": "bob"}
    assert parse_api_keys("c2VjcmV0==") == {"c2VjcmV0==": None}
    assert parse_api_keys("dave=c2VjcmV0==,carol=a=b") == {"c2VjcmV0==": "dave", "a=b": "carol"}
    for bad, message in [("s3cret,,other", "item 2 of 3 is empty"), ("=s3cret", "item 1 of 1 has an empty user name"),
                         ("alice=s3cret,bob=s3cret", "item 2 of 2 repeats an earlier key"),
                         ("alice=k1,s3cret", "item 2 of 2 has no user while others do")]:
        with pytest.raises(ConfigError, match=message) as err:
            parse_api_keys(bad)
        assert "s3cret" not in str(err.value)  # keys are not echoed


class TwoUsers:
    """A provider with a private collection per user, recording who asked for what."""

    def __init__(self, rag) -> None:
        self.rag, self.opened = rag, []
        self.by_user = {"alice": ["default", "alice-notes"], "bob": ["default"], None: ["default"]}

    def names(self, user):
        return self.by_user[user]

    def open(self, name, user):
        if name not in self.by_user[user]:
            raise InputError(f"no collection {name!r}; yours: {', '.join(self.by_user[user])}")
        self.opened.append((name, user))
        return self.rag


def test_keys_are_required_and_each_names_its_user(make_rag):
    provider = TwoUsers(make_rag())
    client = TestClient(build_api(provider, ApiAuth.of("alice=ka,bob=kb", None)))
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "ka"}, {"Authorization": "Basic ka"}):
        r = client.get("/v1/models", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "invalid_api_key" and "RAG_API_KEY" in r.json()["error"]["message"]
    r = ask(client, ("user", "hi?"), headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and provider.opened == []
    r = client.post("/v1/chat/completions", content="not json", headers={"content-type": "application/json"})
    assert r.status_code == 401  # the key is checked before the body is read
    alice, bob = {"Authorization": "Bearer ka"}, {"Authorization": "Bearer kb"}
    assert [m["id"] for m in client.get("/v1/models", headers=alice).json()["data"]] == ["default", "alice-notes"]
    assert [m["id"] for m in client.get("/v1/models", headers=bob).json()["data"]] == ["default"]
    assert ask(client, ("user", "hi?"), model="alice-notes", headers=alice).status_code == 200
    r = ask(client, ("user", "hi?"), model="alice-notes", headers=bob)
    assert r.status_code == 404 and r.json()["error"]["message"] == "no collection 'alice-notes'; yours: default"
    assert provider.opened == [("alice-notes", "alice")]


def test_ui_logins_open_the_api_when_there_is_no_key(make_rag):
    provider = TwoUsers(make_rag())
    logins = [("alice", "pw:1"), ("bob", "pw2")]
    client = TestClient(build_api(provider, ApiAuth.of(None, logins)))
    assert client.get("/v1/models").status_code == 401  # never anonymous
    assert client.get("/v1/models", headers={"Authorization": "Bearer alice:pw2"}).status_code == 401
    r = client.get("/v1/models", headers={"Authorization": "Bearer alice:pw:1"})
    assert [m["id"] for m in r.json()["data"]] == ["default", "alice-notes"]
    # keys, when set, are the only way in
    keyed = TestClient(build_api(provider, ApiAuth.of("alice=k", logins)))
    assert keyed.get("/v1/models", headers={"Authorization": "Bearer alice:pw:1"}).status_code == 401
    r = keyed.get("/v1/models", headers={"Authorization": "Bearer k"})
    assert [m["id"] for m in r.json()["data"]] == ["default", "alice-notes"]


def test_open_api_has_no_user():
    assert ApiAuth.of(None, None).user(None) is None
    with pytest.raises(Unauthorized, match="missing API key"):
        ApiAuth.of("k", None).user(None)


def test_serving_beyond_this_machine_needs_a_login_for_each_face():
    keyed, open_ = ApiAuth.of("k", None), ApiAuth()
    check_bind("127.0.0.1", False, open_, with_ui=True)  # this machine: no login needed
    with pytest.raises(ConfigError, match="refusing to serve the web UI on 0.0.0.0 without a login"):
        check_bind("0.0.0.0", False, keyed, with_ui=True)
    with pytest.raises(ConfigError, match="refusing to serve the API on 0.0.0.0 without a key"):
        check_bind("0.0.0.0", True, open_, with_ui=True)
    check_bind("0.0.0.0", False, keyed, with_ui=False)
    check_bind("0.0.0.0", True, ApiAuth.of(None, [("a", "b")]), with_ui=True)


# --------------------------------------------------------------------------- rag serve

@pytest.fixture
def served(monkeypatch, make_rag, settings):
    """server.serve with the index opened as a fake RAG and the server not started: the app it would run."""
    import rag.pipeline

    fake = make_rag()
    seen: dict = {}
    monkeypatch.setattr(rag.pipeline.RAG, "open", classmethod(lambda cls, **kw: seen.setdefault("open", kw) and fake))
    monkeypatch.setattr(server, "run_server", lambda app, host, port: seen.update(app=app, host=host, port=port))
    monkeypatch.delenv("RAG_API_KEY", raising=False)
    monkeypatch.delenv("RAG_AUTH", raising=False)
    return seen


def test_rag_serve_mounts_the_ui_on_the_api_and_both_keep_the_login(served, monkeypatch, settings):
    monkeypatch.setenv("RAG_AUTH", "ann:pw")  # read through Settings, like every setting
    settings = Settings.load(index_dir=settings.index_dir, cache_dir=settings.cache_dir,
                             collections_dir=settings.collections_dir)
    server.serve(settings)
    assert served["open"] == {"settings": settings} and (served["host"], served["port"]) == ("127.0.0.1", 7860)
    with TestClient(served["app"]) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer ann:pw"}).json()["data"][0]["id"] == "default"
        assert client.get("/config").status_code == 401  # the UI asks for the login
        assert client.post("/login", data={"username": "ann", "password": "wrong"}).status_code != 200
        assert client.get("/config").status_code == 401
        assert client.post("/login", data={"username": "ann", "password": "pw"}).status_code == 200
        assert client.get("/config").status_code == 200
        assert "/ask" in client.get("/gradio_api/info").json()["named_endpoints"]


def test_rag_serve_api_serves_no_ui_and_refuses_an_open_public_address(served, monkeypatch, settings):
    server.serve(settings.with_(api_key="k"), "0.0.0.0", 8000, api_only=True)
    with TestClient(served["app"]) as client:
        assert client.get("/config").status_code == 404
        assert client.get("/v1/models", headers={"Authorization": "Bearer k"}).status_code == 200
    served.clear()
    with pytest.raises(ConfigError, match="refusing to serve the API on 0.0.0.0 without a key"):
        server.serve(settings, "0.0.0.0", 8000, api_only=True)
    assert "app" not in served and "open" not in served  # refused before the index is opened


def test_cli_serve_api_flag(monkeypatch):
    from rag.app import cli

    calls = []
    monkeypatch.setattr(server, "serve", lambda settings, host, port, api_only, collection=None: calls.append((host, port, api_only)))
    assert cli.main(["serve", "--api", "--port", "8001"]) == 0
    assert cli.main(["serve"]) == 0
    assert calls == [("127.0.0.1", 8001, True), ("127.0.0.1", 7860, False)]


@pytest.mark.integration  # a real uvicorn server on 127.0.0.1, with fakes
def test_the_mounted_ui_answers_through_gradio_with_its_login(served, monkeypatch, settings):
    """The UI mounted on the API's app, really served: Gradio's queue runs and RAG_AUTH still guards it."""
    gradio_client = pytest.importorskip("gradio_client")
    server.serve(settings.with_(auth="ann:pw"))
    with serving(served["app"]) as port:
        url = f"http://127.0.0.1:{port}/"
        with pytest.raises(Exception):
            gradio_client.Client(url, verbose=False)
        client = gradio_client.Client(url, auth=("ann", "pw"), verbose=False)
        assert client.predict("Anything here?", 2, api_name="/ask")["abstained"] is True
